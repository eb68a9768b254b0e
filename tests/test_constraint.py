"""Decoding on the input mesh (backend.decoding.constraint): vertices from the input's candidates,
faces on its surface, no stacked faces, EOS only once the input is covered; with any model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from backend.decoding.constraint import InputConstraint, input_constraint, over_triangle
from backend.decoding.pipeline import Generator
from backend.generation import generate
from backend.inputs import from_mesh
from backend.mesh.candidates import candidate_grid, decimated_vertices
from backend.mesh.normalize import Normalization
from backend.model.config import ModelConfig, load_preset
from backend.model.decoder import MeshTransformer
from backend.model.heads import build_heads
from backend.options import GenerateOptions
from backend.tokenizer.grammar import GrammarState
from backend.tokenizer.vocab import OFFSET_START, PATCH_START


@pytest.fixture(scope="module")
def untrained() -> Generator:
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict({**load_preset("tiny").to_dict(), "spec_heads": 2})
    model = MeshTransformer(cfg).eval()
    return Generator(model, build_heads(cfg, model.lm_head).eval(), cfg)


def box_constraint(dims=(1.0, 0.6, 0.4)) -> tuple[InputConstraint, np.ndarray]:
    box = trimesh.creation.box(dims)
    v = Normalization.fit(box.vertices).apply(box.vertices)
    cells = candidate_grid(decimated_vertices(v, box.faces, 16), 16)
    return input_constraint(cells, v, np.asarray(box.faces)), v


def test_first_vertices_are_candidates_and_eos_waits_for_coverage():
    constraint, _ = box_constraint()
    state = GrammarState()
    start = constraint.restrict(state.sampling_mask(), state)
    assert start.sum() == 8  # one patch start per corner's block
    state.advance(int(np.flatnonzero(start)[0]))
    centre = constraint.restrict(state.sampling_mask(), state)
    assert centre.sum() == 1 and OFFSET_START <= np.flatnonzero(centre)[0] < PATCH_START
    assert not constraint.may_end


def test_faces_through_the_inside_are_refused():
    constraint, v = box_constraint((1.0, 1.0, 1.0))
    corner = {tuple(np.round(p, 3)): i for i, p in enumerate(constraint.positions)}
    ids = [corner[min(corner, key=lambda k: np.linalg.norm(np.array(k) - p))] for p in v]
    a, b = ids[0], ids[7]  # opposite corners: their edge is the cube's diagonal
    assert not constraint._second(a)[b]
    assert constraint._second(a).sum() == 6  # 3 edges and 3 face diagonals


def test_coverage_grows_only_over_the_face():
    tri = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    points = np.array([[0.2, 0.2, 0.01], [0.8, 0.8, 0.0], [0.2, 0.2, 0.5]])
    assert over_triangle(points, tri, 0.05).tolist() == [True, False, False]


@pytest.mark.parametrize("mode", ["ar", "speculative"])
def test_an_untrained_model_stays_on_a_box(untrained: Generator, mode: str):
    box = trimesh.creation.box((1.0, 0.6, 0.4))
    cloud = from_mesh(box, count=1024)
    result = generate(untrained, cloud.points, cloud.normals,
                      GenerateOptions(mode=mode, max_faces=40, seed=1), mesh=cloud.source_mesh)
    assert len(result.faces) > 0
    corners = np.asarray(box.vertices)
    used = result.vertices[np.unique(result.faces)]
    # every vertex is a box corner (up to the 7-bit grid)
    assert np.linalg.norm(used[:, None] - corners[None], axis=2).min(axis=1).max() < 0.01
    if result.stats["stop_reason"] == "eos":
        assert result.stats["coverage"] >= 0.95


def test_free_vertices_turns_the_constraint_off(untrained: Generator):
    box = trimesh.creation.box((1.0, 0.6, 0.4))
    cloud = from_mesh(box, count=1024)
    result = generate(untrained, cloud.points, cloud.normals,
                      GenerateOptions(mode="ar", max_faces=10, seed=1, snap=False), mesh=cloud.source_mesh)
    assert result.stats["coverage"] is None


def test_best_of_n_keeps_the_closest_attempt(untrained: Generator):  # what generate and serve share
    box = trimesh.creation.box((1.0, 0.6, 0.4))
    cloud = from_mesh(box, count=1024)
    result = generate(untrained, cloud.points, cloud.normals,
                      GenerateOptions(mode="ar", max_faces=20, seed=3, attempts=3), mesh=cloud.source_mesh)
    scores = result.stats["attempt_chamfer"]
    assert len(scores) == 3 and result.stats["attempt_kept"] == int(np.argmin(scores))
    single = generate(untrained, cloud.points, cloud.normals,
                      GenerateOptions(mode="ar", max_faces=20, seed=3 + result.stats["attempt_kept"]),
                      mesh=cloud.source_mesh)
    assert np.array_equal(single.faces, result.faces)
