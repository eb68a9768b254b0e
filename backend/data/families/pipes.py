"""Hollow pipes: straight runs with flanges, elbows (45/90/180 degrees) with straight ends,
and tee junctions."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s


def _ring(r_out: float, r_in: float, sides: int, center=(0.0, 0.0)) -> s.Outline:
    return s.polygon(s.ngon_points(sides, r_out, center=center)) - s.polygon(s.ngon_points(sides, r_in, center=center))


def _flange(r: float, sides: int, rng) -> s.Outline:
    return _ring(r * rng.uniform(1.4, 1.9), r * 0.75, sides)


def straight(rng, r, t, sides):
    length = r * rng.uniform(2.0, 10.0)
    parts = [s.extrude(_ring(r, r - t, sides), length)]
    if rng.random() < 0.6:  # flanges at one or both ends
        flange = _flange(r, sides, rng)
        thick = r * rng.uniform(0.15, 0.35)
        parts.append(s.extrude(flange, thick))
        if rng.random() < 0.7:
            parts.append(s.extrude(flange, thick, length - thick))
    return s.union(parts)


def elbow(rng, r, t, sides):
    bend = r * rng.uniform(1.5, 3.0)
    degrees = float(s.pick(rng, (45.0, 90.0, 90.0, 90.0, 180.0)))
    section = _ring(r, r - t, sides, (bend, 0.0))
    bend_segments = max(2, int(round(degrees / s.pick(rng, (15.0, 22.5, 30.0)))))
    parts = [s.lathe(section, bend_segments, degrees)]
    # Straight ends continue the bend's tangents: extrude the same section (so vertices match)
    # and turn it so it runs backwards from the start (-Y) or forwards from the end.
    for end in range(2):
        if rng.random() < 0.7:
            leg = s.extrude(section, r * rng.uniform(1.0, 4.0)).rotate((90.0, 0.0, 0.0))
            if end:
                leg = leg.mirror((0.0, 1.0, 0.0)).rotate((0.0, 0.0, degrees))
            parts.append(leg)
    return s.union(parts)


def tee(rng, r, t, sides):
    length = r * rng.uniform(3.0, 8.0)
    branch = r * rng.uniform(1.5, 4.0)
    r_branch = r * rng.uniform(0.6, 1.0)
    run = s.cylinder(r, length, sides, z0=-length / 2)
    stub = s.rod((0, 0, 0), (branch, 0, 0), r_branch, sides)
    bores = [s.cylinder(r - t, length + 1, sides, z0=-length / 2 - 0.5),
             s.rod((0, 0, 0), (branch + 0.5, 0, 0), r_branch - t, sides)]
    return s.subtract(s.union([run, stub]), bores)


def make(rng: np.random.Generator) -> trimesh.Trimesh:
    r = 1.0
    t = r * rng.uniform(0.12, 0.3)
    sides = s.pick(rng, (6, 8, 8, 10, 12))
    kind = s.pick(rng, (straight, elbow, elbow, tee))
    return s.to_trimesh(kind(rng, r, t, sides))
