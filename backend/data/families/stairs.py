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


def _flight(rng, steps, run, rise, width) -> s.Solid:
    # Built in the side plane, extruded across and stood up: x forward, z up, y across.
    return s.stand_up(s.extrude(_flight_outline(steps, run, rise, rng.random() < 0.4), width))


def solid_flight(rng, steps, run, rise, width):
    return s.to_trimesh(_flight(rng, steps, run, rise, width))


def open_flight(rng, steps, run, rise, width):
    """Treads whose ends sit inside two stringers, as separate parts."""
    tread = rise * rng.uniform(0.25, 0.5)
    parts = [s.box((run * 1.05, width, tread), ((k + 0.5) * run, -width / 2, (k + 1) * rise - tread / 2))
             for k in range(steps)]
    beam = rise * rng.uniform(0.8, 1.2)
    stringer = s.polygon([(0, 0), (beam, 0), (steps * run, (steps - 1) * rise),
                          (steps * run, steps * rise - tread / 2), (steps * run - beam, steps * rise - tread / 2)])
    t = width * rng.uniform(0.06, 0.12)
    for y in (t / 2, -width + t / 2):
        parts.append(s.stand_up(s.extrude(stringer, t)).translate((0.0, y, 0.0)))
    return s.assemble(parts)


def l_shaped(rng, steps, run, rise, width):
    first = int(rng.integers(2, steps - 1))
    lower = _flight(rng, first, run, rise, width)
    landing = s.cuboid(((first - 1) * run, -width, 0.0), (first * run + width, 0.0, first * rise))
    upper = _flight(rng, steps - first, run, rise, width)
    # The second flight turns 90 degrees about Z (running +y over x in [0, width]) and starts
    # from the landing's back edge, its foot tucked into the landing.
    upper = s.rotate_z(upper, 90.0).translate((first * run, -0.5 * run, first * rise))
    return s.to_trimesh(s.union([lower, landing, upper]))


def spiral(rng, steps, run, rise, width):
    """Wedge treads fanning around a central column, as separate parts."""
    column_r = width * rng.uniform(0.12, 0.25)
    sweep = rng.uniform(20, 35)
    tread = rise * rng.uniform(0.3, 0.6)
    half = width * np.tan(np.radians(sweep / 2))
    wedge = s.polygon([(0, 0), (width, -half), (width, half)])
    parts = [s.cylinder(column_r, (steps + 1) * rise, s.round_sides(rng, column_r, width * 2, (6, 8, 12)))]
    for k in range(steps):
        parts.append(s.rotate_z(s.extrude(wedge, tread, (k + 1) * rise - tread), k * sweep * 0.9))
    return s.assemble(parts)


def make(rng: np.random.Generator) -> trimesh.Trimesh:
    steps = int(rng.integers(3, 11))
    run, rise = rng.uniform(0.22, 0.35), rng.uniform(0.15, 0.22)
    width = rng.uniform(0.6, 1.6)
    kind = s.pick(rng, (solid_flight, solid_flight, open_flight, l_shaped, spiral))
    if kind is l_shaped:
        steps = max(steps, 4)
    if kind is spiral:
        steps += int(rng.integers(0, 7))
    return kind(rng, steps, run, rise, width)
