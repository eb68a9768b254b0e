"""Autoregressive against speculative decoding on the same backbone, inputs, seeds and process,
batch 1, warm-up excluded; sweeps of δ, the number of heads D, the draft sampler, and the
XSpecMesh Table 3 ablation over several model directories.

Speed figures are totals over all inputs (tokens / seconds, seconds / forward passes), so long
outputs weigh as much as they cost; quality figures are medians over inputs.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backend.decoding.pipeline import GenerateOptions, Generator
from backend.evaluation import Case, input_noise_floor, measure, median
from backend.generation import generate
from backend.inputs import from_mesh

DELTAS = (0.1, 0.3, 0.5, 0.7, 0.9)
QUICK_DELTAS = (0.1, 0.5, 0.9)
MAX_SWEEP_HEADS = 6
PTS_KS = (2, 3, 4)
QUICK_PTS_KS = (2,)
SWEEPS = ("delta", "heads", "draft")
WARMUP_FACES = 8


@dataclass
class Prepared:
    """An input sampled once, so every configuration sees the very same point cloud."""

    name: str
    mesh: object
    points: np.ndarray
    normals: np.ndarray
    floor: float


def prepare(cases: list[Case], seed: int) -> list[Prepared]:
    prepared = []
    for case in cases:
        cloud = from_mesh(case.mesh, seed=seed)
        prepared.append(Prepared(case.name, case.mesh, cloud.points, cloud.normals, input_noise_floor(case.mesh, seed)))
    return prepared


def model_heads(generator: Generator) -> int:
    """Number of drafting heads the loaded model has (0 when it has none)."""
    heads = generator.info.get("heads")
    if isinstance(heads, dict):
        heads = heads.get("count", heads.get("spec_heads"))
    return int(heads or 0)


class Runner:
    """Runs configurations of one generator over the prepared inputs, each at most once."""

    def __init__(self, generator: Generator, inputs: list[Prepared], log: Callable[[str], None]):
        self.generator, self.inputs, self.log = generator, inputs, log
        self._done: dict[tuple, dict] = {}

    def warm_up(self, base: GenerateOptions) -> None:
        """First calls pay for allocation, kernel selection and caches; keep them out of the timings."""
        first = self.inputs[0]
        for mode in ("ar", "speculative"):
            options = dataclasses.replace(base, mode=mode, max_faces=min(WARMUP_FACES, base.max_faces))
            for _ in self.generator.stream(first.points, first.normals, options):
                pass

    def run(self, options: GenerateOptions, label: str) -> dict:
        key = tuple(sorted(dataclasses.asdict(options).items()))
        if key not in self._done:
            records = [self._one(item, options) for item in self.inputs]
            result = {"label": label, "options": dataclasses.asdict(options), **aggregate(records), "inputs": records}
            self._done[key] = result
            self.log(f"{label}: SCR {result['scr']:.2f}, {result['ms_per_pass']:.1f} ms/pass, "
                     f"{result['tokens_per_second']:.0f} tok/s, median CD {_fmt(result['median_chamfer'])}")
        return {**self._done[key], "label": label}

    def _one(self, item: Prepared, options: GenerateOptions) -> dict:
        result = generate(self.generator, item.points, item.normals, options)
        quality = measure(item.mesh, result.to_trimesh(), item.floor, options.seed)
        stats = result.stats
        return {"name": item.name, "tokens": int(stats["tokens"]), "faces": int(stats["faces"]),
                "forward_passes": int(stats["forward_passes"]), "seconds": float(stats["seconds"]),
                "time_to_first_face": stats.get("time_to_first_face"), "stop_reason": stats.get("stop_reason"),
                "valid": bool(quality["valid"] and stats.get("valid", True)),
                "chamfer": quality["chamfer"], "hausdorff": quality["hausdorff"]}


def aggregate(records: list[dict]) -> dict:
    tokens = sum(r["tokens"] for r in records)
    passes = sum(r["forward_passes"] for r in records)
    seconds = sum(r["seconds"] for r in records)
    valid = [r for r in records if r["valid"]]
    return {
        "tokens": tokens, "faces": sum(r["faces"] for r in records), "forward_passes": passes, "seconds": seconds,
        "scr": tokens / passes if passes else 0.0,
        "ms_per_pass": 1000 * seconds / passes if passes else 0.0,
        "tokens_per_second": tokens / seconds if seconds else 0.0,
        "median_time_to_first_face": median([r["time_to_first_face"] for r in records]),
        "median_chamfer": median([r["chamfer"] for r in valid]),
        "median_hausdorff": median([r["hausdorff"] for r in valid]),
        "validity_rate": len(valid) / len(records) if records else 0.0,
    }


def with_speedup(result: dict, reference: dict) -> dict:
    """speedup: tokens/s over the reference's (fair when outputs differ in length);
    wall_speedup: reference total seconds over this total seconds."""
    result["speedup"] = result["tokens_per_second"] / reference["tokens_per_second"] if reference["tokens_per_second"] else None
    result["wall_speedup"] = reference["seconds"] / result["seconds"] if result["seconds"] else None
    return result


def run_bench(
    generator: Generator,
    cases: list[Case],
    base: GenerateOptions,
    sweeps: tuple[str, ...] = SWEEPS,
    quick: bool = False,
    ablation: list[tuple[str, Generator]] = (),
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> dict:
    inputs = prepare(cases, base.seed)
    runner = Runner(generator, inputs, log)
    runner.warm_up(base)
    heads = model_heads(generator)
    ar = runner.run(dataclasses.replace(base, mode="ar"), "AR")
    report: dict = {"hardware": hardware(generator), "model": generator.info, "inputs": [p.name for p in inputs],
                    "base_options": dataclasses.asdict(base), "quick": quick, "model_heads": heads,
                    "ar": with_speedup(ar, ar)}
    if heads == 0:
        log("the model has no drafting heads: only the AR baseline was measured")
    else:
        # Name the head count explicitly so the D sweep's run at the default D is the same (cached) run.
        spec = dataclasses.replace(base, mode="speculative", heads=base.heads or heads)
        report["speculative"] = with_speedup(runner.run(spec, "speculative"), ar)
        deltas = QUICK_DELTAS if quick else DELTAS
        head_counts = sorted({1, min(heads, MAX_SWEEP_HEADS)}) if quick else range(1, min(heads, MAX_SWEEP_HEADS) + 1)
        ks = QUICK_PTS_KS if quick else PTS_KS
        if "delta" in sweeps:
            report["delta"] = [with_speedup({"delta": d, **runner.run(dataclasses.replace(spec, delta=d), f"delta={d}")}, ar)
                               for d in deltas]
        if "heads" in sweeps:
            report["heads"] = [with_speedup({"heads": h, **runner.run(dataclasses.replace(spec, heads=h), f"D={h}")}, ar)
                               for h in head_counts]
        if "draft" in sweeps:
            drafts = [("IS", dataclasses.replace(spec, draft="is"))]
            drafts += [(f"PTS(K_s={k})", dataclasses.replace(spec, draft="pts", pts_k=k)) for k in ks]
            report["draft"] = [with_speedup({"draft": name, **runner.run(o, name)}, ar) for name, o in drafts]
    if ablation:
        report["ablation"] = run_ablation(ablation, cases, base, ar, log)
    return report


def run_ablation(entries: list[tuple[str, Generator]], cases: list[Case], base: GenerateOptions, ar: dict,
                 log: Callable[[str], None]) -> list[dict]:
    """One row per model directory (speculative when it has heads, else AR). Speedups are against
    the first head-less entry (the base backbone, Table 3's row A), or the main model's AR."""
    rows = []
    for name, generator in entries:
        runner = Runner(generator, prepare(cases, base.seed), log)
        runner.warm_up(base)
        mode = "speculative" if model_heads(generator) else "ar"
        rows.append({"name": name, "mode": mode, **runner.run(dataclasses.replace(base, mode=mode), name)})
    reference = next((r for r in rows if r["mode"] == "ar"), ar)
    return [with_speedup(row, reference) for row in rows]


def hardware(generator: Generator) -> dict:
    device = str(generator.info.get("device", "cpu"))
    info = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def plot(report: dict, out_dir: Path) -> list[Path]:
    """delta.png (speedup and Chamfer against δ) and heads.png (SCR and speedup against D)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if report.get("delta"):
        rows = report["delta"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
        left.plot([r["delta"] for r in rows], [r["speedup"] for r in rows], "o-")
        left.axhline(1.0, color="grey", ls="--", lw=1, label="AR")
        left.set(xlabel="δ (acceptance threshold)", ylabel="speedup over AR (tokens/s)", title="Speed")
        right.plot([r["delta"] for r in rows], [r["median_chamfer"] or np.nan for r in rows], "o-", label="speculative")
        if report["ar"]["median_chamfer"] is not None:
            right.axhline(report["ar"]["median_chamfer"], color="grey", ls="--", lw=1, label="AR")
        right.set(xlabel="δ (acceptance threshold)", ylabel="median Chamfer vs input", title="Quality")
        right.legend()
        written.append(_save(fig, out_dir / "delta.png"))
    if report.get("heads"):
        rows = report["heads"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
        left.plot([r["heads"] for r in rows], [r["scr"] for r in rows], "o-")
        left.set(xlabel="decoding heads D", ylabel="SCR (tokens / forward pass)", title="Step compression")
        right.plot([r["heads"] for r in rows], [r["speedup"] for r in rows], "o-")
        right.axhline(1.0, color="grey", ls="--", lw=1)
        right.set(xlabel="decoding heads D", ylabel="speedup over AR (tokens/s)", title="Speed")
        for axis in (left, right):
            axis.set_xticks([r["heads"] for r in rows])
        written.append(_save(fig, out_dir / "heads.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


COLUMNS = (("SCR", "scr", "{:.2f}"), ("ms/pass", "ms_per_pass", "{:.1f}"), ("tok/s", "tokens_per_second", "{:.0f}"),
           ("speedup", "speedup", "{:.2f}×"), ("wall speedup", "wall_speedup", "{:.2f}×"),
           ("first face (s)", "median_time_to_first_face", "{:.2f}"), ("CD", "median_chamfer", "{:.4f}"),
           ("HD", "median_hausdorff", "{:.4f}"), ("valid", "validity_rate", "{:.0%}"))


def markdown(report: dict) -> str:
    hw = report["hardware"]
    device = hw.get("gpu") or f"{hw['cpu']}, {hw['torch_threads']} torch threads"
    base = report["base_options"]
    lines = [
        "# Benchmark: autoregressive vs speculative decoding", "",
        f"Hardware: {device} (device `{hw['device']}`, torch {hw['torch']}). Model: `{report['model'].get('name', '?')}`, "
        f"{report['model_heads']} heads. {len(report['inputs'])} inputs, batch 1, seed {base['seed']}, "
        f"max {base['max_faces']} faces, temperature {base['temperature']}{', greedy' if base['greedy'] else ''}, "
        f"verify `{base['verify']}`; warm-up excluded. Speed: totals over inputs; CD/HD: medians vs the input "
        f"(normalized to [-0.95, 0.95]). Speedup = tokens/s over AR's; wall speedup = AR seconds / seconds.", "",
    ]
    main = [report["ar"]] + ([report["speculative"]] if "speculative" in report else [])
    lines += _table("Configuration", [(_label(r), r) for r in main])
    for key, title, name in (("delta", "δ sweep", lambda r: f"δ={r['delta']}"),
                             ("heads", "Heads sweep", lambda r: f"D={r['heads']}"),
                             ("draft", "Draft sampling", lambda r: r["draft"]),
                             ("ablation", "Ablation (XSpecMesh Table 3)", lambda r: f"{r['name']} ({r['mode']})")):
        if report.get(key):
            lines += ["", f"## {title}", ""] + _table("Configuration", [(name(r), r) for r in report[key]])
    return "\n".join(lines) + "\n"


def _label(result: dict) -> str:
    o = result["options"]
    if o["mode"] == "ar":
        return "AR"
    return f"speculative (δ={o['delta']}, D={o['heads'] or 'all'}, {o['draft'].upper()})"


def _table(first: str, rows: list[tuple[str, dict]]) -> list[str]:
    header = [first] + [c[0] for c in COLUMNS]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in rows:
        cells = [name] + [fmt.format(row[key]) if row.get(key) is not None else "n/a" for _, key, fmt in COLUMNS]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
