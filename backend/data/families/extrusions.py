"""Extruded 2-D outlines: L/T/U/H/plus profiles, stars, arrows and block letters."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s

H = 1.4  # letter height; letters are 1 wide
LETTERS: dict[str, tuple] = {
    "A": (((0, 0), (0.5, H)), ((0.5, H), (1, 0)), ((0.25, 0.55), (0.75, 0.55))),
    "C": (((1, 0), (0, 0)), ((0, 0), (0, H)), ((0, H), (1, H))),
    "E": (((0, 0), (0, H)), ((0, 0), (1, 0)), ((0, H / 2), (0.8, H / 2)), ((0, H), (1, H))),
    "F": (((0, 0), (0, H)), ((0, H / 2), (0.8, H / 2)), ((0, H), (1, H))),
    "H": (((0, 0), (0, H)), ((1, 0), (1, H)), ((0, H / 2), (1, H / 2))),
    "I": (((0.5, 0), (0.5, H)), ((0.1, 0), (0.9, 0)), ((0.1, H), (0.9, H))),
    "K": (((0, 0), (0, H)), ((0, 0.5), (1, H)), ((0.35, 0.8), (1, 0))),
    "L": (((0, 0), (0, H)), ((0, 0), (1, 0))),
    "M": (((0, 0), (0, H)), ((0, H), (0.5, 0.6)), ((0.5, 0.6), (1, H)), ((1, H), (1, 0))),
    "N": (((0, 0), (0, H)), ((0, H), (1, 0)), ((1, 0), (1, H))),
    "O": (((0, 0), (1, 0)), ((1, 0), (1, H)), ((1, H), (0, H)), ((0, H), (0, 0))),
    "P": (((0, 0), (0, H)), ((0, H), (1, H)), ((1, H), (1, 0.65)), ((1, 0.65), (0, 0.65))),
    "T": (((0.5, 0), (0.5, H)), ((0, H), (1, H))),
    "U": (((0, H), (0, 0)), ((0, 0), (1, 0)), ((1, 0), (1, H))),
    "V": (((0, H), (0.5, 0)), ((0.5, 0), (1, H))),
    "W": (((0, H), (0.25, 0)), ((0.25, 0), (0.5, 0.8)), ((0.5, 0.8), (0.75, 0)), ((0.75, 0), (1, H))),
    "X": (((0, 0), (1, H)), ((0, H), (1, 0))),
    "Y": (((0, H), (0.5, 0.7)), ((1, H), (0.5, 0.7)), ((0.5, 0.7), (0.5, 0))),
    "Z": (((0, H), (1, H)), ((1, H), (0, 0)), ((0, 0), (1, 0))),
}


def letter(rng):
    glyph = s.pick(rng, sorted(LETTERS))
    w = rng.uniform(0.16, 0.3)
    # Clip the slanted bars' ends to the baseline and cap height.
    return s.strokes(LETTERS[glyph], w) ^ s.rect(4.0, H + w, (0.5, H / 2))


def profile(rng):
    """Structural sections: L, T, U (channel), H (I-beam), plus."""
    w, h = rng.uniform(0.6, 1.5), rng.uniform(0.6, 1.5)
    t = rng.uniform(0.12, 0.3) * min(w, h)
    kind = s.pick(rng, ("L", "T", "U", "H", "plus"))
    parts = {
        "L": [s.rect(t, h, (t / 2, h / 2)), s.rect(w, t, (w / 2, t / 2))],
        "T": [s.rect(w, t, (0, h - t / 2)), s.rect(t, h, (0, h / 2))],
        "U": [s.rect(w, t, (0, t / 2)), s.rect(t, h, (-w / 2 + t / 2, h / 2)), s.rect(t, h, (w / 2 - t / 2, h / 2))],
        "H": [s.rect(w, t, (0, t / 2)), s.rect(w, t, (0, h - t / 2)), s.rect(t, h, (0, h / 2))],
        "plus": [s.rect(w, t), s.rect(t, h)],
    }[kind]
    return s.Outline.batch_boolean(parts, s.mf.OpType.Add)


def star(rng):
    n = int(rng.integers(4, 9))
    r = 1.0
    inner = r * rng.uniform(0.35, 0.65)
    pts = np.empty((2 * n, 2))
    pts[0::2] = s.ngon_points(n, r, np.pi / 2)
    pts[1::2] = s.ngon_points(n, inner, np.pi / 2 + np.pi / n)
    return s.polygon(pts)


def arrow(rng):
    shaft_w, shaft_l = rng.uniform(0.2, 0.5), rng.uniform(0.8, 2.0)
    head_w, head_l = shaft_w * rng.uniform(2.0, 3.5), rng.uniform(0.4, 0.9)
    return s.polygon([(0, -shaft_w / 2), (shaft_l, -shaft_w / 2), (shaft_l, -head_w / 2), (shaft_l + head_l, 0),
                      (shaft_l, head_w / 2), (shaft_l, shaft_w / 2), (0, shaft_w / 2)])


def make(rng: np.random.Generator) -> trimesh.Trimesh:
    outline = s.pick(rng, (letter, letter, profile, profile, star, arrow))(rng)
    lo, hi = np.array(outline.bounds()[:2]), np.array(outline.bounds()[2:])
    depth = (hi - lo).max() * np.exp(rng.uniform(np.log(0.1), np.log(1.2)))
    solid = s.extrude(outline, depth)
    if rng.random() < 0.5:
        solid = s.stand_up(solid)  # upright, like a sign letter
    return s.to_trimesh(solid)
