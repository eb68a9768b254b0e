"""The small geometry kernel every family builds from: solids are manifold3d `Manifold`s, so
every union, cut-out and revolve is a real boolean and the result is closed and consistently
wound by construction. Families build upright (Z up) in any units; the registry orients,
normalizes and checks the result.

2-D outlines are `CrossSection`s (x, y); `lathe` reads them as (radius, z)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import manifold3d as mf
import numpy as np
import trimesh

from backend.data.retriangulate import delaunay_flip

Solid = mf.Manifold
Outline = mf.CrossSection


# ---------------------------------------------------------------- 2-D outlines
def polygon(points: Sequence[Sequence[float]] | np.ndarray) -> Outline:
    """One closed outline; orientation is fixed up so either winding works."""
    pts = np.asarray(points, dtype=np.float64)
    area = 0.5 * np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
    return Outline([pts if area > 0 else pts[::-1]])


def ngon_points(n: int, radius: float, phase: float = 0.0, center=(0.0, 0.0)) -> np.ndarray:
    """Vertices of a regular n-gon, the first at angle `phase` (radians)."""
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([center[0] + radius * np.cos(a), center[1] + radius * np.sin(a)], axis=1)


def rect(w: float, h: float, center=(0.0, 0.0)) -> Outline:
    return Outline.square((w, h), center=True).translate(tuple(center))


def rounded_rect(w: float, h: float, radius: float, segments: int) -> Outline:
    """Rectangle whose corners are rounded (segments per full turn) or, with 4, chamfered."""
    core = rect(w - 2 * radius, h - 2 * radius)
    return core.offset(radius, mf.JoinType.Round, circular_segments=segments)


def arc_points(radius: float, a0: float, a1: float, segments: int, center=(0.0, 0.0)) -> np.ndarray:
    """segments+1 points on a circular arc from angle a0 to a1 (radians), ends included."""
    a = np.linspace(a0, a1, segments + 1)
    return np.stack([center[0] + radius * np.cos(a), center[1] + radius * np.sin(a)], axis=1)


def strokes(segments: Iterable[tuple[tuple[float, float], tuple[float, float]]], width: float) -> Outline:
    """Union of straight bars of the given width: letters, frames, lattices."""
    bars = []
    for (x0, y0), (x1, y1) in segments:
        d = np.array([x1 - x0, y1 - y0], dtype=np.float64)
        d /= np.linalg.norm(d)
        n = np.array([-d[1], d[0]]) * width / 2
        # Extend each bar by half a width so bars meeting at a corner overlap cleanly.
        p0 = np.array([x0, y0]) - d * width / 2
        p1 = np.array([x1, y1]) + d * width / 2
        bars.append(polygon([p0 - n, p1 - n, p1 + n, p0 + n]))
    return Outline.batch_boolean(bars, mf.OpType.Add)


# ---------------------------------------------------------------- solids
def box(size: Sequence[float], center: Sequence[float] = (0.0, 0.0, 0.0)) -> Solid:
    return Solid.cube(tuple(float(s) for s in size), center=True).translate(tuple(float(c) for c in center))


def cuboid(lo: Sequence[float], hi: Sequence[float]) -> Solid:
    """Axis-aligned box between two corners."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return box(hi - lo, (lo + hi) / 2)


def chamfer_box(size: Sequence[float], bevel: float, center=(0.0, 0.0, 0.0)) -> Solid:
    """Box with every edge chamfered by `bevel`: the hull of three boxes, each one shrunk
    on two axes (6 faces, 12 edge bevels, 8 corner triangles)."""
    s = np.asarray(size, float)
    parts = [box(s - 2 * bevel * (1 - np.eye(3)[k]), center) for k in range(3)]
    return Solid.batch_hull(parts)


def cylinder(radius: float, height: float, sides: int, *, radius_top: float | None = None,
             z0: float = 0.0, xy=(0.0, 0.0), phase_deg: float = 0.0) -> Solid:
    """n-sided prism / frustum / cone standing on z0 (radius_top=0 gives a cone)."""
    top = radius if radius_top is None else radius_top
    c = Solid.cylinder(float(height), float(radius), float(top), int(sides))
    if phase_deg:
        c = c.rotate((0.0, 0.0, float(phase_deg)))
    return c.translate((float(xy[0]), float(xy[1]), float(z0)))


def extrude(outline: Outline, height: float, z0: float = 0.0, *, scale_top=(1.0, 1.0)) -> Solid:
    return Solid.extrude(outline, float(height), scale_top=tuple(scale_top)).translate((0.0, 0.0, float(z0)))


def lathe(profile: Outline | Sequence[Sequence[float]] | np.ndarray, segments: int, degrees: float = 360.0) -> Solid:
    """Revolve a closed (radius, z) outline about Z. Points on r=0 become poles; whatever
    lies at r<0 is ignored. `segments` spans the whole sweep (a full turn, or the arc)."""
    outline = profile if isinstance(profile, Outline) else polygon(profile)
    return Solid.revolve(outline, int(segments), float(degrees))


