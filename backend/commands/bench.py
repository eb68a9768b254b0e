"""`specmesh bench`: autoregressive against speculative decoding, with sweeps and plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.commands.eval import add_input_arguments, load_cases
from backend.commands.generate import add_decoding_arguments, add_model_arguments

QUICK_INPUTS = 2


def configure(p: argparse.ArgumentParser) -> None:
    p.description = ("AR and speculative decoding on the same inputs and seeds, batch 1, warm-up "
                     "excluded: SCR, ms per forward pass, tokens/s, speedup, time to first face, Chamfer/"
                     "Hausdorff vs the input, validity; sweeps of δ, heads D and the draft sampler. The "
                     "decoding options set the speculative configuration the other sweeps hold fixed.")
    add_input_arguments(p)
    p.add_argument("--out", metavar="DIR", required=True, help="writes bench.json, results.md and PNG plots here")
    p.add_argument("--sweeps", default="delta,heads,draft",
                   help="comma-separated subset of delta,heads,draft, or 'none' (default: all)")
    p.add_argument("--quick", action="store_true",
                   help=f"small version: {QUICK_INPUTS} inputs unless --limit, δ∈{{0.1,0.5,0.9}}, D∈{{1,max}}, PTS K_s=2, tree K_s=2 N=8")
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=DIR",
                   help="add a model directory to the Table 3 ablation (repeatable), e.g. CA+LoRA=models/default")
    add_model_arguments(p)
    add_decoding_arguments(p)
    p.set_defaults(func=run)


def parse_sweeps(text: str) -> tuple[str, ...]:
    from backend.benchmark import SWEEPS

    if text.strip() == "none":
        return ()
    chosen = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in chosen if s not in SWEEPS]
    if unknown:
        raise ValueError(f"unknown sweep(s) {unknown}; choose from {', '.join(SWEEPS)} or 'none'")
    return chosen


def parse_ablation(entries: list[str]) -> list[tuple[str, Path]]:
    parsed = []
    for entry in entries:
        name, sep, directory = entry.partition("=")
        if not sep or not name or not directory:
            raise ValueError(f"--ablation expects NAME=DIR, got {entry!r}")
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"--ablation {name}: model directory not found: {directory}")
        parsed.append((name, Path(directory)))
    return parsed


def run(args: argparse.Namespace) -> int:
    from backend.benchmark import markdown, plot, run_bench
    from backend.commands.generate import load_generator, options_from_args, write_json
    from backend.decoding.pipeline import Generator
    from backend.fileio import atomic_write, check_output_path

    options = options_from_args(args)
    sweeps = parse_sweeps(args.sweeps)
    ablation_dirs = parse_ablation(args.ablation)
    if args.quick and args.limit is None:
        args.limit = QUICK_INPUTS
    out = Path(args.out)
    check_output_path(out / "bench.json", "--out")
    cases = load_cases(args)

    generator = load_generator(args)
    ablation = [(name, Generator.load(str(d), device=args.device)) for name, d in ablation_dirs]
    report = run_bench(generator, cases, options, sweeps=sweeps, quick=args.quick, ablation=ablation)
    write_json(out / "bench.json", report)
    atomic_write(out / "results.md", markdown(report))
    plots = plot(report, out)
    spec = report.get("speculative")
    headline = (f"speculative SCR {spec['scr']:.2f}, speedup {spec['speedup']:.2f}× over AR "
                f"({report['ar']['tokens_per_second']:.0f} -> {spec['tokens_per_second']:.0f} tok/s)"
                if spec else f"AR only: {report['ar']['tokens_per_second']:.0f} tok/s")
    written = ", ".join(str(p) for p in [out / "bench.json", out / "results.md", *plots])
    print(f"{len(report['inputs'])} inputs: {headline}; wrote {written}", file=sys.stderr)
    return 0
