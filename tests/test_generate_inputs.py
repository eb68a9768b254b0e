"""Reading IN for `specmesh generate`: mesh files, .ply and .npy point clouds, normals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend.inputs import estimate_normals, read_input


def _sphere_points(n: int = 500, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _write_ply(path, points: np.ndarray, normals: np.ndarray | None, binary: bool) -> None:
    """A vertex-only PLY, optionally with nx ny nz columns."""
    columns = ["x", "y", "z"] + (["nx", "ny", "nz"] if normals is not None else [])
    data = points if normals is None else np.hstack([points, normals])
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", f"element vertex {len(data)}"]
    header += [f"property float {c}" for c in columns] + ["end_header"]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode())
        if binary:
            f.write(data.astype("<f4").tobytes())
        else:
            f.write("\n".join(" ".join(f"{x:.6f}" for x in row) for row in data).encode() + b"\n")


def test_mesh_file_is_sampled_in_its_own_frame(tmp_path):
    mesh = trimesh.creation.box(extents=(2.0, 4.0, 6.0))
    mesh.apply_translation((100.0, -50.0, 7.0))
    path = tmp_path / "box.obj"
    mesh.export(path)
    cloud = read_input(path, count=1000, seed=3)
    assert cloud.points.shape == (1000, 3) and cloud.normals.shape == (1000, 3)
    assert cloud.mesh is not None and not cloud.normals_estimated
    assert np.all(cloud.points >= mesh.bounds[0] - 1e-4) and np.all(cloud.points <= mesh.bounds[1] + 1e-4)
    np.testing.assert_allclose(np.linalg.norm(cloud.normals, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("binary", [False, True])
def test_ply_point_cloud_with_normals_keeps_them(tmp_path, binary):
    points = _sphere_points()
    normals = points * 2.0  # not unit: reading must normalize
    path = tmp_path / "cloud.ply"
    _write_ply(path, points, normals, binary)
    cloud = read_input(path)
    assert cloud.mesh is None and not cloud.normals_estimated
    np.testing.assert_allclose(cloud.points, points, atol=1e-5)
    np.testing.assert_allclose(cloud.normals, points, atol=1e-5)


def test_ply_point_cloud_without_normals_estimates_outward_ones(tmp_path):
    points = _sphere_points(800) * 10 + 5
    path = tmp_path / "cloud.ply"
    _write_ply(path, points, None, binary=True)
    cloud = read_input(path)
    assert cloud.normals_estimated
    outward = (cloud.points - 5) / 10
    assert np.mean(np.einsum("ij,ij->i", cloud.normals, outward)) > 0.95


def test_npy_shapes(tmp_path):
    points = _sphere_points(300)
    np.save(tmp_path / "p3.npy", points)
    np.save(tmp_path / "p6.npy", np.hstack([points, -points]))
    three = read_input(tmp_path / "p3.npy")
    six = read_input(tmp_path / "p6.npy")
    assert three.normals_estimated and not six.normals_estimated
    np.testing.assert_allclose(six.normals, -points, atol=1e-5)
    assert np.all(np.einsum("ij,ij->i", three.normals, points) > 0.5)


def test_large_cloud_is_subsampled_deterministically(tmp_path):
    points = _sphere_points(5000)
    np.save(tmp_path / "big.npy", points)
    a = read_input(tmp_path / "big.npy", count=1024, seed=1)
    b = read_input(tmp_path / "big.npy", count=1024, seed=1)
    assert a.points.shape == (1024, 3)
    np.testing.assert_array_equal(a.points, b.points)


def test_estimated_normals_of_a_plane_are_perpendicular():
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-1, 1, 400), rng.uniform(-1, 1, 400), np.zeros(400)])
    normals = estimate_normals(points)
    np.testing.assert_allclose(np.abs(normals[:, 2]), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("bad.npy", np.zeros((10, 4)), "shape"),
        ("few.npy", np.zeros((2, 3)), "at least 3"),
        ("nan.npy", np.full((10, 3), np.nan), "NaN"),
    ],
)
def test_bad_point_clouds_are_rejected_clearly(tmp_path, name, payload, message):
    np.save(tmp_path / name, payload)
    with pytest.raises(ValueError, match=message):
        read_input(tmp_path / name)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_input(tmp_path / "nope.obj")


def test_object_array_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="numeric"):
        read_input(tmp_path / "obj.npy")


def test_bundled_examples_are_readable():
    examples = Path(__file__).resolve().parents[1] / "examples"
    meshes = sorted(examples.glob("*.obj"))
    assert len(meshes) >= 3
    for path in meshes:
        cloud = read_input(path, count=256)
        assert 100 <= len(cloud.mesh.faces) <= 600
    (cloud_path,) = examples.glob("*.npy")
    cloud = read_input(cloud_path)
    assert not cloud.normals_estimated and len(cloud.points) >= 1024
