#!/usr/bin/env bash
# Reproduce the shipped `small` model (unifygeo_ros/weights/small.pt): render the six
# training cities and the held-out evaluation city, export them in the VIGOR layout,
# train, evaluate, and write the fp16 checkpoint. See unifygeo_ros/weights/MODEL_CARD.md.
#
#   scripts/train_shipped_model.sh [WORKDIR]      (default: ./out/shipped)
#
# On the 2-core development CPU: data ~9 min, training ~68 min + ~12 min (retrieval stage),
# evaluation ~8 min.
# An interrupted run continues where it stopped when the same command is run again.
set -euo pipefail
W=${1:-out/shipped}
U=${UNIFYGEO:-.venv/bin/unifygeo}
mkdir -p "$W/cities"

city() { # name seed style lat,lon size_m panoramas max_per_tile
  if [ ! -d "$W/vigor/$1" ]; then
    $U sim city --seed "$2" --size-m "$5" --origin "$4" --style "$3" --out "$W/cities/$1" --json
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

# The shipped run: epochs 1-6 on a 13-epoch learning-rate schedule, then (to fit the
# session's time) epochs 7-11 on an 11-epoch schedule. Both phases resume from
# WORKDIR/run/last.pt when it exists.
TRAIN=($U train --data "$W/vigor" --out "$W/run" --config small --protocol cross_area
  --cities TrainDefault,TrainDowntown,TrainOldtown,TrainSuburb,TrainDenver,TrainToronto
  --batch-size 32 --unknown-heading 0.5 --fov 0.2 --heading-term 3 --seed 0 --json)
done_steps() {
  [ -f "$W/run/last.pt" ] || { echo 0; return; }
  .venv/bin/python -c "import torch, sys; print(torch.load(sys.argv[1], map_location='cpu', weights_only=True)['step'])" "$W/run/last.pt"
}
RESUME=(); [ -f "$W/run/last.pt" ] && RESUME=(--resume)
if [ "$(done_steps)" -lt 1908 ]; then
  "${TRAIN[@]}" --epochs 13 --max-steps 1908 "${RESUME[@]}"     # 1908 = 6 epochs x 318 batches
fi
"${TRAIN[@]}" --epochs 11 --resume

# Second stage: the global descriptors (S-heads, aggregators with their layout term) are
# retrained for 20 epochs on the frozen encoders of the first stage (their maps cached).
if [ ! -f "$W/retrieval/model.pt" ]; then
  RRESUME=(); [ -f "$W/retrieval/last.pt" ] && RRESUME=(--resume)
  $U train --stage retrieval --init "$W/run/model.pt" --data "$W/vigor" --out "$W/retrieval" --config small \
    --protocol cross_area --cities TrainDefault,TrainDowntown,TrainOldtown,TrainSuburb,TrainDenver,TrainToronto \
    --epochs 20 --fov 0.2 --seed 0 "${RRESUME[@]}" --json
fi

$U eval --data "$W/vigor" --weights "$W/retrieval/model.pt" --protocol cross_area --cities TestNordic \
  --heading both --png "$W/eval.png" --json > "$W/eval.json"
.venv/bin/python - "$W" <<'PY'
import sys
from unifygeo_ros.model.unifygeo import load_checkpoint, save_checkpoint
model, payload = load_checkpoint(f"{sys.argv[1]}/retrieval/model.pt")
save_checkpoint(model, f"{sys.argv[1]}/small.pt", half=True, training=payload["training"])
print(f"wrote {sys.argv[1]}/small.pt (copy it to unifygeo_ros/weights/small.pt)")
PY
