"""Process-level plumbing shared by training and distillation: device and torch.distributed
set-up (torchrun's env:// variables; gloo on CPU, nccl on CUDA), a stop flag raised by
SIGTERM/SIGINT, the metrics log and the optimizer recipe."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def autocast(self):
        """bf16 autocast on CUDA; plain fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def all_sum(self, *values: float) -> list[float]:
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()


@contextmanager
def runtime(device: str = "auto") -> Iterator[Runtime]:
    """Joins the process group when launched by torchrun (WORLD_SIZE set), else runs alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo", init_method="env://")
        dev = torch.device("cuda", local) if cuda else torch.device("cpu")
        try:
            yield Runtime(dev, dist.get_rank(), dist.get_world_size())
        finally:
            dist.destroy_process_group()
    else:
        yield Runtime(torch.device("cuda" if cuda else "cpu"))


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM/SIGINT (the loop checkpoints and exits at the next step)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in previous:
        signal.signal(s, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class MetricsLog:
    """Append-only JSON Lines of metrics, with wall-clock seconds since the log was opened."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self.t0 = time.time()

    def write(self, **record: Any) -> None:
        if self.enabled:
            record["wall"] = round(time.time() - self.t0, 3)
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def adamw(named: list[tuple[str, nn.Parameter]], lr: float, betas: tuple[float, float],
          weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases, norms or scalars)."""
    decay = [p for _, p in named if p.ndim >= 2]
    rest = [p for _, p in named if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def update(loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
           lr: float, clip: float = 1.0) -> None:
    """One optimizer step at learning rate `lr` with gradient-norm clipping."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


class Every:
    """True once per `seconds` of wall time (for periodic checkpoints)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last = time.monotonic()

    def due(self) -> bool:
        if self.seconds > 0 and time.monotonic() - self.last >= self.seconds:
            self.last = time.monotonic()
            return True
        return False
