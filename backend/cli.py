"""The `specmesh` command. Each verb lives in `backend/commands/<verb>.py` and exposes
`configure(parser)`, which adds its arguments and sets `func` via `set_defaults`; the one-line
help of every verb lives here only. Verbs are imported lazily so that `specmesh tokenize` does
not pay for importing torch."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

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


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too (and still exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = Parser(
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


TRACEBACK_ENV = "SPECMESH_TRACEBACK"  # set to 1 to see the traceback of an unexpected error


def main(argv: list[str] | None = None) -> int:
    """Every failure is one line on stderr and exit status 2 (argparse's own usage errors too)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _fail(args.verb, "interrupted")
        return 130
    except ModuleNotFoundError as exc:
        _fail(args.verb, f"error: this command needs the package {exc.name!r}, one of the optional training "
                         "dependencies: pip install 'specmesh[train]'")
    except (ValueError, OSError, ArithmeticError) as exc:  # bad input, unwritable output, NaN
        _fail(args.verb, f"error: {exc}")
    except MemoryError:
        _fail(args.verb, "error: out of memory")
    except Exception as exc:
        if os.environ.get(TRACEBACK_ENV):
            raise
        _fail(args.verb, f"internal error: {type(exc).__name__}: {exc} (set {TRACEBACK_ENV}=1 for the traceback)")
    return 2


def _fail(verb: str, message: str) -> None:
    # One line: whatever the exception says, newlines included.
    print(f"specmesh {verb}: {' '.join(message.split())}", file=sys.stderr)
