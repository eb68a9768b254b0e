"""Low-poly buildings: gabled and hipped houses with a chimney and door, round or square
towers with a spire, lean-to sheds; and classical columns (plinth, shaft, capital)."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s


def _gable_roof(w: float, d: float, rise: float, over: float, z0: float) -> s.Solid:
    """A triangular prism along y over a w x d footprint, overhanging by `over`."""
    a = w / 2 + over
    return s.stand_up(s.extrude(s.polygon([(-a, 0), (a, 0), (0, rise)]), d + 2 * over)).translate(
        (0.0, (d + 2 * over) / 2, z0))


def house(rng):
    w, d, h = rng.uniform(1.0, 2.0), rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.2)
    rise = rng.uniform(0.3, 0.8) * w
    over = rng.uniform(0.0, 0.12) * w
    body = s.box((w, d, h), (0, 0, h / 2))
    if rng.random() < 0.6:
        roof = _gable_roof(w, d, rise, over, h - 0.01 * h)
    else:  # hipped: a box extruded to a ridge line
        roof = s.extrude(s.rect(w + 2 * over, d + 2 * over), rise, h * 0.99,
                         scale_top=(rng.uniform(0.1, 0.5), rng.uniform(0.05, 0.3)))
    parts = [body, roof]
    if rng.random() < 0.7:  # chimney through one roof slope
        cw = w * rng.uniform(0.08, 0.14)
        parts.append(s.box((cw, cw, rise + 0.2 * h), (w * rng.uniform(0.15, 0.3), d * rng.uniform(-0.3, 0.3),
                                                        h + rise * 0.5 + 0.1 * h)))
    solid = s.union(parts)
    # A door and windows cut into the front wall.
    door_w, door_h = w * rng.uniform(0.15, 0.25), h * rng.uniform(0.5, 0.7)
    windows = rng.random() < 0.6
    door_x = 0.0 if windows else w * rng.uniform(-0.25, 0.25)
    cutters = [s.box((door_w, 0.1 * d, door_h), (door_x, -d / 2, door_h / 2 - 0.01))]
    for x in (-w / 3, w / 3) if windows else ():
        cutters.append(s.box((w * 0.14, 0.1 * d, h * 0.22), (x, -d / 2, h * 0.62)))
    return s.subtract(solid, cutters)


def tower(rng):
    sides = s.pick(rng, (4, 6, 8, 8, 12))
    r, h = rng.uniform(0.4, 0.7), rng.uniform(1.5, 3.5)
    phase = 45.0 if sides == 4 else 0.0
    parts = [s.cylinder(r * rng.uniform(1.1, 1.3), h * 0.08, sides, phase_deg=phase),
             s.cylinder(r, h, sides, phase_deg=phase)]
    if rng.random() < 0.5:  # a wider parapet ring near the top
        parts.append(s.cylinder(r * 1.15, h * 0.08, sides, z0=h * 0.92, phase_deg=phase))
    parts.append(s.cylinder(r * rng.uniform(1.05, 1.25), h * rng.uniform(0.3, 0.6), sides, radius_top=0.0, z0=h,
                            phase_deg=phase))
    return s.union(parts)


def shed(rng):
    w, d = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.2)
    low, high = rng.uniform(0.5, 0.8), rng.uniform(0.9, 1.3)
    over = rng.uniform(0.03, 0.12)
    side = s.polygon([(-d / 2, 0), (d / 2, 0), (d / 2, low), (-d / 2, high)])
    body = s.stand_up(s.extrude(side, w)).rotate((0, 0, 90)).translate((-w / 2, 0, 0))
    t = 0.05
    slope = np.arctan2(high - low, d)
    roof = s.box((w + 2 * over, (d + 2 * over) / np.cos(slope), t), (0, 0, (low + high) / 2 + t / 2))
    roof = roof.translate((0, 0, -(low + high) / 2 - t / 2)).rotate((-np.degrees(slope), 0, 0)).translate(
        (0, 0, (low + high) / 2 + t / 2))
    door = s.box((w * 0.3, 0.2, high * 0.7), (0, -d / 2, high * 0.35 - 0.01))
    return s.subtract(s.union([body, roof]), [door])


def make(rng: np.random.Generator) -> trimesh.Trimesh:
    return s.to_trimesh(s.pick(rng, (house, house, tower, shed))(rng))


def make_column(rng: np.random.Generator) -> trimesh.Trimesh:
    h = rng.uniform(2.0, 4.0)
    r = h * rng.uniform(0.06, 0.12)
    sides = s.pick(rng, (6, 8, 8, 10, 12, 16))
    plinth, capital = r * rng.uniform(0.3, 0.6), r * rng.uniform(0.3, 0.6)
    parts = [s.box((2.6 * r, 2.6 * r, plinth), (0, 0, plinth / 2)),
             s.box((2.6 * r, 2.6 * r, capital), (0, 0, h - capital / 2))]
    # Shaft with base and top mouldings as one turned profile, its ends buried in the blocks.
    ring = r * rng.uniform(0.3, 0.6)
    taper = rng.uniform(0.8, 1.0)  # entasis, roughly
    profile = [(0, plinth / 2), (1.2 * r, plinth / 2), (1.2 * r, plinth + 0.4 * ring), (r, plinth + ring),
               (r * taper, h - capital - ring), (1.2 * r, h - capital - 0.4 * ring), (1.2 * r, h - capital / 2),
               (0, h - capital / 2)]
    parts.append(s.lathe(profile, sides))
    solid = s.union(parts)
    if rng.random() < 0.3:  # a broken column: cut the top off at a slant
        cut = s.box((10 * r, 10 * r, h), (0, 0, h / 2)).rotate((rng.uniform(-20, 20), rng.uniform(-20, 20), 0))
        solid = solid - cut.translate((0, 0, h * rng.uniform(0.5, 0.85)))
    return s.to_trimesh(solid)
