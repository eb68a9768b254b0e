"""Turned objects from a (radius, z) profile: vases, bottles, bowls, goblets, lamp shades,
balusters. Vessels are hollow with a real wall thickness."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s

SEGMENTS = (6, 8, 8, 10, 12, 12, 14, 16)


def _curve(rng: np.random.Generator, points: int, r_bottom: float, r_top: float, bulge: float, height: float,
           z0: float = 0.0) -> np.ndarray:
    """A smooth (radius, z) curve: linear from r_bottom to r_top plus a sine bulge."""
    u = np.linspace(0, 1, points)
    p = rng.uniform(0.6, 1.6)  # where the belly sits
    r = r_bottom + (r_top - r_bottom) * u + bulge * np.sin(np.pi * u**p)
    return np.stack([r, z0 + height * u], axis=1)


def vase(rng):
    h = rng.uniform(1.0, 2.5)
    outer = _curve(rng, int(rng.integers(5, 10)), rng.uniform(0.25, 0.5), rng.uniform(0.2, 0.6),
                   rng.uniform(0.0, 0.45), h)
    if rng.random() < 0.5:  # flared lip
        outer = np.vstack([outer, [outer[-1, 0] * rng.uniform(1.15, 1.4), h + rng.uniform(0.05, 0.15)]])
    t = rng.uniform(0.03, 0.05) * max(h, 2 * outer[:, 0].max())
    return s.shell_profile(outer, t, floor_z=t * 1.5)


def bowl(rng):
    h = rng.uniform(0.3, 0.8)
    r = rng.uniform(0.6, 1.0)
    a = np.linspace(0, np.pi / 2, int(rng.integers(3, 7)))
    outer = np.stack([r * rng.uniform(0.3, 0.5) + r * np.sin(a) * 0.6, h * (1 - np.cos(a))], axis=1)
    foot = rng.uniform(0.04, 0.1)
    outer = np.vstack([[outer[0, 0], -foot], outer])  # a short foot ring
    t = rng.uniform(0.03, 0.05) * 2 * outer[:, 0].max()
    return s.shell_profile(outer, t, floor_z=t)


def bottle(rng):
    r = rng.uniform(0.25, 0.5)
    body = rng.uniform(0.8, 1.8)
    neck_r = r * rng.uniform(0.25, 0.45)
    shoulder = rng.uniform(0.2, 0.5)
    a = np.linspace(0, np.pi / 2, int(rng.integers(2, 5)))[1:]
    pts = [(0.0, 0.0), (r * 0.9, 0.0), (r, 0.05 * r), (r, body)]
    pts += [(neck_r + (r - neck_r) * np.cos(x), body + shoulder * np.sin(x)) for x in a]
    neck_top = body + shoulder + rng.uniform(0.2, 0.6)
    lip = neck_r * rng.uniform(1.15, 1.35)
    pts += [(neck_r, neck_top), (lip, neck_top), (lip, neck_top + 0.08), (0.0, neck_top + 0.08)]
    return np.array(pts)


def goblet(rng):
    foot_r = rng.uniform(0.35, 0.6)
    foot_h = rng.uniform(0.04, 0.1)
    stem_r = rng.uniform(0.05, 0.1)
    stem_top = foot_h + rng.uniform(0.3, 0.9)
    cup_h = rng.uniform(0.5, 1.0)
    cup_r = rng.uniform(0.35, 0.65)
    a = np.linspace(0, np.pi / 2, int(rng.integers(3, 6)))[1:]
    cup = [(stem_r + (cup_r - stem_r) * np.sin(x), stem_top + cup_h * (1 - np.cos(x))) for x in a]
    cup.append((cup_r * rng.uniform(0.9, 1.1), stem_top + cup_h + rng.uniform(0.1, 0.4)))
    outer = np.array([(foot_r, 0.0), (foot_r * 0.9, foot_h), (stem_r * 1.8, foot_h * 1.8),
                      (stem_r, foot_h * 3), (stem_r, stem_top)] + cup)
    t = rng.uniform(0.025, 0.04) * outer[-1, 1]
    return s.shell_profile(outer, t, floor_z=stem_top + t)


def lamp_shade(rng):
    h = rng.uniform(0.6, 1.4)
    r_bottom = rng.uniform(0.5, 1.0)
    r_top = r_bottom * rng.uniform(0.35, 0.9)
    t = rng.uniform(0.025, 0.04) * max(h, 2 * r_bottom)
    return np.array([(r_bottom, 0.0), (r_top, h), (r_top - t, h), (r_bottom - t, 0.0)])


def baluster(rng):
    """A turned post: a few beads and coves between two square-ish collars."""
    h = rng.uniform(1.5, 3.0)
    r = rng.uniform(0.2, 0.35)
    beads = int(rng.integers(2, 5))
    z = np.sort(rng.uniform(0.15, 0.85, size=beads)) * h
    pts = [(0.0, 0.0), (r, 0.0), (r, 0.1 * h)]
    for zz in z:
        pts += [(r * rng.uniform(0.4, 0.7), zz - 0.04 * h), (r * rng.uniform(0.8, 1.0), zz)]
    pts += [(r * 0.5, 0.88 * h), (r, 0.9 * h), (r, h), (0.0, h)]
    return np.array(pts)


KINDS = (vase, vase, bowl, bottle, goblet, lamp_shade, baluster)


def make(rng: np.random.Generator) -> trimesh.Trimesh:
    profile = s.pick(rng, KINDS)(rng)
    return s.to_trimesh(s.lathe(profile, s.pick(rng, SEGMENTS)))
