"""Procedural families, registry seeds/splits, dataset shards and the `specmesh data` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend.data import registry
from backend.data.dataset import MeshDataset, build, make_item
from backend.data.registry import FAMILY_NAMES, check_mesh, make_mesh, sample_family, split_seeds
from backend.data.retriangulate import delaunay_flip
from backend.mesh.quantize import quantize_coords

SEEDS = range(4)
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_family_meshes_are_clean(family):
    for seed in SEEDS:
        mesh = make_mesh(family, seed)
        assert registry.MIN_FACES <= len(mesh.faces) <= registry.MAX_FACES
        assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
        assert mesh.area_faces.min() > 1e-8
        assert np.allclose(mesh.vertices.min(0) + mesh.vertices.max(0), 0, atol=1e-9)  # bbox centred
        assert np.isclose(np.ptp(mesh.vertices, axis=0).max(), 1.9)
        q = quantize_coords(mesh.vertices)
        assert len(np.unique(q, axis=0)) == len(q)  # survives 7-bit quantization
        assert check_mesh(mesh) is None


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_family_is_deterministic_and_varied(family):
    a, b = make_mesh(family, 7), make_mesh(family, 7)
    assert np.array_equal(a.faces, b.faces) and np.array_equal(a.vertices, b.vertices)
    others = [make_mesh(family, s) for s in (8, 9)]
    assert not any(len(o.vertices) == len(a.vertices) and np.allclose(o.vertices, a.vertices) for o in others)


def test_family_streams_are_independent():
    draws = {f: registry.family_rng(f, 3).random(4) for f in FAMILY_NAMES}
    assert len({tuple(d) for d in draws.values()}) == len(FAMILY_NAMES)
    # Keyed by name, not by position: the stream does not depend on the registry's order.
    assert np.array_equal(registry.family_rng("chair", 3).random(4), draws["chair"])


def test_sample_family_covers_all_and_is_deterministic():
    picks = [sample_family(s) for s in range(800)]
    assert picks == [sample_family(s) for s in range(800)]
    counts = np.array([picks.count(f) for f in FAMILY_NAMES])
    assert counts.min() > 800 / len(FAMILY_NAMES) / 3


def test_splits_never_overlap():
    train = split_seeds("train", 1000)
    val, test = split_seeds("val", 1000), split_seeds("test", 1000)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert np.array_equal(split_seeds("train", 5, start=10), np.arange(10, 15))
    with pytest.raises(ValueError, match="split"):
        split_seeds("holdout", 3)
    with pytest.raises(ValueError, match="outside"):
        split_seeds("train", 10, start=registry.SPLIT_SIZE - 5)


def test_make_mesh_rejects_unknown_family():
    with pytest.raises(ValueError, match="unknown family"):
        make_mesh("teapot", 0)


def test_check_mesh_rejects_bad_meshes():
    box = registry.normalize(trimesh.creation.icosphere(subdivisions=1))
    assert check_mesh(box) is None
    open_box = trimesh.Trimesh(box.vertices, box.faces[:-1], process=False)
    assert "closed" in check_mesh(open_box)
    inside_out = trimesh.Trimesh(box.vertices, box.faces[:, ::-1], process=False)
    assert "closed" in check_mesh(inside_out)
    speck = trimesh.creation.box((0.005, 0.005, 0.005))
    speck.apply_translation((0.3, 0.3, 0.3))  # well inside one quantization cell
    tiny = trimesh.util.concatenate([box, speck])
    assert "merge" in check_mesh(tiny)
    big = registry.normalize(trimesh.creation.icosphere(subdivisions=4))
    assert "faces outside" in check_mesh(big)


def test_delaunay_flip_removes_slivers_without_moving_vertices():
    # A flat ellipse cap fanned from one vertex into slivers; flips give a fatter triangulation.
    n = 12
    a = 2 * np.pi * np.arange(n) / n
    outline = np.stack([np.cos(a), 0.2 * np.sin(a)], axis=1)
    fan = np.array([(0, k, k + 1) for k in range(1, n - 1)])
    mesh = trimesh.creation.extrude_triangulation(outline, fan, height=0.3)
    mesh = trimesh.Trimesh(mesh.vertices, mesh.faces)
    flipped = delaunay_flip(mesh)

    def min_angle(m):
        return trimesh.triangles.angles(m.triangles).min()

    assert flipped.is_watertight and flipped.is_winding_consistent
    assert np.array_equal(flipped.vertices, mesh.vertices)
    assert np.isclose(flipped.volume, mesh.volume)
    assert min_angle(flipped) > 2 * min_angle(mesh)


def test_build_and_read_back(tmp_path):
    out = build(40, 5, tmp_path / "ds", workers=2, shard_size=16, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["count"] == 40 and meta["seed"] == 5 and meta["families"] == FAMILY_NAMES
    assert meta["shards"] == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    with np.load(out / "shard-00000.npz", allow_pickle=False) as shard:
        assert shard["vertices"].dtype == np.float32 and shard["faces"].dtype == np.int32
        assert shard["tokens"].dtype == np.int16 and shard["family"].dtype == np.int16
        assert shard["vertex_offsets"].dtype == np.int64 and len(shard["token_offsets"]) == 17
    data = MeshDataset(out)
    assert len(data) == 40
    seeds = split_seeds("train", 40, 5)
    for i in (0, 15, 16, 39, -1):
        record = data[i]
        seed = int(seeds[i])
        assert record.seed == seed and record.family == sample_family(seed)
        mesh = make_mesh(record.family, seed)
        assert np.allclose(record.vertices, mesh.vertices, atol=1e-6)
        assert np.array_equal(record.faces, mesh.faces)
        assert np.array_equal(record.tokens, make_item(seed)[2])
    with pytest.raises(IndexError):
        data[40]


def test_serial_build_matches_parallel(tmp_path):
    a = MeshDataset(build(6, 0, tmp_path / "a", workers=1, progress=False))
    b = MeshDataset(build(6, 0, tmp_path / "b", workers=2, progress=False))
    assert all(np.array_equal(a[i].tokens, b[i].tokens) for i in range(6))


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.json"):
        MeshDataset(tmp_path)


def test_tokens_round_trip():
    from backend.tokenizer.bpt import decode, encode_mesh, face_set, normalize_and_quantize
    from backend.tokenizer.vocab import EOS

    for k, family in enumerate(FAMILY_NAMES):
        mesh = make_mesh(family, 100 + k)
        tokens = encode_mesh(mesh)
        qmesh, _ = normalize_and_quantize(mesh)
        assert len(qmesh.faces) == len(mesh.faces)  # nothing merged or dropped by quantization
        assert tokens[-1] == EOS and face_set(decode(tokens)) == face_set(qmesh)


def test_cli_build_and_preview(tmp_path):
    env_python = sys.executable
    run = subprocess.run([env_python, "-m", "backend", "data", "build", "--count", "8", "--seed", "0",
                          "--out", str(tmp_path / "ds"), "--workers", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "meshes/s" in run.stdout and len(MeshDataset(tmp_path / "ds")) == 8
    run = subprocess.run([env_python, "-m", "backend", "data", "preview", "--out", str(tmp_path / "pv"),
                          "--per-family", "1", "--families", "chair", "pipe"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "pv" / "chair_0.obj").is_file() and (tmp_path / "pv" / "pipe_0.obj").is_file()
    assert (tmp_path / "pv" / "contact_sheet.png").stat().st_size > 1000
    bad = subprocess.run([env_python, "-m", "backend", "data", "build", "--count", "0", "--out", str(tmp_path / "x")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "count" in bad.stderr
