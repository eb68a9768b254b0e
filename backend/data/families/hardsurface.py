"""Hard-surface parts with real boolean holes and cut-outs: perforated plates, brackets,
nuts, gears, flanges and pocketed blocks."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s

HOLE_SIDES = (6, 8, 8, 10, 12)


def _hole(rng, r: float, xy, depth: float, sides: int) -> s.Solid:
    """A vertical through-cutter centred at xy, taller than anything it cuts."""
    return s.cylinder(r, depth + 2.0, sides, z0=-1.0, xy=xy)


def plate(rng):
    w, d, t = rng.uniform(1.0, 2.0), rng.uniform(0.6, 1.4), rng.uniform(0.08, 0.25)
    body = s.chamfer_box((w, d, t), t * 0.2, (0, 0, t / 2)) if rng.random() < 0.5 else \
        s.extrude(s.rounded_rect(w, d, rng.uniform(0.05, 0.2) * d, s.pick(rng, (4, 8, 12))), t)
    cols, rows = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    r = min(w / cols, d / rows) * rng.uniform(0.12, 0.25)
    sides = s.pick(rng, HOLE_SIDES)
    xs = (np.arange(cols) - (cols - 1) / 2) * (w / cols)
    ys = (np.arange(rows) - (rows - 1) / 2) * (d / rows)
    cutters = [_hole(rng, r, (x, y), t, sides) for x in xs for y in ys]
    if rng.random() < 0.4:  # a rectangular window in the middle instead of the central holes
        cutters = [c for c, (x, y) in zip(cutters, [(x, y) for x in xs for y in ys]) if abs(x) > w / 4]
        cutters.append(s.box((w * 0.3, d * 0.45, t + 2.0), (0, 0, t / 2)))
    return s.subtract(body, cutters)


def bracket(rng):
    """L-bracket: two flanges with holes, often a triangular gusset."""
    w, a, b, t = rng.uniform(0.5, 1.2), rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(0.08, 0.2)
    outline = s.polygon([(0, 0), (a, 0), (a, t), (t, t), (t, b), (0, b)])
    body = s.stand_up(s.extrude(outline, w)).translate((0, w / 2, 0))  # x: base flange, z: upright flange
    parts = [body]
    if rng.random() < 0.6:
        g = s.polygon([(t, t), (min(a, b) * 0.6, t), (t, min(a, b) * 0.6)])
        parts.append(s.stand_up(s.extrude(g, t)).translate((0, t / 2, 0)))
    body = s.union(parts)
    r = min(w, a, b) * rng.uniform(0.08, 0.15)
    sides = s.pick(rng, HOLE_SIDES)
    cutters = []
    for y in (-w / 4, w / 4) if w > 0.8 else (0.0,):
        cutters.append(_hole(rng, r, ((a + t) / 2, y), t, sides))
        cutters.append(s.rod((-1.0, y, (b + t) / 2), (1.0, y, (b + t) / 2), r, sides))
    return s.subtract(body, cutters)


def nut(rng):
    r = 1.0
    h = r * rng.uniform(0.5, 1.0)
    sides = s.pick(rng, (6, 6, 6, 8, 4))
    body = s.cylinder(r, h, sides)
    if rng.random() < 0.6:  # chamfered corners: intersect with a double cone
        c = r * rng.uniform(0.9, 0.97)
        body = body ^ s.lathe([(0, 0), (c, 0), (c + h * 0.6, h / 2), (c, h), (0, h)], 24)
    return s.subtract(body, [_hole(rng, r * rng.uniform(0.35, 0.6), (0, 0), h, s.pick(rng, (8, 12, 16)))])


def gear(rng):
    teeth = int(rng.integers(6, 17))
    r_root, r_tip = 1.0, 1.0 + rng.uniform(0.12, 0.3)
    pitch = 2 * np.pi / teeth
    pts = []
    for k in range(teeth):
        a = k * pitch
        for frac, rr in ((0.0, r_root), (0.2, r_tip), (0.45, r_tip), (0.65, r_root)):
            pts.append((rr * np.cos(a + frac * pitch), rr * np.sin(a + frac * pitch)))
    t = rng.uniform(0.15, 0.5)
    body = s.extrude(s.polygon(pts), t)
    bore = rng.uniform(0.15, 0.35)
    cutters = [_hole(rng, bore, (0, 0), t, s.pick(rng, HOLE_SIDES))]
    if rng.random() < 0.5:  # keyway
        cutters.append(s.box((bore * 0.5, bore * 1.1, t + 2.0), (bore, 0, t / 2)))
    if rng.random() < 0.5:  # lightening holes
        n = int(rng.integers(3, 7))
        for xy in s.ngon_points(n, 0.6, np.pi / n):
            cutters.append(_hole(rng, rng.uniform(0.12, 0.18), xy, t, 6))
    return s.subtract(body, cutters)


def flange(rng):
    r = 1.0
    t = rng.uniform(0.1, 0.3)
    sides = s.pick(rng, (8, 12, 16))
    hub_r = r * rng.uniform(0.35, 0.55)
    hub_h = t + rng.uniform(0.2, 0.8)
    body = s.union([s.cylinder(r, t, sides), s.cylinder(hub_r, hub_h, sides)])
    holes = int(rng.integers(3, 9))
    cutters = [_hole(rng, hub_r * 0.6, (0, 0), hub_h, sides)]
    for xy in s.ngon_points(holes, (r + hub_r) / 2, np.pi / holes):
        cutters.append(_hole(rng, (r - hub_r) * 0.18, xy, t, 6))
    return s.subtract(body, cutters)


def pocket_block(rng):
    w, d, h = rng.uniform(0.8, 2.0), rng.uniform(0.6, 1.5), rng.uniform(0.3, 1.0)
    body = s.box((w, d, h), (0, 0, h / 2))
    cutters = []
    for _ in range(int(rng.integers(1, 4))):
        kind = s.pick(rng, ("pocket", "slot", "hole", "step"))
        pw, pd = rng.uniform(0.15, 0.45) * w, rng.uniform(0.15, 0.45) * d
        x, y = rng.uniform(-0.5, 0.5) * (w - pw), rng.uniform(-0.5, 0.5) * (d - pd)
        if kind == "pocket":
            depth = rng.uniform(0.3, 0.7) * h
            cutters.append(s.box((pw, pd, depth + 1.0), (x, y, h - depth + (depth + 1.0) / 2)))
        elif kind == "slot":
            cutters.append(s.box((pw, d + 2.0, rng.uniform(0.2, 0.5) * h), (x, 0, h)))
        elif kind == "hole":
            cutters.append(_hole(rng, min(pw, pd) / 2, (x, y), h, s.pick(rng, HOLE_SIDES)))
        else:
            cutters.append(s.box((w + 2.0, pd, rng.uniform(0.3, 0.6) * h * 2), (0, d / 2, h)))
    return s.subtract(body, cutters)


def make(rng: np.random.Generator) -> trimesh.Trimesh:
    return s.to_trimesh(s.pick(rng, (plate, bracket, nut, gear, flange, pocket_block))(rng))
