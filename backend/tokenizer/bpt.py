"""BPT ("blocked and patchified") mesh tokenizer, see DESIGN.md.

Encoding: vertices go to the permuted frame (a, b, c) = (z, x, y) and are sorted by coarse
32-cell block, then by c, b, a (the "z, y, x" of DESIGN.md, whose token formula names the permuted
columns x, y, z: a lexsort with the last column first); each
face is rotated so its lowest index comes first and faces are sorted. Patches: take the first
unvisited face, pick its vertex with the most unvisited faces as centre, and walk the fan of
unvisited faces around that centre forwards and backwards, keeping orientation: a face
(centre, u, w) continues a chain ... u -> w, so consecutive fan faces share the edge
(centre, v_j+1). A patch is the centre (patch-start block + offset) then the chain vertices
(block token only when it changes, then offset); it decodes to faces (centre, v_j, v_j+1)."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.mesh.normalize import Normalization
from backend.mesh.quantize import LEVELS, QuantizedMesh, compact, quantize_mesh
from backend.tokenizer.incremental import IncrementalDecoder
from backend.tokenizer.vocab import AXIS_PERMUTATION, EOS, OFFSET_START, PATCH_START, block_of, offset_of

COARSE_BLOCK = 32


def _canonical_order(qmesh: QuantizedMesh) -> tuple[np.ndarray, np.ndarray]:
    """Permuted vertices in BPT order and faces re-indexed, rotated and sorted."""
    abc = qmesh.vertices[:, AXIS_PERMUTATION]
    coarse = abc // COARSE_BLOCK
    order = np.lexsort((abc[:, 0], abc[:, 1], abc[:, 2], coarse[:, 0], coarse[:, 1], coarse[:, 2]))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    faces = rank[qmesh.faces]
    start = faces.argmin(axis=1)[:, None]
    faces = np.take_along_axis(faces, (start + np.arange(3)) % 3, axis=1)
    faces = faces[np.lexsort((faces[:, 2], faces[:, 1], faces[:, 0]))]
    return abc[order], faces


class _FanTable:
    """All faces around each (centre, corner) key, as sorted flat lists built in numpy:
    entries of one key are contiguous and in face order."""

    __slots__ = ("start", "keys", "face", "other")

    def __init__(self, keys: np.ndarray, face: np.ndarray, other: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        first = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        self.start = dict(zip(sorted_keys[first].tolist(), first.tolist()))
        self.keys = sorted_keys.tolist() + [-1]  # sentinel ends the last run
        self.face = face[order].tolist()
        self.other = other[order].tolist()


def _patches(faces: np.ndarray, num_vertices: int) -> list[tuple[int, list[int]]]:
    """Split oriented faces into fans: (centre, chain) with faces (centre, chain[j], chain[j+1])."""
    n = num_vertices
    rotations = faces[:, [[0, 1, 2], [1, 2, 0], [2, 0, 1]]].reshape(-1, 3)  # (c, u, w) per corner
    c, u, w = rotations.T
    face_id = np.repeat(np.arange(len(faces)), 3)
    forward = _FanTable(c * n + u, face_id, w)  # faces (c, u, w) found from (c, u), giving w
    backward = _FanTable(c * n + w, face_id, u)  # ... found from (c, w), giving u
    face_list = faces.tolist()
    degree = np.bincount(faces.ravel(), minlength=n).tolist()
    visited = bytearray(len(faces))

    def step(table: _FanTable, key: int) -> int:
        """Mark and follow the first unvisited face under `key`; -1 when there is none."""
        i = table.start.get(key)
        if i is None:
            return -1
        keys, face = table.keys, table.face
        while keys[i] == key:
            f = face[i]
            if not visited[f]:
                visited[f] = 1
                for corner in face_list[f]:
                    degree[corner] -= 1
                return table.other[i]
            i += 1
        return -1

    patches = []
    for first, (x, y, z) in enumerate(face_list):
        if visited[first]:
            continue
        c, u, w = max(((x, y, z), (y, z, x), (z, x, y)), key=lambda r: degree[r[0]])
        step(forward, c * n + u)  # marks `first` itself: faces before it are all visited
        tail = [u, w]
        while (v := step(forward, c * n + tail[-1])) >= 0:
            tail.append(v)
        head = []
        while (v := step(backward, c * n + (head[-1] if head else u))) >= 0:
            head.append(v)
        patches.append((c, head[::-1] + tail))
    return patches


def encode(qmesh: QuantizedMesh) -> np.ndarray:
    """Token sequence (int64, ending with EOS) of a quantized mesh. The mesh is cleaned first
    (merged vertices, no degenerate or repeated faces), so `decode` gives back exactly the
    cleaned mesh's faces, orientation included."""
    vertices = np.asarray(qmesh.vertices, dtype=np.int64)
    if vertices.size and (vertices.min() < 0 or vertices.max() >= LEVELS):
        raise ValueError(f"quantized coordinates must lie in 0..{LEVELS - 1}")
    clean = compact(vertices, np.asarray(qmesh.faces, dtype=np.int64).reshape(-1, 3))
    if len(clean.faces) == 0:
        raise ValueError("mesh has no non-degenerate faces to encode")
    abc, faces = _canonical_order(clean)
    blocks = block_of(abc).tolist()
    offsets = (offset_of(abc) + OFFSET_START).tolist()
    tokens: list[int] = []
    for centre, chain in _patches(faces, len(abc)):
        previous = blocks[centre]
        tokens += (previous + PATCH_START, offsets[centre])
        for v in chain:
            if blocks[v] != previous:
                previous = blocks[v]
                tokens.append(previous)
            tokens.append(offsets[v])
    tokens.append(EOS)
    return np.asarray(tokens, dtype=np.int64)


