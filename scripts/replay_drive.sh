#!/usr/bin/env bash
# Reproduce the README's rosbag replay figures ("Replay: judging it on a rosbag"): render the
# synthetic city of the drive, simulate the 2-minute drive into a rosbag2, build the database
# on the drive's orthophoto with the shipped model and replay the bag twice, without and with
# the degraded GNSS topic as the position prior.
#
#   scripts/replay_drive.sh [WORKDIR]      (default: ./out/replay)
#
# WORKDIR/report_noprior.json and WORKDIR/report_gnss.json are the two replays' JSON reports;
# WORKDIR/report_*/ hold trajectory.png and error.png.
# The city's geometry, the drive and the GNSS errors depend on the seeds alone, not on the
# origin (which only places the map frame on the globe), so any origin gives the same images.
# On the 2-core development CPU: about 2.5 minutes in all (2 min 19 s on 2026-12-05).
set -euo pipefail
W=${1:-out/replay}
U=${UNIFYGEO:-.venv/bin/unifygeo}
mkdir -p "$W"

[ -f "$W/city/city.json" ] || \
  $U sim city --seed 7 --size-m 400 --origin=41.88,-87.63 --style default --out "$W/city" --json
[ -d "$W/drive" ] || \
  $U sim drive --city "$W/city" --duration-s 120 --rate-hz 1 --out "$W/drive" --json
[ -f "$W/db/manifest.json" ] || \
  $U build-db --ortho "$W/drive.meta/orthophoto.tif" --out "$W/db" --overwrite --json

for mode in noprior gnss; do
  extra=()
  [ "$mode" = gnss ] && extra=(--gnss-topic /gnss/fix)
  rm -rf "$W/out_$mode" "$W/report_$mode"
  $U replay --bag "$W/drive" --db "$W/db" "${extra[@]}" --report "$W/report_$mode" \
    --out-bag "$W/out_$mode" --no-progress --json > "$W/report_$mode.json"
  echo "replay $mode: $W/report_$mode.json"
done
