"""Normalization, quantization, surface sampling and the CD/HD metrics."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.mesh.metrics import chamfer_hausdorff, noise_floor
from backend.mesh.normalize import Normalization
from backend.mesh.quantize import dequantize, quantize_coords, quantize_mesh
from backend.mesh.sample import sample_surface


def test_normalization_fits_and_inverts():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 3)) * [3, 1, 0.5] + [10, -4, 2]
    norm = Normalization.fit(v)
    t = norm.apply(v)
    extent = t.max(axis=0) - t.min(axis=0)
    assert extent.max() == pytest.approx(1.9)
    assert np.allclose(t.max(axis=0) + t.min(axis=0), 0)  # bounding box centred
    assert np.allclose(norm.invert(t), v)


@pytest.mark.parametrize("bad", [np.zeros((0, 3)), np.ones((4, 3)), np.array([[0, 0, np.nan], [1, 1, 1]])])
def test_normalization_rejects_degenerate_input(bad):
    with pytest.raises(ValueError):
        Normalization.fit(bad)


def test_quantize_formula():
    t = np.array([-1.0, -0.95, 0.0, 0.95, 1.0])
    assert quantize_coords(t).tolist() == [0, 3, 64, 124, 127]
    # dequantize gives cell centres, which quantize back to the same cell
    q = np.arange(128)
    assert np.array_equal(quantize_coords(dequantize(q)), q)


def test_quantize_mesh_merges_and_cleans():
    v = np.array([[0, 0, 0], [0.001, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0.9, 0.9, 0.9]], float)
    f = np.array([[0, 2, 3], [1, 2, 3], [0, 1, 2], [3, 2, 0]])  # merged duplicate, degenerate, flipped duplicate
    q = quantize_mesh(v, f)
    assert q.faces.shape == (1, 3) and q.vertices.shape == (3, 3)  # unused vertex 4 dropped
    assert q.vertices.dtype == np.int64 and q.faces.dtype == np.int64
    assert np.array_equal(q.vertices[q.faces[0]], quantize_coords(v[[0, 2, 3]]))  # first face kept, same order


def test_quantize_mesh_errors():
    with pytest.raises(ValueError, match="NaN"):
        quantize_mesh(np.array([[np.inf, 0, 0], [0, 0, 0], [0, 1, 0]]), [[0, 1, 2]])
    with pytest.raises(ValueError, match="indices"):
        quantize_mesh(np.zeros((3, 3)), [[0, 1, 3]])


def test_sampling_is_area_weighted_and_seeded():
    # two unit-height triangles, the second with 3x the area
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 5], [3, 0, 5], [0, 1, 5]], float)
    f = np.array([[0, 1, 2], [3, 4, 5]])
    p, n = sample_surface(v, f, 4000, seed=3)
    assert p.shape == n.shape == (4000, 3) and p.dtype == np.float32
    assert np.mean(p[:, 2] > 2.5) == pytest.approx(0.75, abs=0.03)
    assert np.allclose(n, [0, 0, 1])
    p2, _ = sample_surface(v, f, 4000, seed=3)
    p3, _ = sample_surface(v, f, 4000, seed=4)
    assert np.array_equal(p, p2) and not np.array_equal(p, p3)
    on_lower = p[p[:, 2] < 2.5]
    assert (on_lower[:, 0] + on_lower[:, 1] <= 1 + 1e-6).all() and (on_lower >= -1e-6).all()


def test_sampling_errors():
    with pytest.raises(ValueError, match="surface area"):
        sample_surface(np.zeros((3, 3)), [[0, 1, 2]], 10)


def test_metrics_identical_vs_shifted():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    cd0, hd0 = noise_floor(sphere)
    assert (cd0, hd0) == chamfer_hausdorff(sphere, sphere)
    assert 0 < cd0 < 0.15 and hd0 < 0.2
    # the metric normalizes both meshes, so a pure translation or scale changes nothing ...
    moved = sphere.copy().apply_translation([5, 0, 0]).apply_scale(3)
    assert chamfer_hausdorff(sphere, moved) == pytest.approx((cd0, hd0), rel=1e-4)
    # ... but a different shape does
    box = trimesh.creation.box()
    cd, hd = chamfer_hausdorff(sphere, box)
    assert cd > 2 * cd0 and hd > hd0
