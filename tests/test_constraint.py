"""Decoding on the input mesh (backend.decoding.constraint): vertices from the input's candidates,
faces on its surface and on the decimation's edges, an oriented manifold by construction, closed
inputs closed at the end; with any model, even an untrained one."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.decoding.constraint import InputConstraint, input_constraint
from backend.decoding.pipeline import Generator
from backend.generation import generate
from backend.inputs import from_mesh
from backend.mesh.cleanup import mesh_report
from backend.mesh.surface import over_triangle
from backend.mesh.normalize import Normalization
from backend.options import GenerateOptions
from backend.tokenizer.grammar import GrammarState
from backend.tokenizer.vocab import OFFSET_START, PATCH_START


def box_constraint(dims=(1.0, 0.6, 0.4)) -> tuple[InputConstraint, np.ndarray]:
    box = trimesh.creation.box(dims)
    v = Normalization.fit(box.vertices).apply(box.vertices)
    return input_constraint(v, np.asarray(box.faces), 300)[1], v


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
    assert constraint._second(a).sum() == 6  # 3 edges and 3 face diagonals (a side's two triangles or their flip)


def test_over_triangle_is_the_face_not_a_band_around_it():
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


@pytest.mark.parametrize("mode", ["ar", "speculative"])
@pytest.mark.parametrize("shape", ["icosphere", "cylinder", "two_boxes"])
def test_an_untrained_model_makes_closed_inputs_watertight(untrained: Generator, mode: str, shape: str):
    """Whatever the model picks, the rules keep an oriented manifold and the fill closes it."""
    mesh = {"icosphere": lambda: trimesh.creation.icosphere(3),
            "cylinder": lambda: trimesh.creation.cylinder(0.4, 1.2, sections=40),
            "two_boxes": lambda: trimesh.util.concatenate([trimesh.creation.box((1, 1, 1)),
                                                          trimesh.creation.box((1, 1, 1)).apply_translation((2.5, 0, 0))]),
            }[shape]()
    cloud = from_mesh(mesh, count=1024)
    result = generate(untrained, cloud.points, cloud.normals,
                      GenerateOptions(mode=mode, faces=120, seed=2), mesh=cloud.source_mesh)
    report = mesh_report(result.vertices, result.faces)
    assert report["boundary_edges"] == 0 and report["nonmanifold_edges"] == 0 and report["flipped_edges"] == 0
    assert report["pieces"] == len(mesh.split(only_watertight=False))
    assert report["inward_patches"] == 0


def test_the_face_count_follows_the_target(untrained: Generator):
    sphere = trimesh.creation.icosphere(4)  # 5,120 triangles
    cloud = from_mesh(sphere, count=1024)
    for target in (60, 200):
        result = generate(untrained, cloud.points, cloud.normals, GenerateOptions(mode="ar", faces=target, seed=0),
                          mesh=cloud.source_mesh)
        assert abs(len(result.faces) - target) <= 0.15 * target
        assert result.stats["coverage"] >= 0.97


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
