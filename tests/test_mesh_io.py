"""load_mesh: every common format, scenes, and clear errors on bad files."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.mesh.io import MeshLoadError, load_mesh


@pytest.mark.parametrize("ext", ["obj", "ply", "stl", "glb", "off"])
def test_formats_round_trip(tmp_path, ext):
    box = trimesh.creation.box(extents=(1, 2, 3))
    path = tmp_path / f"box.{ext}"
    box.export(path)
    mesh = load_mesh(path)
    assert len(mesh.faces) == 12
    assert np.allclose(mesh.bounds, box.bounds, atol=1e-6)


def test_scene_is_concatenated_with_transforms(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box(), transform=trimesh.transformations.translation_matrix([10, 0, 0]))
    scene.add_geometry(trimesh.creation.icosphere(subdivisions=1))
    path = tmp_path / "scene.glb"
    scene.export(path)
    mesh = load_mesh(path)
    assert len(mesh.faces) == 12 + 80
    assert mesh.bounds[1, 0] == pytest.approx(10.5)


def test_missing_file(tmp_path):
    with pytest.raises(MeshLoadError, match="no such file"):
        load_mesh(tmp_path / "nope.obj")


def test_unreadable_file(tmp_path):
    path = tmp_path / "junk.glb"
    path.write_bytes(b"\x00not a mesh at all")
    with pytest.raises(MeshLoadError, match="cannot read"):
        load_mesh(path)


def test_no_faces(tmp_path):
    path = tmp_path / "points.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(MeshLoadError):
        load_mesh(path)


def test_nan_vertices(tmp_path):
    path = tmp_path / "nan.obj"
    path.write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(MeshLoadError, match="NaN"):
        load_mesh(path)


def test_is_a_value_error():
    assert issubclass(MeshLoadError, ValueError)
