"""One module per `specmesh` verb (`backend/cli.py` loads them lazily), plus the options that
several verbs share. Nothing here imports torch at module level."""

from __future__ import annotations

import argparse


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads (default: torch's choice). Batch-1 decoding runs many tiny ops; "
                        "on a busy CPU, 1 thread avoids waiting on preempted workers and is often fastest")


def set_threads(threads: int | None) -> None:
    """Apply --threads (None keeps torch's choice)."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
