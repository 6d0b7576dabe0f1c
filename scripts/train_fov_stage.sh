#!/usr/bin/env bash
# The limited-field-of-view stage on top of the shipped `small` model: the full recipe
# continued from unifygeo_ros/weights/small.pt on pinhole views (60-120 deg, 4:3 to 16:9, a
# small pitch) and camera rigs (front + back, front + sides, four cameras) mixed with
# panoramas, on the shipped model's eighteen training cities (see
# unifygeo_ros/weights/MODEL_CARD.md and docs/training.md, "The limited-field-of-view stage").
#
#   scripts/train_fov_stage.sh [WORKDIR]      (default: ./out/shipped, the cities shared with
#                                              scripts/train_shipped_model.sh)
#
# FOV_EPOCHS (default 2, the stage's) sets the epochs; INIT (default the shipped model) the
# starting checkpoint. Writes WORKDIR/fov/model.pt and the fp16 checkpoint WORKDIR/small_fov.pt.
# On the 2-core development CPU with AMX (bf16): rendering the cities ~20 min when missing,
# the stage ~27 min (2 epochs of 956 batches of 32; 27.4 min measured). An interrupted run continues where it
# stopped when the same command is run again.
set -euo pipefail
W=${1:-out/shipped}
U=${UNIFYGEO:-.venv/bin/unifygeo}
INIT=${INIT:-unifygeo_ros/weights/small.pt}
FOV_EPOCHS=${FOV_EPOCHS:-2}
source "$(dirname "$0")/training_cities.sh"

if [ ! -f "$W/fov/model.pt" ]; then
  RESUME=(); [ -f "$W/fov/last.pt" ] && RESUME=(--resume)
  $U train --stage fov --init "$INIT" --data "$W/vigor" --out "$W/fov" --config small --protocol cross_area \
    --cities "$CITIES" --epochs "$FOV_EPOCHS" --seed 0 --cache yes --precision bf16 "${RESUME[@]}" --json
fi

.venv/bin/python - "$W" <<'PY'
import sys
from unifygeo_ros.model.unifygeo import load_checkpoint, save_checkpoint
model, payload = load_checkpoint(f"{sys.argv[1]}/fov/model.pt")
save_checkpoint(model, f"{sys.argv[1]}/small_fov.pt", half=True, training=payload["training"])
print(f"wrote {sys.argv[1]}/small_fov.pt ({model.state_hash()[:12]})")
PY
