"""n-sided prisms and cylinders, some with edge loops or a bevelled rim."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s

SIDES = (3, 4, 5, 6, 6, 8, 8, 10, 12, 12, 16, 16, 20, 24, 32)


def make(rng: np.random.Generator) -> trimesh.Trimesh:
    n = s.pick(rng, SIDES)
    radius = rng.uniform(0.3, 1.0)
    height = radius * np.exp(rng.uniform(np.log(0.2), np.log(5.0)))
    outline = s.polygon(s.ngon_points(n, radius, phase=rng.uniform(0, 2 * np.pi / n)))
    if rng.random() < 0.25:
        outline = outline.scale((rng.uniform(0.4, 0.9), 1.0))  # elliptical / flattened section
    kind = s.pick(rng, ("plain", "plain", "loops", "bevel"))
    if kind == "plain":
        solid = s.extrude(outline, height)
    elif kind == "loops":
        # Artist cylinders often carry a few horizontal edge loops.
        solid = s.Solid.extrude(outline, float(height), n_divisions=int(rng.integers(1, 4)))
    else:
        bevel = rng.uniform(0.06, 0.2) * min(radius, height)
        profile = [(0, 0), (radius, 0), (radius, height - bevel), (radius - bevel, height), (0, height)]
        if rng.random() < 0.5:  # bevel the bottom rim too
            profile[1:2] = [(radius - bevel, 0), (radius, bevel)]
        solid = s.lathe(profile, min(n, 24))
    return s.to_trimesh(solid)
