"""Bevelled and chamfered boxes: crates, blocks, cabinets' carcasses, plinths."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s


def make(rng: np.random.Generator) -> trimesh.Trimesh:
    size = np.exp(rng.uniform(np.log(0.3), np.log(2.0), size=3))
    bevel = rng.uniform(0.05, 0.2) * size.min()
    kind = s.pick(rng, ("chamfer", "chamfer", "vertical", "rounded", "plain", "tapered", "stacked"))
    if kind == "chamfer":
        solid = s.chamfer_box(size, bevel)
    elif kind in ("vertical", "rounded"):
        # Only the vertical edges are cut (4 segments per turn = chamfer) or rounded.
        segments = 4 if kind == "vertical" else s.pick(rng, (8, 12, 16))
        solid = s.extrude(s.rounded_rect(size[0], size[1], bevel, segments), size[2])
    elif kind == "plain":
        solid = s.box(size)
    elif kind == "tapered":
        # A block whose top shrinks: a truncated pyramid with a vertical base band.
        band = rng.uniform(0.2, 0.7) * size[2]
        taper = tuple(rng.uniform(0.4, 0.9, size=2))
        base = s.rect(size[0], size[1])
        solid = s.union([s.extrude(base, band), s.extrude(base, size[2] - band, band, scale_top=taper)])
    else:
        # Plinth: two or three boxes stacked, each narrower than the one below.
        levels = int(rng.integers(2, 4))
        parts, z, footprint = [], 0.0, size[:2].copy()
        for _ in range(levels):
            h = rng.uniform(0.15, 0.5) * size[2]
            maker = s.chamfer_box if rng.random() < 0.5 else (lambda sz, b, c: s.box(sz, c))
            parts.append(maker((*footprint, h), min(bevel, 0.2 * h), (0.0, 0.0, z + h / 2)))
            z += h
            footprint = footprint * rng.uniform(0.55, 0.9)
        solid = s.union(parts)
    return s.to_trimesh(solid)
