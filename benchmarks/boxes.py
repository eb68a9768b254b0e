"""The plain-box check of issue 13: boxes of several proportions (never trained on as such: the
training data holds only procedural artist meshes), 10 seeds each, default decoding. A box passes
when it comes back closed (watertight once vertices on one grid point are merged), with at most
24 faces and Chamfer / noise floor <= 1.3.

    python benchmarks/boxes.py [--model DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import trimesh

from backend.decoding.pipeline import Generator
from backend.evaluation import input_noise_floor, measure
from backend.generation import generate
from backend.inputs import from_mesh
from backend.options import GenerateOptions

PROPORTIONS = [(1.0, 1.0, 1.0), (1.0, 0.6, 0.4), (2.0, 0.3, 0.5), (0.2, 1.0, 0.2), (3.0, 1.0, 0.05)]


def check(generator: Generator, dims: tuple[float, float, float], seed: int) -> dict:
    box = trimesh.creation.box(dims)
    cloud = from_mesh(box, seed=seed)
    result = generate(generator, cloud.points, cloud.normals, GenerateOptions(seed=seed), mesh=cloud.source_mesh)
    merged = trimesh.Trimesh(result.vertices, result.faces, process=True)
    row = measure(box, result.to_trimesh(), input_noise_floor(box, seed), seed)
    closed = bool(merged.is_watertight)
    ratio = row["noise_floor_ratio"]
    return {"dims": dims, "seed": seed, "faces": int(len(result.faces)), "closed": closed,
            "noise_floor_ratio": ratio, "stop_reason": result.stats["stop_reason"],
            "passed": closed and len(result.faces) <= 24 and ratio is not None and ratio <= 1.3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default="out/boxes.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = Generator.load(args.model)
    rows = [check(generator, dims, seed) for dims in PROPORTIONS for seed in range(10)]
    summary = {str(dims): {"passed": sum(r["passed"] for r in rows if r["dims"] == dims),
                           "median_ratio": float(np.median([r["noise_floor_ratio"] for r in rows if r["dims"] == dims]))}
               for dims in PROPORTIONS}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    tmp.replace(out)
    for dims, s in summary.items():
        print(f"box {dims}: {s['passed']}/10 passed, median CD/noise {s['median_ratio']:.2f}")


if __name__ == "__main__":
    main()