def normalize_and_quantize(mesh: trimesh.Trimesh) -> tuple[QuantizedMesh, Normalization]:
    """BPT normalization then 7-bit quantization; the normalization maps results back."""
    norm = Normalization.fit(mesh.vertices)
    return quantize_mesh(norm.apply(mesh.vertices), mesh.faces), norm


def encode_mesh(mesh: trimesh.Trimesh) -> np.ndarray:
    """Normalize, quantize and encode a float mesh in any frame."""
    return encode(normalize_and_quantize(mesh)[0])


def decode(tokens: np.ndarray | list[int]) -> QuantizedMesh:
    """Quantized mesh of a token sequence; stops at EOS and ignores an unfinished tail.
    Raises ValueError on a sequence the grammar does not allow."""
    decoder = IncrementalDecoder()
    corners: list[np.ndarray] = []
    for token in np.asarray(tokens).tolist():
        corners += decoder.push(token)
        if decoder.finished:
            break
    return faces_to_mesh(corners)


def faces_to_mesh(corners: list[np.ndarray]) -> QuantizedMesh:
    """Indexed mesh from a list of (3, 3) corner arrays (shared corners become one vertex)."""
    if not corners:
        return QuantizedMesh(np.zeros((0, 3), np.int64), np.zeros((0, 3), np.int64))
    vertices, inverse = np.unique(np.stack(corners).reshape(-1, 3), axis=0, return_inverse=True)
    return QuantizedMesh(vertices.astype(np.int64), inverse.reshape(-1, 3).astype(np.int64))


def face_set(qmesh: QuantizedMesh) -> set[tuple[tuple[int, ...], ...]]:
    """Faces as corner-coordinate triples rotated to start at the smallest corner: equal sets
    mean the same oriented faces, whatever the vertex numbering."""
    result = set()
    for corners in qmesh.vertices[qmesh.faces].tolist():
        i = corners.index(min(corners))
        result.add(tuple(tuple(c) for c in corners[i:] + corners[:i]))
    return result
