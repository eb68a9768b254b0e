"""Low-resolution tori and rings; capsules, UV spheres, icospheres and pucks."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s


def make_torus(rng: np.random.Generator) -> trimesh.Trimesh:
    major = 1.0
    minor = major * rng.uniform(0.15, 0.5)
    minor_sides = s.pick(rng, (3, 4, 4, 5, 6, 6, 8, 8))
    section = s.ngon_points(minor_sides, minor, phase=s.pick(rng, (0.0, np.pi / minor_sides)), center=(major, 0))
    if rng.random() < 0.3:  # a flat ring (washer-like) with a rectangular section
        section = s.rect(minor * rng.uniform(0.8, 2.0), minor * rng.uniform(0.4, 1.2), (major, 0.0))
    solid = s.lathe(section, s.pick(rng, (6, 8, 10, 12, 12, 16, 20, 24)))
    if rng.random() < 0.3:
        solid = solid.scale((1.0, rng.uniform(0.5, 0.9), 1.0))  # oval ring
    return s.to_trimesh(solid)


def make_capsule(rng: np.random.Generator) -> trimesh.Trimesh:
    kind = s.pick(rng, ("capsule", "capsule", "uv_sphere", "icosphere", "puck"))
    r = 1.0
    segments = s.pick(rng, (6, 8, 8, 10, 12, 16))
    if kind == "icosphere":
        mesh = trimesh.creation.icosphere(subdivisions=int(rng.integers(0, 2)), radius=r)
        mesh.apply_scale(rng.uniform(0.6, 1.0, size=3))  # pebble-like
        return mesh
    rings = int(rng.integers(2, 5))
    if kind == "puck":
        h = rng.uniform(0.2, 0.8)
        profile = np.vstack([[[0.0, -h / 2]], s.arc_points(h / 2, -np.pi / 2, np.pi / 2, rings, (r - h / 2, 0.0)),
                             [[0.0, h / 2]]])
    else:
        half = 0.0 if kind == "uv_sphere" else r * rng.uniform(0.3, 2.0)
        bottom = s.arc_points(r, -np.pi / 2, 0.0, rings, (0.0, -half))
        top = s.arc_points(r, 0.0, np.pi / 2, rings, (0.0, half))
        profile = np.vstack([bottom, top[1:]] if half == 0 else [bottom, top])
    return s.to_trimesh(s.lathe(profile, segments))
