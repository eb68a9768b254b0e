"""`specmesh serve`: JSON Lines on stdin/stdout for the Blender add-on (docs/protocol.md)."""

from __future__ import annotations

import argparse
import os
import sys

from backend.commands import add_threads_argument, check_threads


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="model directory (default: $SPECMESH_MODEL_DIR or the shipped models/default)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    add_threads_argument(p, decoding=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backend.server import serve

    check_threads(args.threads)

    # stdout carries protocol lines only. Keep a private handle on the real stdout, then point
    # file descriptor 1 at stderr so stray prints, progress bars and C libraries cannot corrupt it.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")  # buffered: whole lines, flushed per event
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    try:
        return serve(args.model, args.device, sys.stdin.buffer, protocol_out, threads=args.threads)
    finally:
        protocol_out.close()
