# The shipped model's cities, in the VIGOR layout (sourced by train_shipped_model.sh and
# train_fov_stage.sh). Needs W (work folder) and U (the unifygeo command); renders a city
# only when its export is missing. Defines CITIES, the eighteen training cities.
mkdir -p "$W/cities"

city() { # name seed style lat,lon size_m panoramas max_per_tile [palette]
  if [ ! -d "$W/vigor/$1" ]; then
    $U sim city --seed "$2" --size-m "$5" --origin="$4" --style "$3" ${8:+--palette "$8"} --out "$W/cities/$1" --json
    $U sim vigor --city "$W/cities/$1" --panoramas "$6" --out "$W/vigor" --city-name "$1" \
      --pano-size 512x256 --tile-px 256 --mpp 0.25 --max-per-tile "$7" --seed "$2" --json
  fi
}
city TrainDefault  11 default  41.88,-87.63   700 1700 4
city TrainDowntown 12 downtown 47.61,-122.33  700 1700 4
city TrainOldtown  13 oldtown  43.77,11.25    700 1700 4
city TrainSuburb   14 suburb   33.75,-84.39   700 1700 4
city TrainDenver   15 default  39.74,-104.99  700 1700 4
city TrainToronto  16 downtown 43.65,-79.38   700 1700 4
city TestNordic    21 nordic   59.91,10.75    600  600 2     # held out: seed and style unseen
# The four training styles' geometry with colours drawn at random (domain randomisation;
# never the nordic preset's palette), in both stages.
city RandA 41 default  52.52,13.40    700 1700 4 random:41
city RandB 42 downtown 35.68,139.69   700 1700 4 random:42
city RandC 43 oldtown  41.39,2.17     700 1700 4 random:43
city RandD 44 suburb   -33.87,151.21  700 1700 4 random:44
city RandE 45 default  19.43,-99.13   700 1700 4 random:45
city RandF 46 downtown 1.35,103.82    700 1700 4 random:46
city RandG 47 suburb   48.86,2.35     700 1700 4 random:47
city RandH 48 oldtown  37.98,23.73    700 1700 4 random:48
city RandI 49 default  55.75,37.62    700 1700 4 random:49
city RandJ 50 downtown 40.71,-74.01   700 1700 4 random:50
city RandK 51 suburb   -23.55,-46.63  700 1700 4 random:51
city RandL 52 oldtown  30.04,31.24    700 1700 4 random:52

CITIES=TrainDefault,TrainDowntown,TrainOldtown,TrainSuburb,TrainDenver,TrainToronto,RandA,RandB,RandC,RandD,RandE,RandF,RandG,RandH,RandI,RandJ,RandK,RandL
