"""Learning-rate schedule: linear warmup, then cosine decay to a floor. A pure function of the
step, so resuming needs nothing but the step count."""

from __future__ import annotations

import math


def cosine_lr(step: int, total_steps: int, peak: float, final: float, warmup: int = 0) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total_steps`."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * progress))
