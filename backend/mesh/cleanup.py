"""Artist-ready clean-up of a generated triangle mesh: weld, drop duplicates, orient outward.

The model writes faces in whatever winding its tokens happen to give, so a raw output shows
inverted (black) triangles in Blender. `clean_mesh` runs the four steps `specmesh generate`
applies before writing a file:

1. `weld`: vertices closer than a distance (the quantization step: two corners the model meant
   to be one) become one vertex; faces that collapse are dropped.
2. `drop_duplicate_faces`: a face over the same three vertices as an earlier one (the same
   triangle, whichever its winding: a double-sided pair) is dropped.
3. `covered_faces`: a face lying in one plane with others that entirely cover it is dropped
   (overlapping coplanar triangles), keeping the surface covered the same.
4. `orient_outward`: winding made consistent across every manifold edge (an edge shared by
   exactly two faces), patch by patch, and each patch turned so that its signed volume is
   positive: outward for a closed patch; for an open one, facing away from the centre of the
   whole mesh.

`mesh_report` measures what an artist would see: loose pieces, boundary edges, closed patches
and how many of those face inward. Everything here is numpy/scipy; no torch, no bpy.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


@dataclass
class CleanMesh:
    vertices: np.ndarray  # float64 (n, 3)
    faces: np.ndarray     # int64 (m, 3), consistently wound, outward
    stats: dict


def _as_arrays(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"face indices must lie in 0..{len(vertices) - 1}")
    return vertices, faces


def weld(vertices: np.ndarray, faces: np.ndarray, distance: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Merge vertices closer than `distance` (strictly; chains merge transitively) into the first
    of them, drop faces that lose a corner, drop unused vertices. -> (vertices, faces, merged)."""
    vertices, faces = _as_arrays(vertices, faces)
    n = len(vertices)
    root = np.arange(n)
    if distance > 0 and n > 1:
        pairs = cKDTree(vertices).query_pairs(np.nextafter(distance, 0.0), output_type="ndarray")
        if len(pairs):
            graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
            _, label = connected_components(graph, directed=False)
            first = np.full(label.max() + 1, n)
            np.minimum.at(first, label, np.arange(n))
            root = first[label]
    merged = int(n - len(np.unique(root)))
    faces = root[faces]
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    used, remap = np.unique(faces, return_inverse=True)
    return vertices[used], remap.reshape(-1, 3).astype(np.int64), merged


def drop_duplicate_faces(faces: np.ndarray) -> tuple[np.ndarray, int]:
    """Keep the first face over each vertex set (either winding). -> (faces, dropped)."""
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(faces) == 0:
        return faces, 0
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    return faces[np.sort(first)], int(len(faces) - len(first))


@dataclass
class _Edges:
    """Undirected edges of a triangle list: `edge[f, k]` is the edge from corner k to k+1 of face
    f, `forward[f, k]` whether that corner order runs from the lower to the higher vertex index."""
    edge: np.ndarray     # (m, 3) edge ids
    forward: np.ndarray  # (m, 3) bool
    count: np.ndarray    # (e,) faces using each edge


def _edges(faces: np.ndarray) -> _Edges:
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    _, edge, count = np.unique(np.sort(directed, axis=1), axis=0, return_inverse=True, return_counts=True)
    return _Edges(edge.reshape(-1, 3), (directed[:, 0] < directed[:, 1]).reshape(-1, 3), count)


