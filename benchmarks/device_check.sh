#!/usr/bin/env bash
# One call on a lent GPU machine (see docs/bench/README.md, "GPU"): CUDA correctness tests, the
# backbone's per-pass cost, and the bench sweeps on CUDA; logs and results come back packed.
# The machine has its own python3 with torch; the packages it lacks travel as wheels in .whl/
# (trimesh, rtree, manifold3d, fast-simplification for Python 3.12).
# Sizes: N_DRAFT inputs for the draft sweep (QUICK=1: only AR, tree, IS, PTS K_s 2), N_SWEEP for
# the delta/heads sweeps (0 skips them); COMPILE=1 adds the compiled path (--compile: CUDA graphs):
# its same-tokens test, compile time and ms per pass against eager, and the main bench. Everything is
# packed into $OUT/device_results.tgz after each stage, so a stage cut short loses only itself.
set -u
OUT=${OUT:?set OUT to the results folder}
DEVICE=${DEVICE:-cuda}
N_DRAFT=${N_DRAFT:-12}
N_SWEEP=${N_SWEEP:-6}
QUICK=${QUICK:-0}
RES=$(mktemp -d)
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv > "$RES/gpu.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$RES/gpu.txt"

stage() {  # stage NAME SECONDS COMMAND...: time-boxed, logged to NAME.log
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$RES/$name.log" 2>&1
  echo "$name: exit $? after $((SECONDS - t0)) s" | tee -a "$RES/stages.txt"
  tar czf "$OUT/device_results.tgz" -C "$RES" .
}

stage cuda_tests 150 python3 -m pytest -q -p no:cacheprovider -m cuda -rs \
  tests/test_model.py tests/test_speculative.py tests/test_pipeline.py tests/test_train.py
stage model_speed 60 python3 benchmarks/model_speed.py --device "$DEVICE" --threads 4 --json "$RES/model_speed.json"
stage bench_draft 260 python3 -m backend bench --procedural "$N_DRAFT" --limit "$N_DRAFT" --sweeps draft \
  --device "$DEVICE" --threads 4 --max-faces 150 --model models/default --out "$RES/draft" \
  $([ "$QUICK" = 1 ] && echo --quick)
[ "$N_SWEEP" -gt 0 ] && stage bench_sweeps 130 python3 -m backend bench --procedural "$N_SWEEP" --limit "$N_SWEEP" --sweeps delta,heads \
  --device "$DEVICE" --threads 4 --max-faces 150 --model models/default --out "$RES/sweeps"
if [ "${COMPILE:-0}" = 1 ]; then
  stage compiled_tests 200 python3 -m pytest -q -p no:cacheprovider -rs tests/test_compiled.py
  stage compile_speed 200 python3 benchmarks/compile_speed.py 6 "$RES/compile_speed.json" "$DEVICE"
  stage bench_compiled 200 python3 -m backend bench --procedural "$N_DRAFT" --limit "$N_DRAFT" --sweeps none \
    --device "$DEVICE" --threads 4 --max-faces 150 --model models/default --compile --out "$RES/compiled"
fi
tail -n 3 "$RES/cuda_tests.log"; cat "$RES/stages.txt"
