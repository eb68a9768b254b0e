"""Every mesh a user may hand over ends in a valid, manifold, consistently wound output (or a clear
error when it has no surface): 200+ meshes of every awkward kind through the real pipeline, with
an untrained model so that the rules alone are tested (a trained one only picks among them)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.decoding.pipeline import Generator
from backend.generation import generate
from backend.inputs import from_mesh
from backend.mesh.cleanup import mesh_report
from backend.options import GenerateOptions


def grid(nx: int, ny: int, bend: float = 0.0) -> trimesh.Trimesh:
    x, y = np.meshgrid(np.linspace(0, 1, nx), np.linspace(0, 1, ny), indexing="ij")
    vertices = np.stack([x.ravel(), y.ravel(), bend * np.sin(3 * x.ravel())], axis=1)
    i = np.arange((nx - 1) * (ny - 1))
    a = (i // (ny - 1)) * ny + i % (ny - 1)
    faces = np.concatenate([np.stack([a, a + ny, a + 1], 1), np.stack([a + 1, a + ny, a + ny + 1], 1)])
    return trimesh.Trimesh(vertices, faces, process=False)


def with_holes(mesh: trimesh.Trimesh, rng: np.random.Generator, share: float) -> trimesh.Trimesh:
    keep = rng.random(len(mesh.faces)) >= share
    keep[0] = True
    return trimesh.Trimesh(mesh.vertices, mesh.faces[keep], process=False)


def non_manifold() -> trimesh.Trimesh:
    """Three triangles on one edge, plus a bow tie (two fans meeting at one vertex)."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, -1, 0], [0.5, 0, 1],
                         [2, 1, 0], [2, -1, 0]], float)
    faces = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4], [1, 5, 6]])
    return trimesh.Trimesh(vertices, faces, process=False)


def degenerate(rng: np.random.Generator) -> trimesh.Trimesh:
    """A box plus zero-area, repeated and doubled faces."""
    box = trimesh.creation.box()
    faces = np.concatenate([box.faces, box.faces[:3], box.faces[:2, ::-1], [[0, 0, 1], [2, 2, 2]]])
    return trimesh.Trimesh(box.vertices + rng.normal(0, 1e-9, box.vertices.shape), faces, process=False)


def cases() -> list[tuple[str, trimesh.Trimesh, int]]:
    rng = np.random.default_rng(7)
    made: list[tuple[str, trimesh.Trimesh, int]] = []
    for n in (2, 3, 4, 5, 8, 11, 12, 13, 16, 23, 32):  # sheets from 4 vertices up, around small counts
        made.append((f"grid{n}x{n}", grid(n, n, bend=0.2 * (n % 3)), int(rng.integers(4, 300))))
    for n in (2, 3, 10, 60):
        made.append((f"strip{n}", grid(n, 2), 50))
    made.append(("grid317x317", grid(317, 317, bend=0.3), 400))  # 100k vertices
    for subdivisions in range(5):
        for target in (4, 20, 100, 300):  # the candidate count around and above the mesh's own
            made.append((f"ico{subdivisions}-{target}", trimesh.creation.icosphere(subdivisions), target))
    for sections in (3, 8, 40, 127, 128, 129, 200):
        made.append((f"cylinder{sections}", trimesh.creation.cylinder(0.3, 1.0, sections=sections), 150))
    for ratio in (1, 5, 20, 60, 200):
        made.append((f"slab{ratio}", trimesh.creation.box((1.0, 1.0 / ratio, 0.5)), 60))
    for count in (2, 3, 6):
        pieces = [trimesh.creation.box((0.3, 0.3, 0.3)).apply_translation((i * 0.5, (i % 2) * 0.4, 0)) for i in range(count)]
        made.append((f"pieces{count}", trimesh.util.concatenate(pieces), 40 * count))
    made.append(("pieces_mixed", trimesh.util.concatenate([trimesh.creation.icosphere(2), grid(6, 6).apply_translation((2, 0, 0))]), 200))
    made.append(("torus", trimesh.creation.torus(1.0, 0.3), 200))
    made.append(("non_manifold", non_manifold(), 20))
    while len(made) < 200:  # random holes, random counts, random non-uniform scale
        k = len(made)
        base = [trimesh.creation.icosphere(2), trimesh.creation.box(), trimesh.creation.cylinder(0.4, 1.0, sections=24),
                trimesh.creation.torus(1.0, 0.25, major_sections=24, minor_sections=8), grid(9, 7, bend=0.4)][k % 5]
        mesh = with_holes(base, rng, float(rng.choice([0.0, 0.05, 0.3]))) if k % 3 else base.copy()
        mesh.apply_scale(rng.uniform(0.2, 5.0, size=3))
        if k % 11 == 0:
            mesh = degenerate(rng)
        made.append((f"random{k}", mesh, int(rng.integers(4, 400))))
    return made


CASES = cases()


def test_the_suite_is_at_least_two_hundred_meshes():
    assert len(CASES) >= 200


@pytest.mark.parametrize("name, mesh, target", CASES, ids=[c[0] for c in CASES])
def test_every_mesh_ends_in_a_manifold_consistent_output(untrained: Generator, name: str, mesh: trimesh.Trimesh,
                                                         target: int):
    cloud = from_mesh(mesh, count=512)
    result = generate(untrained, cloud.points, cloud.normals,
                      GenerateOptions(mode="ar", faces=target, max_faces=600, seed=len(name)), mesh=cloud.source_mesh)
    assert len(result.faces) > 0 and result.stats["valid"]  # every one of these has a surface
    report = mesh_report(result.vertices, result.faces)
    assert report["nonmanifold_edges"] == 0 and report["flipped_edges"] == 0, report
