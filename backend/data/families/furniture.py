"""Furniture assemblies: tables, chairs, shelves and stools, built the way artists build them:
separate closed parts (boards, legs, rails) whose joints hide inside each other. Parts that meet
overlap by a clear margin and never share a face plane where they overlap."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s


SLABS = ("box", "chamfer", "rounded", "round")


def _slab(rng, w: float, d: float, t: float, z_top: float, kind: str) -> s.Solid:
    """A top or seat: plain, chamfered, rounded or round, its top face at z_top."""
    if kind == "round":
        return s.cylinder(min(w, d) / 2, t, s.pick(rng, (8, 10, 12, 16, 20)), z0=z_top - t)
    if kind == "rounded":
        corner = rng.uniform(0.05, 0.2) * min(w, d)
        return s.extrude(s.rounded_rect(w, d, corner, s.pick(rng, (4, 8, 12))), t, z_top - t)
    if kind == "chamfer":
        return s.chamfer_box((w, d, t), rng.uniform(0.15, 0.35) * t, (0.0, 0.0, z_top - t / 2))
    return s.box((w, d, t), (0.0, 0.0, z_top - t / 2))


def _leg_corners(w: float, d: float, inset: float, kind: str) -> np.ndarray:
    """Leg positions under a slab: its corners, or under a round slab a square inside the rim."""
    if kind == "round":
        half = (min(w, d) / 2 - inset) / np.sqrt(2)
        return _corners(2 * half, 2 * half, 0.0)
    return _corners(w, d, inset)


def _leg(rng, style: str, top: tuple[float, float, float], foot: tuple[float, float, float], size: float,
         extent: float) -> s.Solid:
    if style == "box":
        lo = np.minimum(top, foot) - [size / 2, size / 2, 0]
        hi = np.maximum(top, foot) + [size / 2, size / 2, 0]
        return s.cuboid(lo, hi)
    sides = 4 if style == "square" else s.round_sides(rng, size / 2, extent, (6, 8))
    return s.rod(foot, top, size / 2, sides, phase_deg=45.0 if sides == 4 else 0.0)


def _legs(rng, corners: np.ndarray, z_top, size: float, splay: float, extent: float) -> list[s.Solid]:
    """One leg per (x, y) corner, from z_top (one or one per leg) down to the floor, feet
    pushed out by `splay`."""
    style = s.pick(rng, ("box", "box", "square", "round"))
    if splay > 0 and style == "box":
        style = "square"
    legs = []
    for (x, y), top in zip(corners, np.broadcast_to(z_top, len(corners))):
        out = np.array([x, y]) / (np.linalg.norm([x, y]) + 1e-9) * splay
        legs.append(_leg(rng, style, (x, y, top), (x + out[0], y + out[1], 0.0), size, extent))
    return legs


def _corners(w: float, d: float, inset: float) -> np.ndarray:
    return np.array([(sx * (w / 2 - inset), sy * (d / 2 - inset)) for sx in (-1, 1) for sy in (-1, 1)])


def make_table(rng: np.random.Generator) -> trimesh.Trimesh:
    w, d = rng.uniform(0.8, 2.2), rng.uniform(0.6, 1.2)
    h, t = rng.uniform(0.45, 1.1), rng.uniform(0.03, 0.08)
    leg = rng.uniform(0.05, 0.1)
    top = s.pick(rng, SLABS)
    parts = [_slab(rng, w, d, t, h, top)]
    if rng.random() < 0.2:  # pedestal table: one column and a foot
        parts.append(s.cylinder(leg, h - t / 2 - leg / 2, s.pick(rng, (6, 8)), z0=leg / 2))
        parts.append(s.cylinder(min(w, d) * 0.3, leg, s.pick(rng, (4, 6, 8)), radius_top=min(w, d) * 0.2))
        return s.assemble(parts)
    inset = leg / 2 + rng.uniform(0.02, 0.12) * min(w, d)
    corners = _leg_corners(w, d, inset, top)
    parts += _legs(rng, corners, h - t / 2, leg, 0.0, max(w, d, h))
    lx, ly = corners[:, 0].max(), corners[:, 1].max()
    apron = rng.uniform(0.06, 0.15)
    if rng.random() < 0.5:
        parts += [s.cuboid((-lx, y - leg / 3, h - t - apron), (lx, y + leg / 3, h - t / 2)) for y in (-ly, ly)]
    if rng.random() < 0.25:  # lower shelf between the legs
        z = h * rng.uniform(0.15, 0.35)
        parts.append(s.box((2 * lx, 2 * ly, t), (0.0, 0.0, z)))
    return s.assemble(parts)


def make_chair(rng: np.random.Generator) -> trimesh.Trimesh:
    w, d = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)
    seat_h, t = rng.uniform(0.4, 0.5), rng.uniform(0.04, 0.08)
    back_h = rng.uniform(0.35, 0.6)
    leg = rng.uniform(0.035, 0.06)
    inset = leg / 2 + 0.01
    corners = _corners(w, d, inset)  # order: (-x,-y), (-x,+y), (+x,-y), (+x,+y); +y is the back
    arms = rng.random() < 0.3
    arm_z = seat_h + back_h * 0.45
    # Rear legs run up into the back posts; with arms the front legs run up to the armrests.
    front_top = arm_z - leg / 2 if arms else seat_h - t / 2
    tops = np.where(corners[:, 1] > 0, seat_h + back_h, front_top)
    seat = _slab(rng, w, d, t, seat_h, s.pick(rng, SLABS[:3]))  # backs need corners: no round seats
    parts = [seat] + _legs(rng, corners, tops, leg, 0.0, max(w, d, seat_h + back_h))
    y_back = d / 2 - inset
    slat_t = leg * 0.6
    top = seat_h + back_h - leg  # backs stop below the post tops
    if rng.random() < 0.4:
        panel_h = back_h * rng.uniform(0.3, 0.6)
        parts.append(s.box((w - 2 * inset, slat_t, panel_h), (0.0, y_back, top - panel_h / 2)))
    else:
        slats = int(rng.integers(2, 5))
        if rng.random() < 0.5:  # horizontal rails
            for z in np.linspace(seat_h + back_h * 0.35, top - leg / 2, slats):
                parts.append(s.box((w - 2 * inset, slat_t, leg), (0.0, y_back, z)))
        else:  # vertical spindles from inside the seat up into a top rail
            parts.append(s.box((w - 2 * inset, slat_t, leg * 1.5), (0.0, y_back, top - leg * 0.75)))
            for x in np.linspace(-w / 2 + inset, w / 2 - inset, slats + 2)[1:-1]:
                parts.append(s.cuboid((x - leg * 0.35, y_back - slat_t / 2, seat_h - t / 2),
                                      (x + leg * 0.35, y_back + slat_t / 2, top - leg * 0.75)))
    if arms:
        for x in (-w / 2 + inset, w / 2 - inset):
            parts.append(s.cuboid((x - leg * 0.6, -d / 2 - leg, arm_z - leg / 2), (x + leg * 0.6, y_back, arm_z + leg / 2)))
    if rng.random() < 0.4:  # stretchers between the legs
        z = seat_h * rng.uniform(0.15, 0.3)
        for x in (-w / 2 + inset, w / 2 - inset):
            parts.append(s.box((leg * 0.6, d - 2 * inset, leg * 0.6), (x, 0.0, z)))
    return s.assemble(parts)


def make_shelf(rng: np.random.Generator) -> trimesh.Trimesh:
    w, d, h = rng.uniform(0.6, 1.6), rng.uniform(0.25, 0.5), rng.uniform(0.6, 2.2)
    t = rng.uniform(0.02, 0.05)
    recess = 0.03 * max(w, h)  # boards stand back from the sides' faces
    boards = int(rng.integers(2, 7))
    parts = []
    if rng.random() < 0.7:  # bookcase: sides under an overhanging top, shelves, maybe a back
        over = rng.uniform(0.0, 0.05) * w
        parts.append(s.box((w + 2 * over, d + over, t), (0.0, -over / 2, h - t / 2)))
        for x in (-w / 2 + t / 2, w / 2 - t / 2):
            parts.append(s.box((t, d, h - t / 2), (x, 0.0, (h - t / 2) / 2)))
        back = rng.random() < 0.6
        depth = d - 2 * recess
        kick = rng.uniform(0.05, 0.12) * h if rng.random() < 0.5 else recess
        for z in np.linspace(kick + t / 2, h - t - 2 * recess, boards):
            parts.append(s.box((w - t, depth, t), (0.0, 0.0, z)))
        if back:
            parts.append(s.box((w - t, t, h - t / 2 - kick), (0.0, d / 2 - recess, (h - t / 2 + kick) / 2)))
    else:  # open shelving: four posts through the boards
        post = rng.uniform(0.03, 0.05)
        for x, y in _corners(w, d, post / 2):
            parts.append(s.box((post, post, h), (x, y, h / 2)))
        for z in np.linspace(h * 0.08, h - max(1.5 * t, recess), boards):
            parts.append(s.box((w - post, d - post, t), (0.0, 0.0, z)))
    return s.assemble(parts)


def make_stool(rng: np.random.Generator) -> trimesh.Trimesh:
    r = rng.uniform(0.15, 0.25)
    h = rng.uniform(0.4, 0.8)
    t = rng.uniform(0.03, 0.07)
    leg = rng.uniform(0.025, 0.045)
    n_legs = s.pick(rng, (3, 4, 4))
    parts = [_slab(rng, 2 * r, 2 * r, t, h, s.pick(rng, SLABS + ("round",)))]
    angles = np.pi / 4 + 2 * np.pi * np.arange(n_legs) / n_legs
    corners = (r - leg) * 0.8 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    splay = rng.uniform(0.0, 0.35) * r
    legs = _legs(rng, corners, h - t / 2, leg, splay, max(h, 2 * r + 2 * splay))
    parts += legs
    if rng.random() < 0.6:  # a ring of rungs at footrest height
        z = h * rng.uniform(0.25, 0.45)
        frac = 1 - z / (h - t / 2)
        feet = [c + c / np.linalg.norm(c) * splay * frac for c in corners]
        for a, b in zip(feet, feet[1:] + feet[:1]):
            parts.append(s.rod((*a, z), (*b, z), leg * 0.35, 4, 45.0))
    return s.assemble(parts)
