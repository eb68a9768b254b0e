"""Multi-part props: barrels, crates, lamp posts, table lamps, mushrooms, trees, fences,
mugs and benches."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data import shapes as s


def barrel(rng):
    r, h = rng.uniform(0.4, 0.6), rng.uniform(1.0, 1.6)
    bulge = r * rng.uniform(0.08, 0.2)
    u = np.linspace(0, 1, int(rng.integers(4, 8)))
    outer = np.stack([r + bulge * np.sin(np.pi * u), h * u], axis=1)
    sides = s.pick(rng, (8, 10, 12, 16))
    parts = [s.lathe(np.vstack([[0, 0], outer, [0, h]]), sides)]
    band = h * rng.uniform(0.04, 0.07)
    for z in sorted({0.12, 0.88, *(() if rng.random() < 0.5 else (0.35, 0.65))}):
        rr = r + bulge * np.sin(np.pi * z) + band * 0.4
        parts.append(s.cylinder(rr, band, sides, z0=z * h - band / 2))  # hoops stand proud of the staves
    return s.assemble(parts)


def crate(rng):
    size = rng.uniform(0.6, 1.2, size=3)
    e = size.min() * rng.uniform(0.08, 0.14)
    parts = [s.box(size - e * 0.6, (0, 0, size[2] / 2))]
    half = size / 2
    for axis in range(3):  # twelve edge beams
        for a in (-1, 1):
            for b in (-1, 1):
                c = np.zeros(3)
                o = [k for k in range(3) if k != axis]
                c[o[0]], c[o[1]] = a * (half[o[0]] - e / 2), b * (half[o[1]] - e / 2)
                dims = np.full(3, e)
                dims[axis] = size[axis]
                parts.append(s.box(dims, c + [0, 0, half[2]]))
    if rng.random() < 0.5:  # a diagonal brace on the front and back
        for y in (-half[1], half[1]):
            parts.append(s.rod((-half[0] + e, y, e), (half[0] - e, y, size[2] - e), e / 2, 4, 45.0))
    return s.to_trimesh(s.union(parts))


def lamp_post(rng):
    h = rng.uniform(2.0, 4.0)
    r = rng.uniform(0.04, 0.08)
    sides = s.pick(rng, (6, 8))
    head_r = r * rng.uniform(2.5, 4)
    lantern = rng.random() < 0.5
    parts = [s.cylinder(r * 3, h * 0.05, s.pick(rng, (4, 6, 8)), radius_top=r * 2),
             s.cylinder(r, h + (head_r * 0.3 if lantern else 0.0) - h * 0.02, sides, z0=h * 0.02)]
    if lantern:  # a lantern and its roof on top; the pole ends inside the lantern
        parts += [s.cylinder(head_r * 0.6, head_r, 4, radius_top=head_r, z0=h, phase_deg=45),
                  s.cylinder(head_r * 1.2, head_r * 0.6, 4, radius_top=0.0, z0=h + head_r * 0.9, phase_deg=45)]
    else:  # an arm reaching out with a hanging shade
        arm = h * rng.uniform(0.15, 0.3)
        parts.append(s.box((arm + r, r * 1.4, r * 1.4), (arm / 2, 0, h - 2 * r)))
        parts.append(s.cylinder(head_r, head_r, s.pick(rng, (6, 8)), radius_top=r, z0=h - 2 * r - head_r, xy=(arm, 0)))
    return s.assemble(parts)


def table_lamp(rng):
    base_r = rng.uniform(0.2, 0.35)
    stem_h = rng.uniform(0.4, 0.9)
    shade_r = base_r * rng.uniform(1.1, 1.8)
    shade_h = rng.uniform(0.3, 0.5)
    sides = s.pick(rng, (8, 10, 12))
    t = 0.02
    parts = [s.cylinder(base_r, 0.06, sides, radius_top=base_r * 0.8),
             s.cylinder(0.03, stem_h + shade_h * 0.5, 6),
             s.lathe([(shade_r, stem_h), (shade_r * 0.6, stem_h + shade_h),
                      (shade_r * 0.6 - t, stem_h + shade_h), (shade_r - t, stem_h)], sides),
             s.cuboid((-shade_r * 0.6, -0.015, stem_h + shade_h * 0.5),  # a spider holds the shade
                      (shade_r * 0.6, 0.015, stem_h + shade_h * 0.5 + 0.03))]
    return s.to_trimesh(s.union(parts))


def mushroom(rng):
    stem_r, stem_h = rng.uniform(0.1, 0.25), rng.uniform(0.3, 0.9)
    cap_r = stem_r * rng.uniform(2.0, 4.0)
    cap_h = cap_r * rng.uniform(0.4, 0.9)
    rings = int(rng.integers(2, 5))
    dome = s.arc_points(1.0, 0.0, np.pi / 2, rings) * [cap_r, cap_h] + [0, stem_h]
    dome[-1, 0] = 0.0
    cap = np.vstack([[[0.0, stem_h], [cap_r * 0.9, stem_h - cap_h * 0.15]], dome])
    sides = s.pick(rng, (6, 8, 10, 12))
    stem = [(0, 0), (stem_r * 1.2, 0), (stem_r, stem_h * 0.5), (stem_r * 0.85, stem_h + 0.02), (0, stem_h + 0.02)]
    return s.assemble([s.lathe(stem, sides), s.lathe(cap, sides)])


def tree(rng):
    trunk_h, trunk_r = rng.uniform(0.3, 0.8), rng.uniform(0.06, 0.15)
    sides = s.pick(rng, (5, 6, 8))
    parts = [s.cylinder(trunk_r, trunk_h + 0.1, sides, radius_top=trunk_r * 0.8)]
    if rng.random() < 0.6:  # pine: stacked cones
        z, r = trunk_h, rng.uniform(0.5, 0.8)
        for _ in range(int(rng.integers(2, 5))):
            h = r * rng.uniform(1.0, 1.6)
            parts.append(s.cylinder(r, h, sides, radius_top=0.0, z0=z))
            z += h * rng.uniform(0.4, 0.6)
            r *= rng.uniform(0.65, 0.8)
    else:  # broadleaf: a low-res blob
        r = rng.uniform(0.4, 0.8)
        blob = trimesh.creation.icosphere(subdivisions=1, radius=r)
        blob.apply_scale((1.0, 1.0, rng.uniform(0.8, 1.3)))
        parts.append(s.from_trimesh(blob).translate((0, 0, trunk_h + r * 0.8)))
    return s.assemble(parts)


def fence(rng):
    posts = int(rng.integers(2, 6))
    gap, h = rng.uniform(0.3, 0.8), rng.uniform(0.6, 1.2)
    p = rng.uniform(0.05, 0.1)
    pointed = rng.random() < 0.5
    parts = []
    for k in range(posts):
        post = s.box((p, p, h), (k * gap, 0, h / 2))
        if pointed:
            post = s.union([post, s.cylinder(p / np.sqrt(2), p * 1.2, 4, radius_top=0.0, z0=h, xy=(k * gap, 0),
                                             phase_deg=45)])
        parts.append(post)
    for z in sorted(rng.choice([0.25, 0.5, 0.75], size=int(rng.integers(1, 3)), replace=False)):
        # Rails sit in front of the posts and end inside the outer ones.
        parts.append(s.box(((posts - 1) * gap + p * 0.5, p * 0.4, p * 0.8), ((posts - 1) * gap / 2, p * 0.5, z * h)))
    return s.assemble(parts)


def mug(rng):
    r, h = rng.uniform(0.3, 0.5), rng.uniform(0.6, 1.1)
    t = rng.uniform(0.04, 0.07)
    taper = rng.uniform(0.85, 1.05)
    outer = np.array([(r * taper * 0.95, 0.0), (r * taper, 0.05), (r, h)])
    sides = s.pick(rng, (8, 10, 12, 16))
    body = s.lathe(s.shell_profile(outer, t, floor_z=t), sides)
    grip = rng.uniform(0.05, 0.09)
    handle = s.lathe(s.rect(grip, grip * 1.5, (h * 0.3, 0.0)), s.pick(rng, (8, 10, 12)), 180.0)
    handle = handle.rotate((0.0, 0.0, -90.0)).rotate((90.0, 0.0, 0.0)).translate((r - t, 0, h / 2))
    return s.to_trimesh(s.union([body, handle]))


def bench(rng):
    w, d, h = rng.uniform(1.0, 2.0), rng.uniform(0.3, 0.5), rng.uniform(0.35, 0.5)
    planks = int(rng.integers(2, 5))
    t = rng.uniform(0.03, 0.05)
    pw = d / planks
    parts = [s.box((w, pw * 0.85, t), (0, -d / 2 + pw * (k + 0.5), h - t / 2)) for k in range(planks)]
    leg_w = rng.uniform(0.04, 0.08)
    for x in (-w / 2 + w * 0.12, w / 2 - w * 0.12):
        frame = s.polygon([(-d / 2, 0), (-d / 2 + leg_w, 0), (0, h * 0.5), (d / 2 - leg_w, 0), (d / 2, 0),
                           (d / 2, h - t / 2), (-d / 2, h - t / 2)]) if rng.random() < 0.5 else \
            s.rect(d, h - t / 2, (0, (h - t / 2) / 2)) - s.rect(d - 2 * leg_w, h * 0.6, (0, h * 0.3 - 0.01))
        parts.append(s.stand_up(s.extrude(frame, leg_w)).rotate((0, 0, 90)).translate((x, 0, 0)))
    return s.assemble(parts)


KINDS = (barrel, crate, lamp_post, table_lamp, mushroom, tree, fence, mug, bench)


def make(rng: np.random.Generator) -> trimesh.Trimesh:
    return s.pick(rng, KINDS)(rng)
