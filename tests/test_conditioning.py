"""Conditioning designs: vertex candidates from the input mesh, the point-token context, warm
starts across designs and the condition-use diagnostic."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import torch
import trimesh

from backend.data.dataset import build
from backend.decoding.pipeline import GenerateOptions, Generator
from backend.mesh.candidates import PAD, candidate_grid, decimated_vertices, densified
from backend.mesh.normalize import Normalization
from backend.model.config import ModelConfig, load_preset
from backend.model.decoder import MeshTransformer
from backend.model.io import init_from, save_model
from backend.training.condition_use import TOKEN_CLASSES, condition_gap, mesh_batches
from backend.training.pretrain import TrainOptions, train
from backend.training.runtime import Runtime


def tiny(**overrides) -> ModelConfig:
    return ModelConfig.from_dict({**load_preset("tiny").to_dict(), **overrides})


def candidate_model(count: int = 32) -> MeshTransformer:
    torch.manual_seed(0)
    return MeshTransformer(tiny(condition="points", n_context_points=64, n_candidates=count)).eval()


def test_low_poly_input_gives_its_own_corners():
    box = trimesh.creation.box((1.0, 2.0, 0.5))
    got = decimated_vertices(box.vertices, box.faces, 32)
    assert sorted(map(tuple, np.round(got, 6))) == sorted(map(tuple, np.round(box.vertices, 6)))


def test_dense_input_is_decimated_to_its_corners():
    box = trimesh.creation.box((1.0, 1.0, 1.0)).subdivide().subdivide().subdivide()
    assert len(box.vertices) > 300
    got = decimated_vertices(box.vertices, box.faces, 64)
    assert len(got) <= 64
    for corner in trimesh.creation.box((1.0, 1.0, 1.0)).vertices:  # QEM keeps every corner
        assert np.linalg.norm(got - corner, axis=1).min() < 1e-4


def test_densified_copy_stays_on_the_surface():
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    v, f = densified(box.vertices, box.faces, np.random.default_rng(0), jitter=0.002)
    assert len(f) > len(box.faces)
    assert np.abs(np.abs(v).max(axis=1) - 0.5).max() < 0.02


def test_candidate_grid_is_unique_cells_padded():
    cells = candidate_grid(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1e-4], [0.5, -0.5, 0.9]]), 5)
    assert cells.shape == (5, 3)
    assert (cells[:2] != PAD).all() and (cells[2:] == PAD).all()
    assert candidate_grid(np.zeros((0, 3)), 4).tolist() == [[PAD] * 3] * 4


def test_candidates_reach_the_decoder():
    model = candidate_model()
    points = torch.rand(1, 256, 3) * 2 - 1
    normals = torch.nn.functional.normalize(torch.randn(1, 256, 3), dim=-1)
    empty = model.encode_points(points, normals)
    assert empty.shape == (1, 64 + 32, model.config.d_model)
    cells = torch.full((1, 32, 3), PAD)
    cells[0, :8] = torch.randint(0, 128, (8, 3))
    filled = model.encode_points(points, normals, cells)
    tokens = torch.tensor([[5121, 3, 600]])
    with torch.no_grad():
        a, _ = model(tokens, empty)
        b, _ = model(tokens, filled)
    assert not torch.allclose(a, b)


def test_generator_reads_candidates_from_a_mesh_input():
    model = candidate_model()
    generator = Generator(model, None, model.config)
    box = trimesh.creation.box((1.0, 2.0, 0.5))
    points, normals = trimesh.sample.sample_surface(box, 512, seed=0)[0], None
    _, with_mesh, constraint = generator.encode(points, normals, GenerateOptions(), mesh=(box.vertices, box.faces))
    _, bare, _ = generator.encode(points, normals, GenerateOptions())
    assert constraint is not None
    assert not torch.allclose(with_mesh, bare)
    result = list(generator.stream(points, normals, GenerateOptions(mode="ar", max_faces=5),
                                   mesh=(box.vertices, box.faces)))
    assert result[-1].stats["tokens"] > 0


def test_warm_start_keeps_shared_weights(tmp_path: Path):
    torch.manual_seed(1)
    source = MeshTransformer(tiny(tie_embeddings=True, factorized_vocab=True))
    save_model(tmp_path, source)
    torch.manual_seed(2)
    target = MeshTransformer(tiny(tie_embeddings=True, factorized_vocab=True, condition="points",
                                  n_context_points=64, n_candidates=16))
    new = init_from(target, tmp_path)
    assert new == ["encoder.candidates.empty", "encoder.candidates.proj.bias", "encoder.candidates.proj.weight"]
    for name, tensor in target.state_dict().items():
        if name not in new:
            assert torch.equal(tensor, source.state_dict()[name]), name


def test_condition_gap_is_zero_for_identical_conditions_and_reported_per_class():
    model = candidate_model()
    box = trimesh.creation.box((1.0, 2.0, 0.5))
    v = Normalization.fit(box.vertices).apply(box.vertices)
    same = mesh_batches([(v, box.faces), (v, box.faces)], model, seed=0)
    # one batch, two copies of one mesh: but each copy samples its own points, so give both the same
    same[0]["points"][1] = same[0]["points"][0]
    same[0]["normals"][1] = same[0]["normals"][0]
    report = condition_gap(model, same)
    assert set(report) == set(TOKEN_CLASSES)
    assert all(abs(r["gap"]) < 1e-4 for r in report.values())
    assert report["offset"]["tokens"] > 0 and report["eos"]["tokens"] == 2
    # Two different meshes: each sequence now scores against the other's condition.
    prism = trimesh.creation.cylinder(radius=0.5, height=1.0, sections=5)
    w = Normalization.fit(prism.vertices).apply(prism.vertices)
    mixed = condition_gap(model, mesh_batches([(v, box.faces), (w, prism.faces)], model, seed=0))
    assert any(abs(r["gap"]) > 1e-3 for r in mixed.values())


def test_candidate_model_trains_and_logs_the_gap(tmp_path: Path):
    data = tmp_path / "data"
    build(12, 0, data, workers=1, progress=False)
    cfg = tiny(condition="points", n_context_points=64, n_candidates=32, n_points=128)
    opts = TrainOptions(data=str(data), steps=4, batch_size=4, warmup=1, workers=0, log_every=1,
                        val_every=2, checkpoint_minutes=0, val_fraction=0.34)
    train(opts, cfg, tmp_path / "run", Runtime(torch.device("cpu")), threading.Event())
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    gaps = [l["condition_gap"] for l in lines if "val_loss" in l]
    assert gaps and set(gaps[-1]) == set(TOKEN_CLASSES)
