"""The candidates' layout (backend.mesh.layout): a quad remesh for quad output where it keeps the
shape, the decimation otherwise; decoded triangles on a quad layout pair back into its quads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend.decoding.constraint import candidate_edges
from backend.decoding.pipeline import Generator
from backend.generation import generate
from backend.inputs import from_mesh
from backend.mesh.candidates import candidate_grid
from backend.mesh.cleanup import mesh_report
import backend.mesh.layout as layout_module
from backend.mesh.layout import _split, choose_layout, quad_layout
from backend.mesh.quads import join_triangles
from backend.mesh.quantize import quantize_coords
from backend.options import GenerateOptions

pytest.importorskip("pyinstantmeshes")
REPO_ROOT = Path(__file__).resolve().parents[1]


def _edge_faces(faces: np.ndarray) -> dict[tuple[int, int], int]:
    count: dict[tuple[int, int], int] = {}
    for face in faces.tolist():
        for u, v in zip(face, face[1:] + face[:1]):
            count[(min(u, v), max(u, v))] = count.get((min(u, v), max(u, v)), 0) + 1
    return count


def test_split_cuts_quads_along_the_shorter_diagonal_and_fans_the_rest():
    positions = np.array([[0, 0, 0], [2, 0, 0], [2.2, 1, 0], [0, 1, 0], [1, 2, 0], [3, 0, 0]], float)
    layout = _split(positions, [[0, 1, 2, 3], [3, 2, 4], [1, 5, 2, 4, 3]])
    assert layout.kind == "remesh quads"
    assert [sorted(d) for d in layout.diagonals.tolist()] == [[1, 3]]  # 1-3 is shorter than 0-2
    assert len(layout.faces) == 2 + 1 + 3
    assert {tuple(sorted(f)) for f in layout.faces[:2].tolist()} == {(0, 1, 3), (1, 2, 3)}


def test_a_sphere_remeshes_to_quads_whose_diagonals_join_two_triangles():
    sphere = trimesh.creation.icosphere(4)
    layout = quad_layout(sphere.vertices, sphere.faces, 150)
    assert layout is not None and 100 <= len(layout.faces) / 2 <= 220
    edges = _edge_faces(layout.faces)
    assert all(edges[(min(a, b), max(a, b))] == 2 for a, b in layout.diagonals.tolist())
    assert join_triangles(layout.vertices, layout.faces).quad_fraction > 0.7
    # on the sphere: every vertex within 1 % of the radius
    assert np.abs(np.linalg.norm(layout.vertices, axis=1) - 1).max() < 0.01


def test_a_quad_layout_flips_only_its_diagonals():
    sphere = trimesh.creation.icosphere(4)
    layout = quad_layout(sphere.vertices * 0.9, sphere.faces, 100)
    cells = candidate_grid(layout.vertices, len(layout.vertices))
    graph = candidate_edges(cells, layout)
    assert len(graph.flips) > 0
    # a flip joins the two corners of a layout quad that its diagonal does not: both lie in the
    # two triangles on that diagonal (in candidate rows: the layout's vertices on the grid)
    row = {tuple(c): i for i, c in enumerate(cells.tolist())}
    rows = np.array([row[tuple(c)] for c in quantize_coords(layout.vertices).tolist()])
    quads = {frozenset(rows[np.concatenate([f for f in layout.faces if a in f and b in f])].tolist())
             for a, b in layout.diagonals.tolist()}
    assert all(any({u, v} <= q for q in quads) for u, v in graph.flips.tolist())


def test_the_decimation_stays_without_quads_for_a_low_poly_input_or_a_sharp_one():
    sphere = trimesh.creation.icosphere(4)
    assert choose_layout(sphere.vertices, sphere.faces, 300, quads=False).diagonals is None
    box = trimesh.creation.box((1, 0.6, 0.4))
    assert choose_layout(box.vertices, box.faces, 300, quads=True).kind == "decimation quads"  # 12 faces
    dense_box = box.subdivide().subdivide().subdivide()  # 768 faces, sharp edges a remesh rounds
    assert choose_layout(dense_box.vertices, dense_box.faces, 200, quads=True).kind == "decimation quads"


@pytest.mark.parametrize("layout", ["decimation quads", "remesh quads"])
def test_decoded_triangles_pair_back_into_the_layout_quads(untrained: Generator, monkeypatch, layout: str):
    """Whatever an untrained model picks, quad output stays watertight and its triangles pair up;
    "remesh quads" forces the remesh (the shape check would keep the decimation on this small sphere)."""
    monkeypatch.setattr(layout_module, "QUAD_SHAPE_SLACK", float("inf") if layout == "remesh quads" else 0.0)
    sphere = trimesh.creation.icosphere(4)  # 5,120 triangles
    cloud = from_mesh(sphere, count=1024)
    result = generate(untrained, cloud.points, cloud.normals,
                      GenerateOptions(mode="ar", faces=240, quads=True, seed=0), mesh=cloud.source_mesh)
    assert result.stats["layout"] == layout
    report = mesh_report(result.vertices, result.faces)
    assert report["boundary_edges"] == 0 and report["nonmanifold_edges"] == 0 and report["flipped_edges"] == 0
    assert abs(len(result.faces) - 240) <= 0.15 * 240
    # as many quads as the layout itself has, near enough (the fill and the greedy join differ a little)
    joinable = choose_layout(sphere.vertices, sphere.faces, 240, quads=True)
    layout_quads = len(joinable.diagonals) / (len(joinable.faces) - len(joinable.diagonals))
    assert join_triangles(result.vertices, result.faces).quad_fraction >= 0.9 * layout_quads


def test_the_remesher_does_not_write_into_stats_on_stdout(tmp_path, tiny_model_dir):
    path = tmp_path / "sphere.obj"
    trimesh.creation.icosphere(4).export(path)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-m", "backend", "generate", str(path), "-o", str(tmp_path / "out.obj"),
                           "--model", str(tiny_model_dir), "--device", "cpu", "--ar", "--quads", "--faces", "60",
                           "--max-faces", "30", "--stats-json", "-"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["layout"] in ("remesh quads", "decimation quads")
