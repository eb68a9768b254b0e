"""Eager against `--compile` decoding in one process, on the same held-out inputs: the first
generation of each (where compiling happens) and then ms per pass and tokens/s over the rest.

    python benchmarks/compile_speed.py 8 docs/bench/issue14/compile_cpu.json [cuda]
"""

from __future__ import annotations

import json
import sys
import time

import torch

from backend.decoding.pipeline import Generator
from backend.evaluation import procedural_cases
from backend.inputs import from_mesh
from backend.options import GenerateOptions

MODES = ("ar", "speculative")


def run(generator: Generator, cloud, mode: str) -> dict:
    *_, done = generator.stream(cloud.points, cloud.normals, GenerateOptions(mode=mode, max_faces=150))
    return done.stats


def main(count: int, out: str, device: str = "cpu") -> None:
    torch.set_num_threads(1 if device == "cpu" else 4)
    clouds = [from_mesh(case.mesh, seed=0) for case in procedural_cases(count + 1)]
    generators = {"eager": Generator.load("models/default", device),
                  "compiled": Generator.load("models/default", device, compile=True)}
    report: dict = {}
    for name, generator in generators.items():
        for mode in MODES:
            started = time.perf_counter()
            run(generator, clouds[0], mode)
            report[f"{name}/{mode}/first_generation_s"] = time.perf_counter() - started
    totals: dict[str, list[float]] = {}
    for cloud in clouds[1:]:  # interleaved, so load drift hits every configuration alike
        for name, generator in generators.items():
            for mode in MODES:
                stats = run(generator, cloud, mode)
                total = totals.setdefault(f"{name}/{mode}", [0, 0, 0.0])
                total[0] += stats["tokens"]
                total[1] += stats["forward_passes"]
                total[2] += stats["seconds"]
    for key, (tokens, passes, seconds) in totals.items():
        report[key] = {"tokens": tokens, "passes": passes, "ms_per_pass": 1000 * seconds / passes,
                       "tokens_per_second": tokens / seconds, "scr": tokens / passes}
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], *sys.argv[3:4])
