#!/usr/bin/env bash
# The limited-field-of-view stage on top of the shipped `small` model: the full recipe
# continued from unifygeo_ros/weights/small.pt on pinhole views (60-120 deg, 4:3 to 16:9, a
# small pitch) and camera rigs (front + back, front + sides, four cameras) mixed with
# panoramas, on the shipped model's eighteen training cities (see
# unifygeo_ros/weights/MODEL_CARD.md and docs/training.md, "The limited-field-of-view stage").
# The stage runs twice: 2 epochs from small.pt (seed 0), then 2 more epochs with a fresh warm-up
# and cosine schedule from the first run's fp16 checkpoint (seed 1, other augmentations).
#
#   scripts/train_fov_stage.sh [WORKDIR]      (default: ./out/shipped, the cities shared with
#                                              scripts/train_shipped_model.sh)
#
# FOV_EPOCHS (default 2, the stage's) sets the epochs of each run; FOV_RUNS (default 2) the runs;
# INIT (default the shipped model) the first run's starting checkpoint. Writes WORKDIR/fov/model.pt,
# WORKDIR/fov_run2/model.pt and the fp16 checkpoint WORKDIR/small_fov.pt (of the last run).
# On the 2-core development CPU with AMX (bf16): rendering the cities ~20 min when missing,
# each run ~27-32 min (2 epochs of 956 batches of 32; measured 27.4 and 31.8 min wall clock, the
# second while tests shared the CPU for part of it). An interrupted run continues where it stopped when the same command is run again.
set -euo pipefail
W=${1:-out/shipped}
U=${UNIFYGEO:-.venv/bin/unifygeo}
INIT=${INIT:-unifygeo_ros/weights/small.pt}
FOV_EPOCHS=${FOV_EPOCHS:-2}
FOV_RUNS=${FOV_RUNS:-2}
source "$(dirname "$0")/training_cities.sh"

half() {   # fp32 model.pt -> fp16 checkpoint
  .venv/bin/python - "$1" "$2" <<'PY'
import sys
from unifygeo_ros.model.unifygeo import load_checkpoint, save_checkpoint
model, payload = load_checkpoint(sys.argv[1])
save_checkpoint(model, sys.argv[2], half=True, training=payload["training"])
print(f"wrote {sys.argv[2]} ({model.state_hash()[:12]} before fp16)")
PY
}

for run in $(seq 1 "$FOV_RUNS"); do
  OUT="$W/fov"; [ "$run" -gt 1 ] && OUT="$W/fov_run$run"
  if [ ! -f "$OUT/model.pt" ]; then
    RESUME=(); [ -f "$OUT/last.pt" ] && RESUME=(--resume)
    $U train --stage fov --init "$INIT" --data "$W/vigor" --out "$OUT" --config small --protocol cross_area \
      --cities "$CITIES" --epochs "$FOV_EPOCHS" --seed $((run - 1)) --cache yes --precision bf16 "${RESUME[@]}" --json
  fi
  half "$OUT/model.pt" "$OUT/model_fp16.pt"
  INIT="$OUT/model_fp16.pt"
done
cp "$INIT" "$W/small_fov.pt"
echo "wrote $W/small_fov.pt"
