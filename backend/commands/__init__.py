"""One module per `specmesh` verb (`backend/cli.py` loads them lazily), plus the options that
several verbs share. Nothing here imports torch at module level."""

from __future__ import annotations

import argparse

# Batch-1 decoding of a small model runs thousands of tiny ops per second. Measured on this
# project's 2-core CPU with the shipped model (docs/architecture.md, "Threads"): with the other
# core busy, torch's default of 2 threads gave 16-66 tokens/s on the examples (every op waits for
# a preempted worker), 1 thread 189-401; on the idle machine 2 threads gave 260-435 and 1 thread
# 122-322. One thread is the choice that never collapses, so it is the default for models up to
# this many parameters; a larger model's passes are bound by its matrix products, where torch's
# own thread count pays.
SINGLE_THREAD_MAX_PARAMETERS = 50_000_000


def add_threads_argument(p: argparse.ArgumentParser, decoding: bool = False) -> None:
    if decoding:
        text = ("torch CPU threads (default: 1 for batch-1 decoding of a model up to 50M parameters, "
                "measured fastest on a busy CPU; torch's choice for larger models)")
    else:
        text = "torch CPU threads (default: torch's choice)"
    p.add_argument("--threads", type=int, metavar="N", help=text)


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")


def set_threads(threads: int | None) -> None:
    """Apply --threads (None keeps torch's choice)."""
    check_threads(threads)
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)


def decoding_threads(threads: int | None, device: str, parameters: int) -> int | None:
    """Threads for batch-1 decoding: `threads` when given; else 1 on the CPU for a model up to
    SINGLE_THREAD_MAX_PARAMETERS; else None (torch's choice)."""
    check_threads(threads)
    if threads is not None:
        return threads
    if device.startswith("cpu") and parameters <= SINGLE_THREAD_MAX_PARAMETERS:
        return 1
    return None


def set_decoding_threads(threads: int | None, generator) -> int:
    """Apply `decoding_threads` for a loaded `Generator`; -> the thread count now in use."""
    import torch

    chosen = decoding_threads(threads, generator.info["device"], int(generator.info["parameters"]))
    if chosen is not None:
        torch.set_num_threads(chosen)
    return torch.get_num_threads()
