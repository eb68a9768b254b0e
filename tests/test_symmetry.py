"""Symmetry (backend/mesh/symmetry.py): a symmetric input comes back as its own mirror image,
welded on the plane and watertight; an asymmetric one is reported and decoded whole. Decoding
runs the untrained model, so what is checked is what the rules and the mirror guarantee."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from backend.commands.generate import quantization_step
from backend.generation import generate
from backend.inputs import from_mesh
from backend.mesh.halfedges import HalfEdges
from backend.mesh.cleanup import clean_mesh
from backend.mesh.normalize import Normalization
from backend.mesh.quantize import quantize_coords
from backend.mesh.symmetry import PLANE, PLANE_CELL, Mirror, check
from backend.options import GenerateOptions
from backend.server import protocol as P


def _capsule() -> trimesh.Trimesh:
    return trimesh.creation.capsule(height=1.0, radius=0.4, count=[24, 24])


def _lopsided() -> trimesh.Trimesh:
    """A cone lying along x: symmetric about y and z, not about x."""
    cone = trimesh.creation.cone(0.4, 1.2, sections=32)
    cone.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    return cone


def _decode(generator, mesh: trimesh.Trimesh, **options) -> tuple[trimesh.Trimesh, dict]:
    """Generate and clean as `specmesh generate` writes it."""
    cloud = from_mesh(mesh, 2048)
    result = generate(generator, cloud.points, cloud.normals, GenerateOptions(**options), mesh=cloud.source_mesh)
    step = quantization_step(cloud.points)
    cleaned = clean_mesh(result.vertices, result.faces, weld_distance=0.5 * step, plane_distance=0.25 * step,
                         points=cloud.points, normals=cloud.normals)
    return trimesh.Trimesh(cleaned.vertices, cleaned.faces, process=False), {**result.stats, **cleaned.stats}


def _mirror_map(mesh: trimesh.Trimesh, axis: int, coordinate: float) -> np.ndarray:
    """Each vertex's mirror image among the vertices (-1 where there is none within 1e-9 of the size)."""
    reflected = np.array(mesh.vertices)
    reflected[:, axis] = 2 * coordinate - reflected[:, axis]
    distance, index = cKDTree(mesh.vertices).query(reflected)
    return np.where(distance <= 1e-9 * mesh.scale, index, -1)


@pytest.mark.parametrize("shape, axis", [(lambda: trimesh.creation.icosphere(3), "x"), (_capsule, "z")])
def test_symmetric_input_is_its_own_mirror_image_and_watertight(untrained, shape, axis) -> None:
    mesh = shape()
    out, stats = _decode(untrained, mesh, faces=120, symmetry=axis)
    assert stats["symmetry"] == {"axis": axis, "applied": True, "deviation_steps": 0.0, "note": None}
    k = "xyz".index(axis)
    mirror = _mirror_map(out, k, Mirror.of(mesh.vertices, mesh.faces, axis).coordinate)
    assert (mirror >= 0).all()  # every vertex has its image, those on the plane are their own
    faces = {tuple(np.roll(f, -int(np.argmin(f)))) for f in out.faces.tolist()}
    images = {tuple(np.roll(f, -int(np.argmin(f)))) for f in mirror[out.faces[:, ::-1]].tolist()}
    assert faces == images  # the same faces, wound the same way
    # Closed input, closed output: no gap and no overlap on the plane, one consistent winding.
    assert (stats["boundary_edges"], stats["nonmanifold_edges"], stats["flipped_edges"]) == (0, 0, 0)
    assert out.is_watertight and out.is_winding_consistent and out.volume > 0
    side = out.vertices[out.faces, k] - Mirror.of(mesh.vertices, mesh.faces, axis).coordinate
    assert not ((side.min(axis=1) < -1e-9) & (side.max(axis=1) > 1e-9)).any()  # no face crosses the plane
    assert abs(len(out.faces) - 120) <= 0.25 * 120


def test_asymmetric_input_is_reported_and_decoded_whole(untrained) -> None:
    out, stats = _decode(untrained, _lopsided(), faces=80, symmetry="x")
    report = stats["symmetry"]
    assert report["applied"] is False and report["deviation_steps"] > 1
    assert report["note"].startswith("symmetry x not used: the input is not symmetric")
    assert len(out.faces) > 0 and stats["boundary_edges"] == 0


def test_check_measures_the_mirror_image_in_grid_steps() -> None:
    sphere = trimesh.creation.icosphere(3)
    assert check(sphere.vertices, sphere.faces, "y").deviation < 0.05
    cone = _lopsided()
    assert check(cone.vertices, cone.faces, "x").deviation > 5
    assert check(cone.vertices, cone.faces, "y").applied and check(cone.vertices, cone.faces, "z").applied


