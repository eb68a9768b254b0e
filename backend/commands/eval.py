"""`specmesh eval`: generate from held-out inputs and measure quality against quadric decimation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.commands.generate import add_decoding_arguments, add_model_arguments


def configure(p: argparse.ArgumentParser) -> None:
    p.description = ("For each input mesh: generate, then Chamfer/Hausdorff against the input, the "
                     "noise-floor ratio, face count, validity and time, beside quadric decimation of the input "
                     "to the same face count.")
    add_input_arguments(p)
    p.add_argument("--out", metavar="FILE.json", required=True, help="report file")
    add_model_arguments(p)
    add_decoding_arguments(p)
    p.set_defaults(func=run)


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """Shared with bench: a directory of meshes, or held-out procedural meshes."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--inputs", metavar="DIR", help="directory of mesh files")
    source.add_argument("--procedural", type=int, metavar="N",
                        help="use N held-out procedural meshes (the data's test split, from item --seed)")
    p.add_argument("--limit", type=int, metavar="N", help="use at most N inputs")


def load_cases(args: argparse.Namespace):
    from backend.evaluation import cases_from_dir, procedural_cases

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    if args.inputs is not None:
        return cases_from_dir(args.inputs, args.limit)
    count = args.procedural if args.limit is None else min(args.procedural, args.limit)
    return procedural_cases(count, start=args.seed)


def run(args: argparse.Namespace) -> int:
    from backend.commands.generate import load_generator, options_from_args, write_json
    from backend.evaluation import evaluate
    from backend.fileio import check_output_path
    from backend.training.condition_use import format_gap

    out = check_output_path(args.out, "--out")
    options = options_from_args(args)
    cases = load_cases(args)
    report = evaluate(load_generator(args), cases, options)
    write_json(out, report)
    print(_summary(report["summary"], out), file=sys.stderr)
    print(format_gap(report["condition_gap"]), file=sys.stderr)
    return 0


def _summary(s: dict, out: Path) -> str:
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    m, d = s["model"], s["decimation"]
    return (
        f"{s['count']} inputs: validity {m['validity_rate']:.0%}; median Chamfer {fmt(m['median_chamfer'])} "
        f"(decimation {fmt(d['median_chamfer'])}), Hausdorff {fmt(m['median_hausdorff'])} "
        f"(decimation {fmt(d['median_hausdorff'])}), CD/noise floor {fmt(m['median_noise_floor_ratio'])}; "
        f"model wins {s['wins']}, loses {s['losses']}, ties {s['ties']} -> {out}"
    )

