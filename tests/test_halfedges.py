"""backend/mesh/halfedges.py: the bookkeeping that keeps decoded faces an oriented manifold."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.mesh.cleanup import mesh_report
from backend.mesh.halfedges import HalfEdges, fan_hole, fill_holes


def test_an_edge_takes_a_second_face_only_wound_against_the_first():
    mesh = HalfEdges(5)
    mesh.add((0, 1, 2))
    forward, backward = mesh.legal(0, 1, np.array([3]), may_start=False)
    assert not forward[0] and backward[0]  # (1, 0, 3) runs 0-1 the other way
    mesh.add((1, 0, 3))
    assert not any(x[0] for x in mesh.legal(0, 1, np.array([4]), may_start=False))  # a third face: never


def test_a_face_must_join_the_front_or_start_where_allowed():
    mesh = HalfEdges(7)
    mesh.add((0, 1, 2))
    assert not mesh.legal_face((4, 5, 6), may_start=False)  # touches nothing: a second front
    assert mesh.legal_face((4, 5, 6), may_start=True)
    assert mesh.legal_face((2, 1, 3), may_start=False)      # shares the edge 1-2
    assert not mesh.legal_face((1, 2, 3), may_start=False)  # would run 1->2 a second time


def test_legal_face_agrees_with_the_array_form():
    rng = np.random.default_rng(0)
    mesh = HalfEdges(8)
    for face in [(0, 1, 2), (2, 1, 3), (3, 1, 4)]:
        mesh.add(face)
    for _ in range(200):
        a, b, c = (int(x) for x in rng.choice(8, 3, replace=False))
        may_start = bool(rng.integers(2))
        forward, backward = mesh.legal(a, b, np.array([c]), may_start)
        assert forward[0] == mesh.legal_face((a, b, c), may_start)
        assert backward[0] == mesh.legal_face((b, a, c), may_start)


def _octahedron_without(missing: int) -> tuple[np.ndarray, HalfEdges, list[tuple[int, int, int]]]:
    octa = trimesh.creation.icosphere(0)  # 12 vertices, 20 faces, outward
    mesh = HalfEdges(len(octa.vertices))
    faces = [tuple(int(v) for v in f) for f in octa.faces]
    for face in faces[missing:]:
        mesh.add(face)
    return np.asarray(octa.vertices), mesh, faces


def test_holes_close_into_a_watertight_consistent_mesh():
    positions, mesh, _ = _octahedron_without(5)
    normals = positions / np.linalg.norm(positions, axis=1, keepdims=True)
    loops = mesh.boundary_loops(positions, normals)
    assert len(loops) >= 1
    fill_holes(mesh, positions, loops, score=lambda face: 0.0, added=lambda face: None)
    report = mesh_report(positions, np.array(mesh.faces))
    assert report["boundary_edges"] == report["nonmanifold_edges"] == report["flipped_edges"] == 0
    assert trimesh.Trimesh(positions, np.array(mesh.faces), process=False).volume > 0


def test_a_fan_around_a_new_vertex_closes_any_simple_loop():
    positions, mesh, _ = _octahedron_without(5)
    normals = positions / np.linalg.norm(positions, axis=1, keepdims=True)
    (loop,) = mesh.boundary_loops(positions, normals)
    centre = mesh.grow()
    made: list = []
    fan_hole(mesh, loop, centre, made.append)
    assert len(made) == len(loop)
    report = mesh_report(np.vstack([positions, positions[loop].mean(axis=0)]), np.array(mesh.faces))
    assert report["boundary_edges"] == report["nonmanifold_edges"] == report["flipped_edges"] == 0
