"""The `specmesh` command. Each verb lives in `backend/commands/<verb>.py` and exposes
`configure(parser)`, which adds its arguments and sets `func` via `set_defaults`; the one-line
help of every verb lives here only. Verbs are imported lazily so that `specmesh tokenize` does
not pay for importing torch."""

from __future__ import annotations

import argparse
import importlib
import sys

VERBS = {
    "generate": "Turn a mesh or point cloud into an artist-style low-poly mesh.",
    "serve": "Run the JSON Lines backend for the Blender add-on (stdin/stdout).",
    "tokenize": "Encode meshes as BPT tokens and check the round trip.",
    "data": "Build or preview the procedural artist-mesh dataset.",
    "train": "Train the backbone on a dataset.",
    "distill": "Distill XSpecMesh decoding heads (stage 1) and LoRA (stage 2).",
    "eval": "Generate from held-out inputs and measure quality against a decimation baseline.",
    "bench": "Benchmark autoregressive against speculative decoding.",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specmesh",
        description="SpecMesh: artist-style low-poly meshes from shapes, with speculative decoding.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    # Only the requested verb's module is imported; the others are listed by their help line.
    wanted = next((a for a in argv if a in VERBS), None)
    for verb, help_text in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        if verb == wanted:
            importlib.import_module(f"backend.commands.{verb}").configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        # Bad input is the user's to fix: one clear line, no traceback.
        print(f"specmesh {args.verb}: error: {exc}", file=sys.stderr)
        return 2
