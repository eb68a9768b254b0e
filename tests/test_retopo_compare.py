"""The retopology benchmark's own metrics (benchmarks/retopo_compare.py) on hand-made meshes, and
its Blender helpers (Decimate, QuadriFlow) on a small sphere."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from addon_fixtures import REPO_ROOT

_spec = importlib.util.spec_from_file_location("retopo_compare", REPO_ROOT / "benchmarks" / "retopo_compare.py")
rc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rc)

CUBE_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                   [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
# Outward-wound quads (counter-clockwise seen from outside).
CUBE_F = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]]


def test_closed_cube_is_watertight():
    row = rc.measure(CUBE_V, CUBE_F, rc.Reference(CUBE_V, CUBE_F))
    assert row["valid"] and row["watertight"]
    assert (row["faces"], row["triangles"], row["quads"]) == (6, 12, 6)
    assert row["boundary_edges"] == row["nonmanifold_edges"] == row["misoriented_edges"] == 0
    assert row["edges"] == 12 and row["pieces"] == row["input_pieces"] == 1
    assert row["quad_ratio"] == 1.0 and row["sliver_fraction"] == 0.0
    assert row["cd_noise"] < 1.5  # the input against itself: about the noise floor


def test_open_cube_has_four_boundary_edges():
    row = rc.measure(CUBE_V, CUBE_F[1:])
    assert not row["watertight"]
    assert row["boundary_edges"] == 4 and row["nonmanifold_edges"] == 0 and row["misoriented_edges"] == 0
    assert row["boundary_per_face"] == pytest.approx(4 / 5)


def test_flipped_face_gives_misoriented_edges():
    faces = [list(f) for f in CUBE_F]
    faces[0] = faces[0][::-1]
    row = rc.measure(CUBE_V, faces)
    assert row["misoriented_edges"] == 4 and row["boundary_edges"] == 0 and not row["watertight"]


def test_weld_by_position_and_pieces():
    # The cube with every face owning its own four corners (24 vertices): welded, still closed.
    vertices = np.concatenate([CUBE_V[f] for f in CUBE_F])
    faces = [[4 * k + i for i in range(4)] for k in range(6)]
    row = rc.measure(vertices, faces)
    assert row["watertight"] and row["pieces"] == 1
    # Two cubes apart: two pieces; a third face on one edge: non-manifold.
    two = rc.measure(np.concatenate([CUBE_V, CUBE_V + 3]), CUBE_F + [[i + 8 for i in f] for f in CUBE_F])
    assert two["pieces"] == 2 and two["watertight"]
    fin = rc.measure(np.concatenate([CUBE_V, [[0.5, -1, 0.5]]]), CUBE_F + [[0, 1, 8]])
    assert fin["nonmanifold_edges"] == 1 and fin["boundary_edges"] == 2


def test_quads_and_slivers_counted():
    # Two unit quads side by side plus one thin triangle (smallest angle about 2.9 degrees)
    # and one equilateral triangle.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0], [1, 1, 0], [2, 1, 0],
                         [3, 0, 0], [3, 0.05, 0], [5, 0, 0], [6, 0, 0], [5.5, np.sqrt(3) / 2, 0]])
    faces = [[0, 1, 4, 3], [1, 2, 5, 4], [2, 6, 7], [8, 9, 10]]
    row = rc.measure(vertices, faces)
    assert (row["faces"], row["quads"], row["triangles"]) == (4, 2, 6)
    assert row["quad_ratio"] == 0.5
    assert row["sliver_fraction"] == pytest.approx(1 / 6)  # quads split in two are 45-degree triangles
    assert row["pieces"] == 3  # the thin triangle touches the quads only at a vertex: its own piece


def test_empty_output_is_invalid():
    assert rc.measure(np.zeros((0, 3)), [])["valid"] is False


def test_obj_round_trip(tmp_path):
    rc.write_obj(tmp_path / "c.obj", CUBE_V, CUBE_F)
    vertices, faces = rc.read_obj(tmp_path / "c.obj")
    assert np.allclose(vertices, CUBE_V) and faces == CUBE_F


@pytest.mark.bpy
def test_blender_helpers_hit_the_asked_size():
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8)
    vertices, faces = rc._mesh_data(bpy.context.active_object.data)
    v, f, _ = rc.blender_decimate(vertices, faces, 100)
    row = rc.measure(v, f)
    assert row["valid"] and abs(row["triangles"] - 100) <= 10
    v, f, _ = rc.blender_quadriflow(vertices, faces, 120)
    row = rc.measure(v, f)
    assert row["valid"] and row["quad_ratio"] > 0.9 and abs(row["triangles"] - 120) <= 24
