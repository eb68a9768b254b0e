"""Autoregressive against speculative decoding on the same backbone, inputs, seeds and process,
batch 1, warm-up excluded; sweeps of δ, the number of heads D, the draft sampler, and the
XSpecMesh Table 3 ablation over several model directories.

All configurations run interleaved (for each input, every configuration in turn), so a slow drift
in machine load, likely on a shared CPU, hits them all alike instead of skewing the ratios.
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
from tqdm import tqdm

from backend.decoding.pipeline import GenerateOptions, Generator
from backend.evaluation import Case, input_noise_floor, measure, median
from backend.fileio import atomic_path
from backend.generation import generate
from backend.inputs import from_mesh

DELTAS = (0.1, 0.3, 0.5, 0.7, 0.9)
QUICK_DELTAS = (0.1, 0.5, 0.9)
MAX_SWEEP_HEADS = 6
PTS_KS = (2, 3, 4)
QUICK_PTS_KS = (2,)
TREES = ((2, 4), (2, 8), (3, 12))  # (K_s, nodes) of the tree-verification rows
QUICK_TREES = ((2, 8),)
SWEEPS = ("delta", "heads", "draft")
WARMUP_FACES = 8
PROFILE = ("model", "heads", "tree", "sampling", "host", "pipeline")

Log = Callable[[str], None]


@dataclass
class Prepared:
    """An input sampled once, so every configuration sees the very same point cloud."""

    name: str
    mesh: object
    points: np.ndarray
    normals: np.ndarray
    floor: float
    source: tuple[np.ndarray, np.ndarray]  # (vertices, faces): decoding stays on it, as for a user's mesh


@dataclass
class Config:
    label: str
    generator: Generator
    options: GenerateOptions

    def key(self) -> tuple:
        return (id(self.generator), tuple(sorted(dataclasses.asdict(self.options).items())))


def prepare(cases: list[Case], seed: int) -> list[Prepared]:
    prepared = []
    for case in cases:
        cloud = from_mesh(case.mesh, seed=seed)
        prepared.append(Prepared(case.name, case.mesh, cloud.points, cloud.normals, input_noise_floor(case.mesh, seed),
                                 cloud.source_mesh))
    return prepared


def model_heads(generator: Generator) -> int:
    """Number of drafting heads the loaded model has (0 when it has none)."""
    return int(generator.info.get("heads") or 0)


def warm_up(generator: Generator, item: Prepared, base: GenerateOptions) -> None:
    """First calls pay for allocation, kernel selection and caches; keep them out of the timings."""
    for mode in ("ar", "speculative"):
        options = dataclasses.replace(base, mode=mode, max_faces=min(WARMUP_FACES, base.max_faces))
        for _ in generator.stream(item.points, item.normals, options, mesh=item.source):
            pass


def measure_all(configs: list[Config], inputs: list[Prepared], log: Log) -> list[dict]:
    """One result per configuration, in order; a configuration listed twice runs once."""
    unique = {c.key(): c for c in configs}
    records: dict[tuple, list[dict]] = {key: [] for key in unique}
    for item in tqdm(inputs, desc="bench", unit="input", file=sys.stderr):
        for key, config in unique.items():
            records[key].append(run_one(config, item))
    results = []
    for config in configs:
        runs = records[config.key()]
        r = {"label": config.label, "options": dataclasses.asdict(config.options), **aggregate(runs), "inputs": runs}
        log(f"{config.label}: SCR {r['scr']:.2f}, {r['ms_per_pass']:.1f} ms/pass, "
            f"{r['tokens_per_second']:.0f} tok/s, median CD {_fmt(r['median_chamfer'])}")
        results.append(r)
    return results


def run_one(config: Config, item: Prepared) -> dict:
    result = generate(config.generator, item.points, item.normals, config.options, mesh=item.source)
    quality = measure(item.mesh, result.to_trimesh(), item.floor, config.options.seed)
    stats = result.stats
    return {"name": item.name, "tokens": int(stats["tokens"]), "faces": int(stats["faces"]),
            "forward_passes": int(stats["forward_passes"]), "seconds": float(stats["seconds"]),
            "time_to_first_face": stats.get("time_to_first_face"), "stop_reason": stats.get("stop_reason"),
            "valid": bool(quality["valid"] and stats.get("valid", True)), "profile": stats.get("profile", {}),
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
        # Where a pass's time goes, ms per forward pass: model, heads, tree (drafting), sampling
        # (distributions + verification), host (commit, grammar), pipeline (faces, events).
        "profile_ms": {section: 1000 * sum(r.get("profile", {}).get(section, 0.0) for r in records) / passes
                       for section in PROFILE if passes},
    }


def with_speedup(result: dict, reference: dict) -> dict:
    """speedup: tokens/s over the reference's (fair when outputs differ in length);
    wall_speedup: reference total seconds over this total seconds."""
    ref_tps = reference["tokens_per_second"]
    return {**result, "speedup": result["tokens_per_second"] / ref_tps if ref_tps else None,
            "wall_speedup": reference["seconds"] / result["seconds"] if result["seconds"] else None}


def sweep_configs(generator: Generator, base: GenerateOptions, sweeps: tuple[str, ...],
                  quick: bool) -> dict[str, list[tuple[dict, Config]]]:
    """Rows of each table, as (fields naming the row, configuration): "main" (AR, speculative),
    then the chosen sweeps. Runs that coincide (δ=0.5 in the δ sweep, the model's D in the D
    sweep, IS in the draft sweep) are the same configuration and are measured once."""
    heads = model_heads(generator)
    ar = Config("AR", generator, dataclasses.replace(base, mode="ar"))
    if not heads:
        return {"main": [({}, ar)]}
    # Name the head count explicitly so the D sweep's run at the model's D is the same run.
    spec = dataclasses.replace(base, mode="speculative", heads=base.heads or heads)
    top = min(heads, MAX_SWEEP_HEADS)
    drafts = ([("IS", {"draft": "is"})]
              + [(f"PTS(K_s={k})", {"draft": "pts", "pts_k": k}) for k in (QUICK_PTS_KS if quick else PTS_KS)]
              + [(f"tree(K_s={k}, N={n})", {"draft": "tree", "pts_k": k, "tree_nodes": n})
                 for k, n in (QUICK_TREES if quick else TREES)])
    table = {  # built lazily: only the chosen tables' options are made (and validated)
        "main": lambda: [({}, ar), ({}, Config("speculative", generator, spec))],
        "delta": lambda: [({"delta": d}, Config(f"delta={d}", generator, dataclasses.replace(spec, delta=d)))
                          for d in (QUICK_DELTAS if quick else DELTAS)],
        "heads": lambda: [({"heads": h}, Config(f"D={h}", generator, dataclasses.replace(spec, heads=h)))
                          for h in (sorted({1, top}) if quick else range(1, top + 1))],
        "draft": lambda: [({"draft": name}, Config(name, generator, dataclasses.replace(spec, **changes)))
                          for name, changes in drafts],
    }
    return {name: rows() for name, rows in table.items() if name == "main" or name in sweeps}


def run_bench(
    generator: Generator,
    cases: list[Case],
    base: GenerateOptions,
    sweeps: tuple[str, ...] = SWEEPS,
    quick: bool = False,
    ablation: list[tuple[str, Generator]] = (),
    log: Log = lambda line: print(line, file=sys.stderr),
) -> dict:
    load_before = _load_average()
    inputs = prepare(cases, base.seed)
    table = sweep_configs(generator, base, sweeps, quick)
    # Ablation rows: speculative when the model has heads, else AR (Table 3's row A).
    table["ablation"] = [({"name": name, "mode": mode}, Config(name, g, dataclasses.replace(base, mode=mode)))
                         for name, g in ablation for mode in ["speculative" if model_heads(g) else "ar"]]
    for g in {id(g): g for g in [generator, *(g for _, g in ablation)]}.values():
        g.profile = True
        warm_up(g, inputs[0], base)
    if not model_heads(generator):
        log("the model has no drafting heads: only the AR baseline is measured")
    configs = [c for rows in table.values() for _, c in rows]
    results = iter(measure_all(configs, inputs, log))
    rows = {name: [{**fields, **next(results)} for fields, _ in entries] for name, entries in table.items()}

    ar = rows["main"][0]
    # Other processes on the machine skew timings; the load average says how busy it was.
    machine = {**hardware(generator), "load_average_before": load_before, "load_average_after": _load_average()}
    report: dict = {"hardware": machine, "model": generator.info, "inputs": [p.name for p in inputs],
                    "base_options": dataclasses.asdict(base), "quick": quick, "model_heads": model_heads(generator),
                    "ar": with_speedup(ar, ar)}
    if len(rows["main"]) > 1:
        report["speculative"] = with_speedup(rows["main"][1], ar)
    for name in SWEEPS:
        if name in rows:
            report[name] = [with_speedup(row, ar) for row in rows[name]]
    if rows["ablation"]:
        # Speedups against the first head-less entry (the base backbone), else the main model's AR.
        reference = next((r for r in rows["ablation"] if r["mode"] == "ar"), ar)
        report["ablation"] = [with_speedup(row, reference) for row in rows["ablation"]]
    return report


def hardware(generator: Generator) -> dict:
    device = str(generator.info.get("device", "cpu"))
    info = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
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
        f"{report['model_heads']} heads. Load average before/after: {hw.get('load_average_before')} / "
        f"{hw.get('load_average_after')}. {len(report['inputs'])} inputs, batch 1, seed {base['seed']}, "
        f"max {base['max_faces']} faces, temperature {base['temperature']}{', greedy' if base['greedy'] else ''}, "
        f"verify `{base['verify']}`; warm-up excluded. Speed: totals over inputs; CD/HD: medians vs the input "
        f"(normalized to [-0.95, 0.95]). Speedup = tokens/s over AR's; wall speedup = AR seconds / seconds.", "",
    ]
    main = [report["ar"]] + ([report["speculative"]] if "speculative" in report else [])
    lines += _table("Configuration", [(_label(r), r) for r in main])
    lines += ["", "## Per-pass profile (ms per forward pass)", "",
              "| Configuration | " + " | ".join(PROFILE) + " | total |", "|" + "---|" * (len(PROFILE) + 2)]
    for r in main:
        cells = [f"{r.get('profile_ms', {}).get(s, 0.0):.2f}" for s in PROFILE]
        lines.append(f"| {_label(r)} | " + " | ".join(cells) + f" | {r['ms_per_pass']:.2f} |")
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
