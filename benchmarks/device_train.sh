#!/usr/bin/env bash
# One-shot training on a lent GPU (issue 13): the first thing to run whenever a GPU is available.
#   bash benchmarks/device_train.sh OUT_DIR
# Builds the procedural data, continues the shipped model in the winning conditioning design
# (CONFIG, default "candidates": point tokens + vertex candidates) from the shipped weights for
# at most MINUTES (default 9) of training, evaluates the result on held-out procedural meshes and
# writes OUT_DIR/model/ (config.json + model.safetensors, each far below 16 MiB), eval.json,
# metrics.jsonl and train.log. Heads are not distilled here: run `specmesh distill` on the result.
# Environment: CONFIG, INIT (model dir, default models/default; "none" starts from scratch),
# MINUTES, STEPS (the cosine schedule's length), BATCH, WORKERS, COUNT (training meshes),
# VAL_COUNT, EVAL_COUNT, EVAL_FACES, DEVICE (auto). CI tests this script end to end with CONFIG=tiny on the CPU.
set -euo pipefail
OUT=${1:?usage: device_train.sh OUT_DIR}
CONFIG=${CONFIG:-candidates}
INIT=${INIT:-models/default}
MINUTES=${MINUTES:-9}
STEPS=${STEPS:-6000}
BATCH=${BATCH:-48}
WORKERS=${WORKERS:-12}
COUNT=${COUNT:-40000}
VAL_COUNT=${VAL_COUNT:-300}
EVAL_COUNT=${EVAL_COUNT:-50}
EVAL_FACES=${EVAL_FACES:-400}
DEVICE=${DEVICE:-auto}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ -d .whl ]; then  # packages the GPU machine lacks travel as wheels (see device_check.sh)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
PY=${PYTHON:-python3}
log() { echo "[device_train $(date +%H:%M:%S)] $*" | tee -a "$OUT/train.log"; }

log "data: $COUNT training meshes, $VAL_COUNT validation meshes"
$PY -m backend data build --count "$COUNT" --seed 0 --out "$WORK/train" --workers "$WORKERS" >> "$OUT/train.log" 2>&1
$PY -m backend data build --count "$VAL_COUNT" --split val --out "$WORK/val" --workers "$WORKERS" >> "$OUT/train.log" 2>&1

init=()
[ "$INIT" != none ] && init=(--init "$INIT")
log "train: config $CONFIG from ${INIT}, at most $MINUTES min"
$PY -m backend train --data "$WORK/train" --val-data "$WORK/val" --config "$CONFIG" "${init[@]}" \
  --out "$WORK/run" --steps "$STEPS" --batch-size "$BATCH" --lr 5e-4 --warmup 100 --val-every 250 \
  --workers "$WORKERS" --checkpoint-minutes 3 --max-minutes "$MINUTES" --device "$DEVICE" \
  --export "$OUT/model" >> "$OUT/train.log" 2>&1
cp "$WORK/run/metrics.jsonl" "$OUT/metrics.jsonl"

log "eval: $EVAL_COUNT held-out procedural meshes"
$PY -m backend eval --procedural "$EVAL_COUNT" --model "$OUT/model" --ar --max-faces "$EVAL_FACES" \
  --device "$DEVICE" --out "$OUT/eval.json" >> "$OUT/train.log" 2>&1
tail -n 2 "$OUT/train.log"
log "done: $OUT/model"