def rod(p0: Sequence[float], p1: Sequence[float], radius: float, sides: int, phase_deg: float = 0.0) -> Solid:
    """n-sided prism from p0 to p1: splayed legs, rails, spokes."""
    axis = np.asarray(p1, float) - np.asarray(p0, float)
    return along(cylinder(radius, float(np.linalg.norm(axis)), sides, phase_deg=phase_deg), p0, axis)


def along(solid: Solid, origin: Sequence[float], direction: Sequence[float]) -> Solid:
    """Turn a solid built along +Z so that +Z points along `direction`, then move it to `origin`."""
    d = np.asarray(direction, float)
    return transform(solid, trimesh.geometry.align_vectors([0, 0, 1], d / np.linalg.norm(d)), origin)


def shell_profile(outer: Sequence[Sequence[float]] | np.ndarray, thickness: float, floor_z: float) -> Outline:
    """Lathe outline of a thin-walled vessel: the region under the (radius, z) curve `outer`
    (bottom to rim), hollowed above `floor_z` and open at the rim. The curve is continued past
    the rim before the inward offset and then cut flat, so the rim is one clean edge across the
    wall; the region is mirrored about the axis first so the wall never pulls away from it."""
    outer = np.asarray(outer, float)
    top, bottom = outer[-1, 1], outer[:, 1].min()
    tangent = outer[-1] - outer[-2]
    beyond = outer[-1] + tangent / np.linalg.norm(tangent) * 4 * thickness
    curve = np.vstack([outer, beyond])
    half = polygon(np.vstack([[0.0, outer[0, 1]], curve, [0.0, beyond[1]]]))
    full = half + half.mirror((1.0, 0.0))
    span = 2 * (curve[:, 0].max() + 1.0)
    above_floor = rect(span, beyond[1] + 1.0 - floor_z, (0.0, (beyond[1] + 1.0 + floor_z) / 2))
    cavity = full.offset(-thickness, mf.JoinType.Miter) ^ above_floor
    below_rim = rect(span, top - bottom + 1.0, (0.0, (top + bottom - 1.0) / 2))
    # Drop the collinear points the mirror leaves on the axis (they would become extra poles).
    return ((full - cavity) ^ below_rim).simplify(1e-9)


def transform(solid: Solid, matrix: np.ndarray, translate: Sequence[float] = (0.0, 0.0, 0.0)) -> Solid:
    """Apply a 3x3 (or the rotation part of a 4x4) matrix, then a translation."""
    m = np.zeros((3, 4))
    m[:, :3] = np.asarray(matrix, float)[:3, :3]
    m[:, 3] = translate
    return solid.transform(m)


def rotate_z(solid: Solid, degrees: float) -> Solid:
    return solid.rotate((0.0, 0.0, float(degrees)))


def stand_up(solid: Solid) -> Solid:
    """Turn an outline extruded along Z so that it faces -Y (x stays x, y becomes z)."""
    return solid.rotate((90.0, 0.0, 0.0))


def union(parts: Iterable[Solid]) -> Solid:
    return Solid.batch_boolean(list(parts), mf.OpType.Add)


def subtract(solid: Solid, cutters: Iterable[Solid]) -> Solid:
    cutters = list(cutters)
    return solid - union(cutters) if cutters else solid


def assemble(parts: Iterable[Solid]) -> trimesh.Trimesh:
    """Separate closed parts in one mesh, the way artists build furniture: parts may pass
    into each other (joints hide inside) but are not merged, so no boolean seams or slivers.
    Vertices are not welded across parts; the registry rejects parts whose vertices meet."""
    return delaunay_flip(trimesh.util.concatenate([_raw_mesh(p) for p in parts]))


def from_trimesh(mesh: trimesh.Trimesh) -> Solid:
    return Solid(mf.Mesh(vert_properties=np.asarray(mesh.vertices, np.float32),
                         tri_verts=np.asarray(mesh.faces, np.uint32)))


def _raw_mesh(solid: Solid) -> trimesh.Trimesh:
    # manifold3d already shares vertices; it keeps two where the surface touches itself (welding
    # them would make the edges non-manifold), and the registry rejects those shapes.
    mesh = solid.to_mesh()
    vertices = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3]
    return trimesh.Trimesh(vertices, np.asarray(mesh.tri_verts, dtype=np.int64), process=False)


def to_trimesh(solid: Solid) -> trimesh.Trimesh:
    return delaunay_flip(_raw_mesh(solid))


# ---------------------------------------------------------------- random helpers
def round_sides(rng: np.random.Generator, radius: float, extent: float, choices: Sequence[int] = (6, 8, 10, 12)) -> int:
    """A side count for a round part whose polygon edges stay longer than ~3 quantization steps
    of an object `extent` across (thin rods get fewer sides, like an artist would give them)."""
    edge = 2 * radius * np.sin(np.pi / np.asarray(choices))
    fit = [n for n, e in zip(choices, edge) if e >= 0.025 * extent]
    return pick(rng, fit) if fit else 4


def pick(rng: np.random.Generator, options: Sequence):
    """One element of a sequence (rng.choice would turn tuples into arrays)."""
    return options[int(rng.integers(len(options)))]


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))