def _manifold_pairs(edges: _Edges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face pairs across manifold edges: (face a, face b, same direction?)."""
    flat_edge = edges.edge.ravel()
    flat_face = np.repeat(np.arange(len(edges.edge)), 3)
    flat_forward = edges.forward.ravel()
    manifold = edges.count[flat_edge] == 2
    order = np.argsort(flat_edge[manifold], kind="stable")
    face = flat_face[manifold][order].reshape(-1, 2)
    forward = flat_forward[manifold][order].reshape(-1, 2)
    return face[:, 0], face[:, 1], forward[:, 0] == forward[:, 1]


def _patches(num_faces: int, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    """Faces connected through manifold edges: (count, label per face)."""
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(num_faces, num_faces))
    return connected_components(graph, directed=False)


def _consistent_flips(num_faces: int, a: np.ndarray, b: np.ndarray, same: np.ndarray) -> np.ndarray:
    """Which faces to flip so that neighbours across manifold edges run their shared edge in
    opposite directions; breadth first from the lowest face of each patch (for a non-orientable
    patch the first visit wins)."""
    neighbours: list[list[tuple[int, bool]]] = [[] for _ in range(num_faces)]
    for x, y, s in zip(a.tolist(), b.tolist(), same.tolist()):
        neighbours[x].append((y, s))
        neighbours[y].append((x, s))
    flip = np.zeros(num_faces, bool)
    seen = np.zeros(num_faces, bool)
    for start in range(num_faces):
        if seen[start]:
            continue
        seen[start] = True
        queue = deque([start])
        while queue:
            f = queue.popleft()
            for g, s in neighbours[f]:
                if not seen[g]:
                    seen[g] = True
                    flip[g] = flip[f] ^ s
                    queue.append(g)
    return flip


def _signed_volumes(vertices: np.ndarray, faces: np.ndarray, label: np.ndarray, count: int,
                    centre: np.ndarray) -> np.ndarray:
    """Per patch: the signed volume of the cone from `centre` over its faces (the enclosed volume
    for a closed patch, whatever the centre)."""
    corners = vertices[faces] - centre
    six_v = np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2]))
    return np.bincount(label, six_v, minlength=count) / 6.0


def _centre(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted centroid of the surface (its vertex mean if it has no area)."""
    tri = vertices[faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if area.sum() <= 0:
        return vertices[np.unique(faces)].mean(axis=0)
    return (tri.mean(axis=1) * area[:, None]).sum(axis=0) / area.sum()


def orient_outward(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray | None = None,
                   normals: np.ndarray | None = None) -> np.ndarray:
    """Faces rewound (corners 1 and 2 swapped where needed), same order and vertices: consistent
    winding across every manifold edge, each patch of faces connected through manifold edges
    turned as a whole: a closed patch to a positive signed volume (outward); an open patch to
    agree, area-weighted, with the normals of the nearest input `points` when they are given
    (the surface the mesh was made from says where out is), else to a positive signed volume
    from the mesh's centre (away from it). Non-manifold edges do not propagate orientation: two
    boxes sharing an edge are oriented each on its own."""
    vertices, faces = _as_arrays(vertices, faces)
    if len(faces) == 0:
        return faces.copy()
    edges = _edges(faces)
    a, b, same = _manifold_pairs(edges)
    flip = _consistent_flips(len(faces), a, b, same)
    faces = np.where(flip[:, None], faces[:, [0, 2, 1]], faces)
    count, label = _patches(len(faces), a, b)
    score = _signed_volumes(vertices, faces, label, count, _centre(vertices, faces))
    if points is not None and normals is not None and len(points):
        tri = vertices[faces]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length: twice the area
        _, nearest = cKDTree(np.asarray(points, np.float64)).query(tri.mean(axis=1))
        reference = np.asarray(normals, np.float64)[nearest]
        reference /= np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-30)
        agreement = np.einsum("ij,ij->i", normal, reference)
        by_normals = np.bincount(label, agreement, minlength=count)
        open_patch = _open_patches(_edges(faces), count, label)
        score = np.where(open_patch & (by_normals != 0), by_normals, score)
    flip = score[label] < 0
    return np.where(flip[:, None], faces[:, [0, 2, 1]], faces)


def _open_patches(edges: _Edges, count: int, label: np.ndarray) -> np.ndarray:
    """Per patch: open? A patch is closed when each of its edges is used by exactly two of its own
    faces (an edge it shares with another patch, non-manifold overall, may still close it)."""
    patch_edge = np.repeat(label, 3) * len(edges.count) + edges.edge.ravel()
    key, uses = np.unique(patch_edge, return_counts=True)
    open_patch = np.zeros(count, bool)
    open_patch[key[uses != 2] // len(edges.count)] = True
    return open_patch


def closed_faces(faces: np.ndarray) -> np.ndarray:
    """Per face: does it belong to a closed patch (see `mesh_report`)?"""
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(faces) == 0:
        return np.zeros(0, bool)
    edges = _edges(faces)
    a, b, _ = _manifold_pairs(edges)
    count, label = _patches(len(faces), a, b)
    return ~_open_patches(edges, count, label)[label]


def mesh_report(vertices: np.ndarray, faces: np.ndarray) -> dict:
    """What an artist sees in a mesh:
    - pieces: loose parts (faces connected through shared vertices, as Blender's Select Linked);
    - boundary_edges: edges of exactly one face (holes and open borders);
    - nonmanifold_edges: edges of three or more faces;
    - flipped_edges: manifold edges whose two faces run them in the same direction (one of the
      two faces shows its back: the black triangles of an inconsistently wound mesh);
    - closed_patches: groups of faces connected through manifold edges whose every edge is used
      by exactly two of their faces, and inward_patches: those of them, consistently wound, with
      negative volume;
    - sliver_fraction: share of the triangles whose smallest angle is under 10 degrees."""
    vertices, faces = _as_arrays(vertices, faces)
    if len(faces) == 0:
        return {"pieces": 0, "boundary_edges": 0, "nonmanifold_edges": 0, "flipped_edges": 0,
                "closed_patches": 0, "inward_patches": 0, "sliver_fraction": 0.0}
    edges = _edges(faces)
    m = len(faces)
    rows = np.repeat(np.arange(m), 3)
    incidence = coo_matrix((np.ones(3 * m), (rows, faces.ravel())), shape=(m, len(vertices))).tocsr()
    pieces = connected_components(incidence @ incidence.T, directed=False)[0]
    a, b, same = _manifold_pairs(edges)
    count, label = _patches(m, a, b)
    open_patch = _open_patches(edges, count, label)
    inconsistent = np.zeros(count, bool)
    inconsistent[label[a[same]]] = True
    volume = _signed_volumes(vertices, faces, label, count, _centre(vertices, faces))
    closed = ~open_patch
    return {
        "pieces": int(pieces),
        "boundary_edges": int((edges.count == 1).sum()),
        "nonmanifold_edges": int((edges.count > 2).sum()),
        "flipped_edges": int(same.sum()),
        "closed_patches": int(closed.sum()),
        "inward_patches": int((closed & ~inconsistent & (volume < 0)).sum()),
        "sliver_fraction": round(float((smallest_angles(vertices[faces]) < SLIVER_DEGREES).mean()), 4),
    }


SLIVER_DEGREES = 10.0


def smallest_angles(triangles: np.ndarray) -> np.ndarray:
    """(m, 3, 3) corners -> (m,) smallest interior angle in degrees (0 for a degenerate one)."""
    edges = np.roll(triangles, -1, axis=1) - triangles
    lengths = np.linalg.norm(edges, axis=2)
    cos = -np.einsum("mkd,mkd->mk", edges, np.roll(edges, 1, axis=1)) / np.maximum(
        lengths * np.roll(lengths, 1, axis=1), 1e-30)
    smallest = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).min(axis=1)
    return np.where(lengths.min(axis=1) > 1e-12, smallest, 0.0)


# A plane with more faces than this is left as it is by `covered_faces` (the check is quadratic).
MAX_FACES_PER_PLANE = 256


def _plane_groups(vertices: np.ndarray, faces: np.ndarray, distance: float) -> list[np.ndarray]:
    """Faces grouped by the plane they lie in: unit normal up to sign (rounded to 1e-3) and
    offset (rounded to `distance`). Rounding may split a plane in two; that only drops less."""
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    unit = np.round(normal / np.where(length > 0, length, 1.0), 3)
    sign = np.sign(unit[np.arange(len(unit)), np.abs(unit).argmax(axis=1)])
    unit = unit * np.where(sign == 0, 1.0, sign)[:, None] + 0.0  # + 0.0: no negative zeros in keys
    offset = np.round(np.einsum("ij,ij->i", unit, tri[:, 0]) / distance)
    _, group = np.unique(np.column_stack([unit, offset]), axis=0, return_inverse=True)
    group = np.where(length.ravel() > 0, group.ravel(), -1)  # a zero-area face lies in no plane
    order = np.argsort(group, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(group[order])) + 1)
    return [g for g in groups if len(g) > 1 and group[g[0]] >= 0]


