"""Cones, frustums, pyramids, bicones and stepped spires."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s


def make(rng: np.random.Generator) -> trimesh.Trimesh:
    kind = s.pick(rng, ("cone", "frustum", "pyramid", "frustum_pyramid", "bicone", "spire"))
    radius = rng.uniform(0.3, 1.0)
    height = radius * np.exp(rng.uniform(np.log(0.4), np.log(4.0)))
    n = s.pick(rng, (6, 8, 8, 10, 12, 16, 16, 20, 24))
    if kind in ("pyramid", "frustum_pyramid"):
        n = s.pick(rng, (4, 4, 4, 6))
    top = 0.0 if kind in ("cone", "pyramid") else rng.uniform(0.15, 0.8) * radius
    phase = 180.0 / n if n == 4 else 0.0  # square pyramids sit with edges on the axes
    if kind == "bicone":
        z_mid = rng.uniform(0.2, 0.8) * height
        profile = [(0, 0), (radius, z_mid), (0, height)]
        if rng.random() < 0.5:  # a vertical band at the widest point
            band = rng.uniform(0.1, 0.3) * height
            profile[1:2] = [(radius, z_mid), (radius, z_mid + band)]
            profile[-1] = (0, height + band)
        solid = s.lathe(profile, n)
    elif kind == "spire":
        # Stacked frustums, each starting narrower than the last one ended; tall, not a hat.
        height = max(height, radius * rng.uniform(2.0, 4.0))
        steps = int(rng.integers(2, 5))
        heights = rng.uniform(0.5, 1.5, size=steps)
        heights *= height / heights.sum()
        profile, z, r = [(0.0, 0.0)], 0.0, radius
        for k, h in enumerate(heights):
            r_top = 0.0 if k == steps - 1 else r * rng.uniform(0.5, 0.85)
            profile += [(r, z), (r_top, z + h)]
            z += h
            r = r_top * rng.uniform(0.7, 0.95)
        solid = s.lathe(profile, n)
    else:
        solid = s.cylinder(radius, height, n, radius_top=top, phase_deg=phase)
        if kind == "pyramid" or rng.random() < 0.3:  # on a plinth slab, like a monument or a roof cap
            slab = height * rng.uniform(0.08, 0.25)
            plinth = s.cylinder(radius * rng.uniform(1.08, 1.3), slab, n, phase_deg=phase)
            solid = s.union([plinth, solid.translate((0.0, 0.0, slab))])
    return s.to_trimesh(solid)
