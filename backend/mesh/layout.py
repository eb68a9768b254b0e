"""The candidate layout a decode is allowed to follow: a quadric decimation of the input, or, for
quad output, a field-aligned quad remesh of it (Instant Meshes) when that keeps the shape.

A decoded face may only use the layout's vertices and edges (plus flips of its diagonals), so
the layout decides which triangles can pair into quads afterwards. A decimation's triangles are
irregular and about half of them pair (quad ratio 0.45 on the retopology benchmark); a quad
remesh split along its diagonals gives pairs by construction. A quad remesh rounds off sharp
CAD edges, so it is used only where its surface stays as close to the input as the decimation's
(within `QUAD_SHAPE_SLACK`); docs/experiments/quads.md has the measurements.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from backend.mesh.candidates import decimate
from backend.mesh.quads import join_triangles
from backend.mesh.sample import sample_surface

QUAD_SHAPE_SLACK = 1.20  # a quad layout may be this much farther from the input than the decimation
SHAPE_SAMPLES = 20_000   # area-weighted samples per surface for that comparison
CREASE_DEGREES = 30.0    # Instant Meshes keeps edges sharper than this as field-aligned creases


@dataclass
class Layout:
    vertices: np.ndarray  # float64 (n, 3), the input's frame
    faces: np.ndarray     # int64 (t, 3), quads split in two
    # For quad output, the vertex pairs (k, 2) across which two triangles make a quad: the only
    # edges a decoded face may flip, so that decoded triangles pair back into the layout's quads.
    # None for triangle output (any flat pair of triangles may swap its diagonal).
    diagonals: np.ndarray | None
    kind: str             # "decimation" | "decimation quads" (its pairs fixed) | "remesh quads"


def decimation_layout(vertices: np.ndarray, faces: np.ndarray, target_faces: int, quads: bool = False) -> Layout:
    """The decimation; for `quads`, its quads are the pairs Tris to Quads joins (`join_triangles`)."""
    v, f = decimate(vertices, faces, target_faces)
    if not quads:
        return Layout(v, f, None, "decimation")
    joined = join_triangles(v, f).quads
    return Layout(v, f, joined[:, [1, 3]].reshape(-1, 2), "decimation quads")


def choose_layout(vertices: np.ndarray, faces: np.ndarray, target_faces: int, quads: bool) -> Layout:
    """The decimation, or for `quads` the quad remesh when it keeps the shape as well (its mean
    two-sided distance to the input at most `QUAD_SHAPE_SLACK` times the decimation's). An input
    with no more faces than the target keeps its own layout: a low-poly mesh names its corners."""
    decimation = decimation_layout(vertices, faces, target_faces, quads)
    if not quads or len(faces) <= target_faces:
        return decimation
    remesh = quad_layout(vertices, faces, target_faces // 2)
    if remesh is None:
        return decimation
    input_samples = sample_surface(vertices, faces, SHAPE_SAMPLES)[0]
    slack = QUAD_SHAPE_SLACK * _distance(decimation, input_samples)
    return remesh if _distance(remesh, input_samples) <= slack else decimation


def quad_layout(vertices: np.ndarray, faces: np.ndarray, target_quads: int) -> Layout | None:
    """Instant Meshes' quad-dominant remesh to about `target_quads` faces, quads split along
    their shorter diagonal; None when the library is missing or the remesh comes back empty."""
    try:
        import pyinstantmeshes
    except ImportError:
        return None
    with tempfile.TemporaryDirectory(prefix="specmesh-layout-") as folder:
        source, remeshed = Path(folder, "in.obj"), Path(folder, "out.obj")
        trimesh.Trimesh(vertices, faces, process=False).export(source)
        with _quiet_stdout():  # the library reports on stdout, which carries `--stats-json -`
            pyinstantmeshes.remesh_file(str(source), str(remeshed), target_face_count=max(int(target_quads), 4),
                                        crease_angle=CREASE_DEGREES, deterministic=True)
        positions, polygons = _read_polygons(remeshed)
    if not polygons:
        return None
    return _split(positions, polygons)


def _read_polygons(path: Path) -> tuple[np.ndarray, list[list[int]]]:
    positions, polygons = [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            positions.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("f "):
            polygons.append([int(token.split("/")[0]) - 1 for token in line.split()[1:]])
    return np.asarray(positions, np.float64).reshape(-1, 3), polygons


def _split(positions: np.ndarray, polygons: list[list[int]]) -> Layout:
    """Triangles of the polygons (quads along the shorter diagonal, others as fans) and the quads'
    diagonals, the edges a decoded pair of triangles may swap."""
    triangles, diagonals = [], []
    for polygon in polygons:
        if len(set(polygon)) < 3:
            continue
        if len(polygon) == 4:
            a, b, c, d = polygon
            if np.linalg.norm(positions[a] - positions[c]) > np.linalg.norm(positions[b] - positions[d]):
                a, b, c, d = b, c, d, a
            triangles += [(a, b, c), (a, c, d)]
            diagonals.append((a, c))
        else:
            triangles += [(polygon[0], polygon[i], polygon[i + 1]) for i in range(1, len(polygon) - 1)]
    faces = np.asarray(triangles, np.int64).reshape(-1, 3)
    used, remap = np.unique(faces, return_inverse=True)
    index = np.full(len(positions), -1, np.int64)
    index[used] = np.arange(len(used))
    return Layout(positions[used], remap.reshape(-1, 3), index[np.asarray(diagonals, np.int64).reshape(-1, 2)], "remesh quads")


def _distance(layout: Layout, input_samples: np.ndarray) -> float:
    """Mean two-sided distance between samples of the layout's surface and of the input's."""
    if not len(layout.faces) or not len(input_samples):
        return float("inf")
    samples = sample_surface(layout.vertices, layout.faces, SHAPE_SAMPLES, seed=1)[0]
    there = cKDTree(input_samples).query(samples)[0].mean()
    back = cKDTree(samples).query(input_samples)[0].mean()
    return float(there + back) / 2


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """File descriptor 1 pointed at /dev/null for the duration (C++ code writes there directly)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
