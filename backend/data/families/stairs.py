"""Stairs: solid flights, open steps on stringers, L-shaped flights with a landing, spirals."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s


def _flight_outline(steps: int, run: float, rise: float, soffit: bool) -> s.Outline:
    """Side view (x forward, y up) of a solid flight; with a soffit the underside is sloped."""
    pts = [(0.0, 0.0)]
    for k in range(steps):
        pts += [(k * run, (k + 1) * rise), ((k + 1) * run, (k + 1) * rise)]
    if soffit:
        pts += [(steps * run, (steps - 1) * rise), (run, 0.0)]
    else:
        pts.append((steps * run, 0.0))
    return s.polygon(pts)


def solid_flight(rng, steps, run, rise, width):
    # Built in the side plane, extruded across and stood up: x forward, z up, y across.
    return s.stand_up(s.extrude(_flight_outline(steps, run, rise, rng.random() < 0.4), width))


def open_flight(rng, steps, run, rise, width):
    tread = rise * rng.uniform(0.25, 0.5)
    parts = [s.box((run * 1.05, width, tread), ((k + 0.5) * run, -width / 2, (k + 1) * rise - tread / 2))
             for k in range(steps)]
    beam = rise * rng.uniform(0.6, 1.0)
    stringer = s.polygon([(0, 0), (beam, 0), (steps * run, (steps - 1) * rise + tread),
                          (steps * run, steps * rise), (steps * run - beam, steps * rise)])
    t = width * rng.uniform(0.06, 0.12)
    for y in (0.0, -width + t):
        parts.append(s.stand_up(s.extrude(stringer, t)).translate((0.0, y, 0.0)))
    return s.union(parts)


def l_shaped(rng, steps, run, rise, width):
    first = int(rng.integers(2, steps - 1))
    lower = solid_flight(rng, first, run, rise, width)
    landing = s.cuboid((first * run, -width, 0.0), (first * run + width, 0.0, first * rise))
    upper = solid_flight(rng, steps - first, run, rise, width)
    # The second flight turns 90 degrees about Z and starts at the landing's side.
    upper = s.rotate_z(upper, 90.0).translate((first * run + width, 0.0, first * rise))
    return s.union([lower, landing, upper])


def spiral(rng, steps, run, rise, width):
    column_r = width * rng.uniform(0.12, 0.25)
    sweep = rng.uniform(20, 35)
    tread = rise * rng.uniform(0.3, 0.6)
    parts = [s.cylinder(column_r, (steps + 1) * rise, s.pick(rng, (6, 8, 12)))]
    for k in range(steps):
        wedge = s.polygon([(0, 0), (width, -width * np.tan(np.radians(sweep / 2))),
                           (width, width * np.tan(np.radians(sweep / 2)))])
        step = s.extrude(wedge, tread, (k + 1) * rise - tread)
        parts.append(s.rotate_z(step, k * sweep * 0.9))
    return s.union(parts)


def make(rng: np.random.Generator) -> trimesh.Trimesh:
    steps = int(rng.integers(3, 11))
    run, rise = rng.uniform(0.22, 0.35), rng.uniform(0.15, 0.22)
    width = rng.uniform(0.6, 1.6)
    kind = s.pick(rng, (solid_flight, solid_flight, open_flight, l_shaped, spiral))
    return s.to_trimesh(kind(rng, max(steps, 4) if kind is l_shaped else steps, run, rise, width))