def test_the_plane_lands_on_a_grid_cell_that_is_its_own_image() -> None:
    points = np.random.default_rng(0).normal(size=(200, 3)) + [3.0, -2.0, 1.0]
    mirror = Mirror(axis=1, coordinate=-1.7)
    normalization = mirror.normalization(Normalization.fit(points))
    plane = normalization.apply(np.array([[0.0, -1.7, 0.0]]))[0, 1]
    assert plane == pytest.approx(PLANE, abs=1e-12) and quantize_coords(np.array([PLANE]))[0] == PLANE_CELL
    face = np.array([[10, PLANE_CELL, 20], [11, 70, 21], [12, 90, 40]])
    image = mirror.image(face)
    assert image.tolist() == [[12, 2 * PLANE_CELL - 90, 40], [11, 2 * PLANE_CELL - 70, 21], [10, PLANE_CELL, 20]]


def test_the_half_and_its_layout_keep_to_one_side_with_the_border_on_the_plane() -> None:
    sphere = trimesh.creation.icosphere(3)
    mirror = Mirror(axis=0, coordinate=0.0)
    vertices, faces = mirror.half(sphere.vertices * 0.9 + [PLANE, 0, 0], sphere.faces)
    assert vertices[:, 0].min() == PLANE and len(faces) > 0
    # A border vertex near the plane goes onto it; an inner one in the plane's cell moves off it.
    layout = np.array([[PLANE + 0.005, 0, 0], [PLANE + 0.004, 1, 0], [PLANE + 0.5, 0, 1], [PLANE + 0.3, 1, 1]])
    adjusted = mirror.adjust(layout, np.array([[0, 2, 3], [0, 3, 1]]))  # edge 0-3 is inner, vertices 0..3 border
    assert adjusted[[0, 1], 0].tolist() == [PLANE, PLANE] and adjusted[2:, 0].tolist() == layout[2:, 0].tolist()
    inner = mirror.adjust(np.array([[PLANE + 0.001, 0, 0.5], [PLANE + 0.5, 0, 0], [PLANE + 0.5, 1, 0],
                                    [PLANE + 0.5, 0, 1], [PLANE + 0.5, 1, 1]]),
                          np.array([[0, 1, 2], [0, 2, 4], [0, 4, 3], [0, 3, 1]]))
    assert quantize_coords(inner[:1, :1])[0, 0] == PLANE_CELL + 1


def test_seal_closes_a_notch_where_the_half_leaves_the_plane() -> None:
    # p (0) and q (1) lie on the plane; the half's border runs p -> a -> q around a notch at a (2).
    cells = np.array([[PLANE_CELL, 0, 0], [PLANE_CELL, 20, 0], [PLANE_CELL + 3, 10, 0], [80, 0, 0], [80, 20, 0]])
    mesh = HalfEdges(len(cells))
    for face in ((0, 2, 3), (2, 1, 4), (2, 4, 3)):
        mesh.add(face)
    made = Mirror(axis=0, coordinate=0.0).seal(mesh, cells, None)
    assert made[0].tolist() == cells[[1, 2, 0]].tolist()
    assert mesh.edge[0, 1] and mesh.made(1, 2, 0)  # the notch is closed by p -> q, on the plane


def test_chords_between_plane_vertices_are_forbidden_but_the_border_is_kept() -> None:
    cells = np.array([[PLANE_CELL, 0, 0], [PLANE_CELL, 10, 1], [PLANE_CELL, 20, 0], [80, 10, 0]])
    layout = np.array([[0, 1, 3], [1, 2, 3]])  # border 0-1-2 on the plane; 0-2 would be a flip
    edges, flips = np.ones((4, 4), dtype=bool), np.zeros((4, 4), dtype=bool)
    flips[0, 2] = flips[2, 0] = True
    Mirror(axis=0, coordinate=0.0).forbid_chords(cells, layout, edges, flips)
    assert not edges[0, 2] and not edges[2, 0] and not flips.any()
    assert edges[0, 1] and edges[1, 2] and edges[0, 3]


def test_protocol_takes_symmetry_and_refuses_other_axes() -> None:
    rows = np.random.default_rng(0).normal(size=(32, 3)).tolist()
    line = {"op": "generate", "id": "g", "points": rows, "normals": rows, "symmetry": "x", "protocol": 4}
    assert P.parse_request(json.dumps(line)).options == {"symmetry": "x"}
    with pytest.raises(P.ProtocolError, match="'symmetry' must be one of") as info:
        P.parse_request(json.dumps({**line, "symmetry": "w"}))
    assert info.value.code == P.INVALID_FIELD
    with pytest.raises(ValueError, match="symmetry"):
        GenerateOptions(symmetry="X")


def test_a_server_request_with_symmetry_decodes_one_half(untrained) -> None:
    from addon_fixtures import cloud
    from backend.server import Server
    from test_server import Capture, _wait_done

    sphere = trimesh.creation.icosphere(3)
    points, normals = cloud()
    out = Capture()
    server = Server(untrained, out)
    request = {"op": "generate", "id": "s", "points": points.tolist(), "normals": normals.tolist(), "faces": 80,
               "symmetry": "z", "mesh": {"vertices": sphere.vertices.tolist(), "faces": sphere.faces.tolist()}}
    assert server.handle_line(json.dumps(request).encode())
    done = _wait_done(out, "s")[-1]
    assert done["event"] == "done" and done["stats"]["symmetry"]["applied"] is True
    assert done["stats"]["boundary_edges"] == 0 and done["stats"]["faces"] % 2 == 0