def _area(polygon: list[tuple[float, float]]) -> float:
    """Signed area of a 2D polygon (positive counter-clockwise)."""
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1]))


def _clip(polygon: list[tuple[float, float]], a, b, left: bool) -> list[tuple[float, float]]:
    """The part of a convex polygon on one side of the line a -> b (Sutherland-Hodgman)."""
    def side(p):
        value = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
        return value if left else -value

    out = []
    for p, q in zip(polygon, polygon[1:] + polygon[:1]):
        sp, sq = side(p), side(q)
        if sp >= 0:
            out.append(p)
        if (sp >= 0) != (sq >= 0):
            t = sp / (sp - sq)
            out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out if len(out) >= 3 else []


def _minus(polygon: list[tuple[float, float]], triangle: list[tuple[float, float]]) -> list[list]:
    """A convex polygon minus a counter-clockwise triangle, as convex pieces."""
    pieces, rest = [], polygon
    for a, b in zip(triangle, triangle[1:] + triangle[:1]):
        outside = _clip(rest, a, b, left=False)
        if outside:
            pieces.append(outside)
        rest = _clip(rest, a, b, left=True)
        if not rest:
            break
    return pieces


# `_is_covered` gives up (answers "not covered", which keeps the face) past this many pieces.
MAX_PIECES = 64


