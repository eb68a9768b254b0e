"""benchmarks/device_train.sh, the one-shot GPU training script, end to end on the CPU with the
tiny preset: data, a time-boxed training leg, export and held-out evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from backend.model.io import load_model

REPO = Path(__file__).resolve().parents[1]


def test_device_train_script_trains_exports_and_evaluates(tmp_path: Path):
    out = tmp_path / "out"
    env = {**os.environ, "CONFIG": "tiny", "INIT": "none", "MINUTES": "0.1", "STEPS": "4", "BATCH": "2",
           "WORKERS": "1", "COUNT": "12", "VAL_COUNT": "4", "EVAL_COUNT": "2", "EVAL_FACES": "20",
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "device_train.sh"), str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    model, heads, config = load_model(out / "model")
    assert config.d_model == 64 and heads is None
    assert all(f.stat().st_size < 16 * 2**20 for f in (out / "model").iterdir())
    report = json.loads((out / "eval.json").read_text())
    assert report["summary"]["count"] == 2 and set(report["condition_gap"]) >= {"block", "offset"}
    assert (out / "metrics.jsonl").read_text().strip()
