#!/usr/bin/env bash
# The tracking filter on 120 s drives through three cities no model or calibration saw
# (seeds 8, 9, 10: default, suburb and downtown styles), each with a kidnap at 60 s and no
# GNSS and again with the drive's degraded GNSS as the filter's evidence (r<seed>g), plus a
# 90-degree pinhole front camera (without and with an initial pose on /initialpose, and with
# GNSS) and a rig of four 90-degree cameras (front, left, right, back; each topic with its
# CameraInfo and /tf_static) on the first city, those against a database of the shipped
# limited-field-of-view model (small-fov). Writes WORKDIR/r<seed>.json (the replay's JSON,
# with "tracking") and WORKDIR/r<seed>/ (tracking.png, tracking.csv, ...).
#
#   scripts/tracking_eval.sh [WORKDIR]      (default: ./out/tracking_eval)
#
# On the 2-core development CPU: about 3 minutes a city (drive, database, replay).
set -euo pipefail
W=${1:-out/tracking_eval}
U=${UNIFYGEO:-.venv/bin/unifygeo}
mkdir -p "$W"
for seed in 8 9 10; do
  style=default; [ "$seed" = 9 ] && style=suburb; [ "$seed" = 10 ] && style=downtown
  [ -f "$W/c$seed/city.json" ] || $U sim city --seed "$seed" --size-m 400 --origin=48.14,11.58 --style "$style" \
      --out "$W/c$seed" --json > /dev/null
  [ -d "$W/d$seed" ] || $U sim drive --city "$W/c$seed" --duration-s 120 --rate-hz 1 --out "$W/d$seed" \
      --kidnap-at 60 --seed "$seed" --no-progress --json > /dev/null
  [ -f "$W/db$seed/manifest.json" ] || $U build-db --ortho "$W/d$seed.meta/orthophoto.tif" --out "$W/db$seed" \
      --json > /dev/null
  $U replay --bag "$W/d$seed" --db "$W/db$seed" --track --report "$W/r$seed" --no-progress --json > "$W/r$seed.json"
  # the same with the drive's degraded receiver (/gnss/fix: 1-3 m, outages, multipath) as the filter's evidence
  $U replay --bag "$W/d$seed" --db "$W/db$seed" --track --gnss-topic /gnss/fix --report "$W/r${seed}g" --no-progress \
      --json > "$W/r${seed}g.json"
done
[ -d "$W/p8" ] || $U sim drive --city "$W/c8" --duration-s 120 --rate-hz 1 --out "$W/p8" --camera pinhole --fov 90 \
    --seed 8 --no-progress --json > /dev/null
[ -f "$W/dbf8/manifest.json" ] || $U build-db --ortho "$W/d8.meta/orthophoto.tif" --weights small-fov \
    --out "$W/dbf8" --json > /dev/null
printf '/**:\n  ros__parameters:\n    camera: {model: pinhole, hfov_deg: 90.0}\n' > "$W/pinhole.yaml"
$U replay --bag "$W/p8" --db "$W/dbf8" --track --params "$W/pinhole.yaml" --image-topic /camera/front/image_raw \
    --report "$W/rp8" --no-progress --json > "$W/rp8.json"
# the pinhole drive with the receiver as the filter's evidence, with D as it is (evidence_power 1) and narrowed (4)
$U replay --bag "$W/p8" --db "$W/dbf8" --track --params "$W/pinhole.yaml" --image-topic /camera/front/image_raw \
    --gnss-topic /gnss/fix --report "$W/rp8g" --no-progress --json > "$W/rp8g.json"
printf '/**:\n  ros__parameters:\n    camera: {model: pinhole, hfov_deg: 90.0}\n    tracking: {evidence_power: 1.0}\n' \
    > "$W/pinhole_p1.yaml"
$U replay --bag "$W/p8" --db "$W/dbf8" --track --params "$W/pinhole_p1.yaml" --image-topic /camera/front/image_raw \
    --gnss-topic /gnss/fix --report "$W/rp8g1" --no-progress --json > "$W/rp8g1.json"
# the same pinhole drive with an operator's initial pose (/initialpose: the true pose at the first
# frame plus noise of 2 m and 10 degrees): the filter starts from it
[ -d "$W/p8s" ] || $U sim drive --city "$W/c8" --duration-s 120 --rate-hz 1 --out "$W/p8s" --camera pinhole --fov 90 \
    --seed 8 --initial-pose 2,10 --no-progress --json > /dev/null
$U replay --bag "$W/p8s" --db "$W/dbf8" --track --params "$W/pinhole.yaml" --image-topic /camera/front/image_raw \
    --report "$W/rp8s" --no-progress --json > "$W/rp8s.json"
[ -d "$W/g8" ] || $U sim drive --city "$W/c8" --duration-s 120 --rate-hz 1 --out "$W/g8" --camera rig \
    --rig 0,90,-90,180 --fov 90 --image-size 320x240 --seed 8 --no-progress --json > /dev/null
.venv/bin/python - "$W" <<'PY'
import json, sys, yaml
w = sys.argv[1]
params = json.load(open(f"{w}/g8.meta/drive.json"))["camera"]["node_parameters"]
yaml.safe_dump({"/**": {"ros__parameters": params}}, open(f"{w}/rig.yaml", "w"))
PY
$U replay --bag "$W/g8" --db "$W/dbf8" --track --params "$W/rig.yaml" --report "$W/rg8" --no-progress --json \
    > "$W/rg8.json"
