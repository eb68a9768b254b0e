"""Vertex candidates: a quadric-decimated copy of the input whose vertices the model may copy.

Inventing a vertex's 7-bit coordinates from a point cloud is the hard part of mesh generation
(the decoder learned where blocks are but guessed the offsets inside them); copying them from a
short list of likely corners is easy. Quadric decimation keeps exactly the vertices an artist
would keep (corners, creases), so the list is the input decimated to a few times the vertex
count an artist mesh needs. Training makes the list the way inference does, from a densified,
jittered copy of the target, so that the model learns to choose and correct, not to trust.
"""

from __future__ import annotations

import fast_simplification
import numpy as np
import trimesh

from backend.mesh.quantize import quantize_coords

# Longest edge after densifying, in the normalized frame (BPT's [-0.95, 0.95] box): decimation
# then chooses among many vertices instead of returning the input's few as they are.
DENSIFY_EDGE = 0.12
MAX_DENSIFY_FACES = 60_000
PAD = -1  # grid coordinate of an empty candidate slot
STALLED = 1.5  # decimation left more than this many times the target: cluster first
# Candidates for a model that does not read them (decoding still keeps to them): a few times the
# vertices of a typical artist mesh (the procedural data's median is 50, its 99th percentile 216),
# and few enough that covering the input fits the model's 2,048 tokens (256 ran out of tokens on
# Blender's UV sphere, torus and Suzanne; 128 covers them with CD/noise 1.1-1.3; docs/experiments).
CANDIDATES = 128


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """The mesh quadric-decimated to about `target_faces` triangles, unused vertices dropped; a
    mesh with no more faces than that comes back as it is (a low-poly input already names its
    corners, and fast-simplification refuses a target above the face count). Where quadric
    decimation stalls (it will not collapse the long thin triangles of a many-sided CAD
    cylinder), the vertices are first clustered on a grid about one target edge long."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(faces) > target_faces:
        vertices, faces = _simplify(vertices, faces, target_faces)
    if len(faces) > STALLED * target_faces:
        area = float(np.linalg.norm(np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]],
                                             vertices[faces[:, 2]] - vertices[faces[:, 0]]), axis=1).sum() / 2)
        vertices, faces = _cluster(vertices, faces, 0.5 * np.sqrt(area / target_faces))  # ~4x the target
        if len(faces) > target_faces:
            vertices, faces = _simplify(vertices, faces, target_faces)
    used, remap = np.unique(faces, return_inverse=True)
    return vertices[used], remap.reshape(-1, 3)


def _simplify(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    simple_v, simple_f = fast_simplification.simplify(vertices.astype(np.float32), faces,
                                                      target_count=max(int(target_faces), 4))
    return np.asarray(simple_v, np.float64), np.asarray(simple_f, np.int64)


def _cluster(vertices: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices in one grid cube of side `cell` merged into their mean; collapsed faces dropped."""
    _, cluster = np.unique(np.floor(vertices / cell), axis=0, return_inverse=True)
    cluster = cluster.reshape(-1)
    merged = cluster[faces]
    merged = merged[(merged[:, 0] != merged[:, 1]) & (merged[:, 1] != merged[:, 2]) & (merged[:, 2] != merged[:, 0])]
    count = np.bincount(cluster)[:, None]
    means = np.stack([np.bincount(cluster, vertices[:, k]) for k in range(3)], axis=1) / np.maximum(count, 1)
    return means, merged


def decimated_vertices(vertices: np.ndarray, faces: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` candidate vertices in the mesh's frame: its own vertices when it has no
    more than `count`, else the vertices of its decimation to about `count` vertices."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    if len(np.unique(faces)) > count:
        # A closed triangle mesh has about twice as many faces as vertices.
        vertices, faces = decimate(vertices, faces, 2 * count)
    else:
        vertices = vertices[np.unique(faces)]
    if len(vertices) > count:  # decimation stops near, not at, its target
        vertices = vertices[np.linspace(0, len(vertices) - 1, count).astype(np.int64)]
    return vertices


def densified(vertices: np.ndarray, faces: np.ndarray, rng: np.random.Generator,
              jitter: float) -> tuple[np.ndarray, np.ndarray]:
    """Training's stand-in for a dense user input made from a low-poly target: subdivided to
    short edges, vertices jittered (std `jitter`)."""
    vertices = np.asarray(vertices, np.float64)
    try:
        dense_v, dense_f = trimesh.remesh.subdivide_to_size(vertices, faces, DENSIFY_EDGE, max_iter=8)
    except ValueError:  # slivers that would need more rounds: keep the mesh as it is
        dense_v, dense_f = vertices, np.asarray(faces)
    if len(dense_f) > MAX_DENSIFY_FACES:
        dense_v, dense_f = vertices, np.asarray(faces)
    return dense_v + rng.normal(0.0, jitter, size=dense_v.shape), dense_f


def candidate_grid(normalized: np.ndarray, count: int) -> np.ndarray:
    """Normalized candidate positions -> (count, 3) int64 grid cells in xyz order, unique,
    padded with PAD rows (the model's fixed number of candidate slots)."""
    grid = np.full((count, 3), PAD, np.int64)
    if len(normalized):
        cells = np.unique(quantize_coords(normalized), axis=0)[:count]
        grid[:len(cells)] = cells
    return grid
