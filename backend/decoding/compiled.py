"""The compiled decoding path (`--compile`): the backbone's decoding step and the drafting heads
run through `torch.compile`, CUDA graphs (`mode="reduce-overhead"`) on a GPU and the C++ inductor
on a CPU with a compiler.

Shapes are what makes this work: a compiled model decodes with a static KV cache
(`MeshTransformer.new_cache` then hands out one set of full-length buffers at fixed addresses),
every pass attends to the whole buffer under a mask, and the speculative decoder pads each verify
pass to the same number of rows, so the step is captured once for one token (AR, prefill) and
once for a verify pass, and the heads once. Anything that fails to compile falls back to the eager
code with a one-line notice on stderr, and the tokens are the same either way (tests)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable

import torch
from torch import nn

from backend.model.decoder import MeshTransformer


def compile_decoding(model: MeshTransformer, heads: nn.Module | None) -> bool:
    """Compile `model.step` and `heads.draft_features` in place; False (eager, notice printed) when this
    machine cannot compile."""
    device = next(model.parameters()).device
    reason = _cannot_compile(device)
    if reason:
        notice(reason)
        return False
    mode = "reduce-overhead" if device.type == "cuda" else None
    with torch.inference_mode():
        model.lm_head.weight  # a factorized vocabulary caches its full matrix now, outside the graphs
    model.compiled_step = _Guarded(torch.compile(model.step, mode=mode, dynamic=False), model.step, "backbone step")
    if heads is not None:
        heads.draft_features = _Guarded(torch.compile(heads.draft_features, mode=mode, dynamic=False),
                                        heads.draft_features, "drafting heads")
    return True


def _cannot_compile(device: torch.device) -> str | None:
    if device.type == "cpu" and not shutil.which(os.environ.get("CXX", "") or "g++") and not shutil.which("c++"):
        return "no C++ compiler found (install g++ or set CXX)"
    if device.type not in ("cpu", "cuda"):
        return f"device {device.type} is not supported"
    return None


def notice(reason: str) -> None:
    print(f"specmesh: --compile unavailable ({reason}); decoding eagerly", file=sys.stderr)


class _Guarded:
    """The compiled function until it fails once (compilation errors surface at the first call,
    before anything ran), then the eager one."""

    def __init__(self, compiled: Callable, eager: Callable, what: str) -> None:
        self.compiled, self.eager, self.what = compiled, eager, what

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                # CUDA graphs: the previous pass's outputs have been read (the decoder keeps
                # copies of what it needs), so their memory may be reused.
                torch.compiler.cudagraph_mark_step_begin()
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
                self.compiled = None
                first = (str(exc).strip().splitlines() or [""])[0][:160]
                notice(f"{self.what}: {type(exc).__name__}: {first}")
        return self.eager(*args, **kwargs)