def _is_covered(target: list[tuple[float, float]], others: list[list[tuple[float, float]]]) -> bool:
    """Is the triangle `target` covered by the union of `others` (all counter-clockwise), up to a
    thousandth of its area? Exact polygon clipping of convex pieces; no geometry library. Only
    triangles whose box meets the target's are used; an uncovered rest that splits into more than
    MAX_PIECES pieces counts as not covered."""
    whole = _area(target)
    xs, ys = [p[0] for p in target], [p[1] for p in target]
    pieces = [target]
    for other in others:
        if (max(p[0] for p in other) <= min(xs) or min(p[0] for p in other) >= max(xs)
                or max(p[1] for p in other) <= min(ys) or min(p[1] for p in other) >= max(ys)):
            continue
        pieces = [q for p in pieces for q in _minus(p, other) if _area(q) > 1e-9 * whole]
        if not pieces:
            return True
        if len(pieces) > MAX_PIECES:
            return False
    return sum(_area(p) for p in pieces) <= 1e-3 * whole


def covered_faces(vertices: np.ndarray, faces: np.ndarray, plane_distance: float) -> np.ndarray:
    """Indices of faces that lie in one plane with others and are entirely covered by them (the
    model drew that part of the surface twice, or more: overlapping coplanar triangles flicker in
    a viewport and cannot be joined into quads). Smallest first, a face is dropped only if the
    faces of its plane still kept cover it, so the surface covered stays exactly the same; faces
    of closed patches (`closed_faces`) are never dropped, so no closed part is opened."""
    vertices, faces = _as_arrays(vertices, faces)
    if len(faces) < 2 or plane_distance <= 0:
        return np.zeros(0, np.int64)
    tri = vertices[faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    protected = closed_faces(faces)
    dropped = []
    for group in _plane_groups(vertices, faces, plane_distance):
        if len(group) > MAX_FACES_PER_PLANE:
            continue
        normal = np.cross(tri[group[0], 1] - tri[group[0], 0], tri[group[0], 2] - tri[group[0], 0])
        normal /= np.linalg.norm(normal)
        u = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
        u /= np.linalg.norm(u)
        v = np.cross(normal, u)
        shapes = {}
        for i in group.tolist():
            corners = [(float(p @ u), float(p @ v)) for p in tri[i]]
            shapes[i] = corners if _area(corners) > 0 else corners[::-1]  # counter-clockwise in the plane
        kept = set(shapes)
        for i in sorted(shapes, key=lambda i: (area[i], i)):
            if protected[i]:
                continue
            others = [shapes[j] for j in sorted(kept) if j != i]
            if others and _is_covered(shapes[i], others):
                kept.discard(i)
                dropped.append(i)
    return np.sort(np.asarray(dropped, np.int64))


def outward_edits(vertices: np.ndarray, faces: np.ndarray, plane_distance: float,
                  points: np.ndarray | None = None, normals: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, dict]:
    """For a mesh as the pipeline streams it (no two faces over the same vertices): (faces to
    drop as covered, faces to reverse for outward winding, `mesh_report` of the result), as
    indices into `faces`. `clean_mesh` applies the same steps; `specmesh serve` sends these so
    that the add-on finishes its streamed mesh exactly as the CLI writes it."""
    vertices, faces = _as_arrays(vertices, faces)
    drop = covered_faces(vertices, faces, plane_distance)
    keep = np.setdiff1d(np.arange(len(faces)), drop)
    oriented = orient_outward(vertices, faces[keep], points, normals)
    flip = keep[(oriented != faces[keep]).any(axis=1)]
    return drop, flip, mesh_report(vertices, oriented)


def clean_mesh(vertices: np.ndarray, faces: np.ndarray, weld_distance: float = 0.0,
               plane_distance: float = 0.0, points: np.ndarray | None = None,
               normals: np.ndarray | None = None) -> CleanMesh:
    """Weld, drop duplicate faces, drop covered coplanar faces (when `plane_distance` > 0), orient
    outward (open patches by the input's `points` and `normals` when given); stats say what
    changed and what is left."""
    vertices, faces = _as_arrays(vertices, faces)
    before = len(faces)
    vertices, faces, merged = weld(vertices, faces, weld_distance)
    collapsed = before - len(faces)
    faces, duplicates = drop_duplicate_faces(faces)
    covered = covered_faces(vertices, faces, plane_distance)
    faces = np.delete(faces, covered, axis=0)
    used, remap = np.unique(faces, return_inverse=True)
    vertices, faces = vertices[used], remap.reshape(-1, 3).astype(np.int64)
    oriented = orient_outward(vertices, faces, points, normals)
    flipped = int((oriented != faces).any(axis=1).sum())
    stats = {"welded_vertices": merged, "collapsed_faces": int(collapsed), "duplicate_faces": duplicates,
             "covered_faces": len(covered), "flipped_faces": flipped, **mesh_report(vertices, oriented)}
    return CleanMesh(vertices, oriented, stats)
