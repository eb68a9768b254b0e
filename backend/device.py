"""The one device resolver: "auto" | "cpu" | "cuda" (or "cuda:N") -> torch.device, for inference
(`Generator.load`) and training alike."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> torch.device:
    """auto -> cuda when available, else cpu; ValueError for an unknown name or a missing CUDA."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r} (use auto, cpu or cuda)") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available")
    return resolved
