"""BPT normalization: centre the bounding box and scale so the longest side spans [-0.95, 0.95].
Kept as a small object so generated vertices can be mapped back to the caller's frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HALF_EXTENT = 0.95


@dataclass(frozen=True)
class Normalization:
    center: np.ndarray  # (3,) bounding-box centre in the caller's frame
    scale: float  # caller units -> normalized units

    @classmethod
    def fit(cls, vertices: np.ndarray) -> "Normalization":
        v = np.asarray(vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
            raise ValueError(f"need a non-empty (n, 3) array of points, got shape {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("points contain NaN or infinite values")
        lo, hi = v.min(axis=0), v.max(axis=0)
        extent = float((hi - lo).max())
        if extent <= 0.0:
            raise ValueError("all points coincide; cannot normalize a zero-size shape")
        return cls(center=(lo + hi) / 2.0, scale=2.0 * HALF_EXTENT / extent)

    def apply(self, vertices: np.ndarray) -> np.ndarray:
        return (np.asarray(vertices, dtype=np.float64) - self.center) * self.scale

    def invert(self, vertices: np.ndarray) -> np.ndarray:
        return np.asarray(vertices, dtype=np.float64) / self.scale + self.center
