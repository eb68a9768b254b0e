"""Arches, door frames, window frames and arcades: outlines with openings, extruded and
stood up (x across, z up, depth along y)."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s


def _opening(width: float, spring: float, segments: int, pointed: bool) -> s.Outline:
    """A doorway from below the ground to a round (or pointed) head springing at `spring`."""
    a = width / 2
    if pointed:
        # Two arcs of radius `width` centred at the opposite jambs meet at the apex.
        right = s.arc_points(width, 0.0, np.pi / 3, segments, (-a, spring))
        left = s.arc_points(width, 2 * np.pi / 3, np.pi, segments, (a, spring))
        head = np.vstack([right, left[1:]])
    else:
        head = s.arc_points(a, 0.0, np.pi, 2 * segments)
        head[:, 1] += spring
    return s.polygon(np.vstack([[(-a, -1.0), (a, -1.0)], head]))


def arch(rng):
    w = rng.uniform(0.6, 1.4)
    spring = rng.uniform(0.6, 1.6)
    wall = rng.uniform(0.15, 0.4)
    pointed = rng.random() < 0.3
    head = w * (0.87 if pointed else 0.5)
    block = s.rect(w + 2 * wall, spring + head + wall, (0.0, (spring + head + wall) / 2))
    segments = int(rng.integers(2, 5))
    return block - _opening(w, spring, segments, pointed)


def arcade(rng):
    bays = int(rng.integers(2, 5))
    w, spring, pier = rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.4), rng.uniform(0.15, 0.35)
    total = bays * w + (bays + 1) * pier
    top = spring + w / 2 + rng.uniform(0.15, 0.4)
    block = s.rect(total, top, (0.0, top / 2))
    segments = int(rng.integers(2, 4))
    openings = [_opening(w, spring, segments, False).translate((-total / 2 + pier + w / 2 + k * (w + pier), 0.0))
                for k in range(bays)]
    return block - s.Outline.batch_boolean(openings, s.mf.OpType.Add)


def door_frame(rng):
    w, h = rng.uniform(0.8, 1.2), rng.uniform(1.8, 2.4)
    jamb = rng.uniform(0.08, 0.2)
    outer = s.rect(w + 2 * jamb, h + jamb, (0.0, (h + jamb) / 2))
    frame = outer - s.rect(w, h + 1.0, (0.0, (h - 1.0) / 2))
    if rng.random() < 0.5:  # a head moulding wider than the frame
        over = jamb * rng.uniform(0.3, 0.8)
        frame = frame + s.rect(w + 2 * jamb + 2 * over, jamb * 0.8, (0.0, h + jamb + 0.4 * jamb))
    return frame


def window_frame(rng):
    w, h = rng.uniform(0.6, 1.6), rng.uniform(0.6, 1.6)
    bar = rng.uniform(0.05, 0.12)
    cols, rows = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    xs = np.linspace(-w / 2, w / 2, cols + 1)
    ys = np.linspace(0, h, rows + 1)
    bars = [((x, 0.0), (x, h)) for x in xs] + [((-w / 2, y), (w / 2, y)) for y in ys]
    return s.strokes(bars, bar)


def make(rng: np.random.Generator) -> trimesh.Trimesh:
    kind = s.pick(rng, (arch, arch, arcade, door_frame, window_frame))
    outline = kind(rng)
    lo, hi = np.array(outline.bounds()[:2]), np.array(outline.bounds()[2:])
    depth = (hi - lo).max() * rng.uniform(0.06, 0.35)
    solid = s.stand_up(s.extrude(outline, depth))
    if kind is window_frame and rng.random() < 0.6:  # a sill under the window
        sill_w = hi[0] - lo[0] + depth
        solid = s.union([solid, s.box((sill_w, depth * 1.8, depth * 0.6), (0.0, -depth / 2, lo[1] - depth * 0.2))])
    return s.to_trimesh(solid)
