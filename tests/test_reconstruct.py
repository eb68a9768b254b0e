"""Bare point clouds get a surface (backend.mesh.reconstruct) and are decoded on it like a mesh;
clouds with no surface to fit fall back to the model alone with a reason, never a traceback."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import trimesh

from addon_fixtures import load_addon_module, serve_argv, serve_env, wait_for
from backend.evaluation import input_noise_floor, measure
from backend.mesh.reconstruct import MAX_TRIANGLES, reconstruct
from backend.mesh.sample import sample_surface
from backend.options import GenerateOptions

needs_pymeshlab = pytest.mark.skipif(importlib.util.find_spec("pymeshlab") is None,
                                     reason="pymeshlab (specmesh[scans]) not installed")
TORUS = trimesh.creation.torus(1.0, 0.35)


@pytest.fixture(scope="module")
def torus_cloud() -> np.ndarray:
    """4,096 points of a torus, no normals: the issue's example (the model alone gave 22 faces)."""
    return sample_surface(np.asarray(TORUS.vertices), np.asarray(TORUS.faces), 4096, 0)[0]


def _cd_noise(mesh: trimesh.Trimesh) -> float:
    return measure(TORUS, mesh, input_noise_floor(TORUS, 0), 0)["noise_floor_ratio"]


@needs_pymeshlab
def test_torus_cloud_without_normals_gives_the_torus(torus_cloud) -> None:
    surface = reconstruct(torus_cloud)
    assert surface.mesh is not None and surface.reason.startswith("reconstructed (screened Poisson, ")
    assert 1000 < len(surface.faces) <= MAX_TRIANGLES
    result = trimesh.Trimesh(surface.vertices, surface.faces, process=False)
    assert _cd_noise(result) < 1.2  # measured 0.99: as close as sampling noise allows
    # MeshLab's oriented normals keep the inner side of the ring (outward-from-centroid ones flip it).
    assert result.volume == pytest.approx(TORUS.volume, rel=0.1)


@pytest.mark.parametrize("points, reason", [
    (np.c_[np.linspace(0, 1, 100), 2 * np.linspace(0, 1, 100), np.zeros(100)], "lie on a line"),
    (np.eye(3), "too few points"),
    (np.full((64, 3), np.nan), "NaN"),
])
def test_no_surface_says_why(points: np.ndarray, reason: str) -> None:
    surface = reconstruct(points)
    assert surface.mesh is None and surface.reason.startswith("model alone: ") and reason in surface.reason


def test_without_pymeshlab_the_model_alone_with_the_install_hint(torus_cloud, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pymeshlab", None)  # import fails as if not installed
    surface = reconstruct(torus_cloud)
    assert surface.mesh is None and "pip install 'specmesh[scans]'" in surface.reason


def _generate(generator, points: np.ndarray, **options) -> tuple[trimesh.Trimesh, dict]:
    from backend.generation import generate

    result = generate(generator, points, None, GenerateOptions(**options))
    return result.to_trimesh(), result.stats


@needs_pymeshlab
def test_bare_cloud_is_decoded_on_its_surface(untrained, torus_cloud) -> None:
    """Even a model that knows nothing covers the torus once decoding keeps to the surface."""
    output, stats = _generate(untrained, torus_cloud, faces=100)
    assert stats["surface"].startswith("reconstructed (screened Poisson")
    assert stats["coverage"] >= 0.95 and stats["faces"] >= 60
    assert _cd_noise(output) < 2.0
    # --free-vertices keeps today's model-alone path: no surface, no coverage.
    _, alone = _generate(untrained, torus_cloud, faces=100, snap=False, max_faces=30)
    assert "surface" not in alone and alone["coverage"] is None


def test_flat_line_falls_back_to_the_model_alone(untrained) -> None:
    line = np.c_[np.linspace(-1, 1, 200), np.linspace(-1, 1, 200), np.zeros(200)]
    _, stats = _generate(untrained, line, max_faces=10)
    assert stats["surface"].startswith("model alone: the points lie on a line") and stats["coverage"] is None


@needs_pymeshlab
def test_server_reconstructs_a_points_only_request(tiny_model_dir, tmp_path) -> None:
    """A request with points and normals but no mesh, through the add-on's client to `specmesh serve`."""
    points, normals = sample_surface(np.asarray(TORUS.vertices), np.asarray(TORUS.faces), 1024, 0)
    client = load_addon_module("client").BackendClient(serve_argv(tiny_model_dir), tmp_path / "backend.log",
                                                       env=serve_env(), startup_timeout=120)
    try:
        client.send({"op": "generate", "id": "scan", "points": np.round(points, 5).tolist(),
                     "normals": np.round(normals, 5).tolist(),
                     "faces": 60, "max_faces": 200})
        done = wait_for(client, lambda e: e["event"] in ("done", "error") and e.get("id") == "scan")[-1]
    finally:
        client.shutdown()
    assert done["event"] == "done", json.dumps(done)[:300]
    assert done["stats"]["surface"].startswith("reconstructed (screened Poisson")
    assert done["stats"]["coverage"] >= 0.9
