"""Clean-up (weld, duplicates, outward orientation) and triangles-to-quads on real meshes, with
the written files read back by trimesh."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.mesh.cleanup import clean_mesh, drop_duplicate_faces, mesh_report, orient_outward, weld
from backend.mesh.quads import join_triangles, write_polygons


def scramble(faces: np.ndarray, seed: int) -> np.ndarray:
    """Flip the winding of a random half of the faces."""
    flip = np.random.default_rng(seed).random(len(faces)) < 0.5
    return np.where(flip[:, None], faces[:, [0, 2, 1]], faces)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])


CLOSED = {
    "box": trimesh.creation.box(extents=(2.0, 1.0, 0.5)),
    "icosphere": trimesh.creation.icosphere(subdivisions=2),
    "torus": trimesh.creation.torus(major_radius=1.0, minor_radius=0.3, major_sections=12, minor_sections=8),
    "cylinder": trimesh.creation.cylinder(radius=0.5, height=2.0, sections=10),
}


@pytest.mark.parametrize("name", sorted(CLOSED))
@pytest.mark.parametrize("seed", [0, 1])
def test_closed_meshes_come_out_consistent_and_outward(name, seed):
    mesh = CLOSED[name]
    faces = scramble(mesh.faces, seed)
    before = mesh_report(mesh.vertices, faces)
    assert before["flipped_edges"] > 0
    oriented = orient_outward(mesh.vertices, faces)
    assert np.array_equal(np.sort(oriented, axis=1), np.sort(mesh.faces, axis=1))  # same triangles, same order
    result = trimesh.Trimesh(mesh.vertices, oriented, process=False)
    assert result.is_winding_consistent and result.volume == pytest.approx(mesh.volume)
    report = mesh_report(mesh.vertices, oriented)
    assert {k: v for k, v in report.items() if k != "sliver_fraction"} == {
        "pieces": 1, "boundary_edges": 0, "nonmanifold_edges": 0, "flipped_edges": 0,
        "closed_patches": 1, "inward_patches": 0}


def test_sliver_fraction_counts_triangles_under_ten_degrees():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.5, 0.05, 0]], float)
    assert mesh_report(vertices, np.array([[0, 1, 2]]))["sliver_fraction"] == 0.0
    assert mesh_report(vertices, np.array([[0, 1, 2], [0, 1, 3]]))["sliver_fraction"] == 0.5


def test_an_inside_out_mesh_is_turned_and_reported():
    box = CLOSED["box"]
    inverted = box.faces[:, [0, 2, 1]]
    assert mesh_report(box.vertices, inverted)["inward_patches"] == 1
    assert trimesh.Trimesh(box.vertices, orient_outward(box.vertices, inverted)).volume > 0


def test_pieces_are_oriented_each_on_its_own():
    """A box and a sphere far apart, and a second box touching the first along one edge only
    (a non-manifold edge): each closed patch ends up outward."""
    a = trimesh.creation.box()
    b = trimesh.creation.box()
    b.apply_translation((1.0, 1.0, 0.0))  # shares the edge x = y = 0.5 with a
    c = trimesh.creation.icosphere(subdivisions=1)
    c.apply_translation((5.0, 0.0, 0.0))
    mesh = trimesh.util.concatenate([a, b, c])
    mesh.merge_vertices()
    faces = scramble(mesh.faces, 3)
    faces[: len(a.faces)] = faces[: len(a.faces), [0, 2, 1]]  # the first box mostly inside out
    report = mesh_report(mesh.vertices, orient_outward(mesh.vertices, faces))
    assert report["pieces"] == 2 and report["nonmanifold_edges"] == 1
    assert report["closed_patches"] == 3 and report["inward_patches"] == 0 and report["flipped_edges"] == 0
    for part in trimesh.Trimesh(mesh.vertices, orient_outward(mesh.vertices, faces), process=False).split(
            only_watertight=False):
        assert part.volume > 0


def test_an_open_piece_faces_away_from_the_centre():
    """A box without its top: every face's normal points away from the box's centre."""
    box = CLOSED["box"]
    centres = box.vertices[box.faces].mean(axis=1)
    open_faces = box.faces[centres[:, 2] < 0.24]
    oriented = orient_outward(box.vertices, scramble(open_faces, 5))
    outward = np.einsum("ij,ij->i", face_normals(box.vertices, oriented), box.vertices[oriented].mean(axis=1))
    assert (outward > 0).all()
    report = mesh_report(box.vertices, oriented)
    assert report["boundary_edges"] == 4 and report["closed_patches"] == 0 and report["pieces"] == 1


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(8, 40))
def test_random_convex_hulls_come_out_outward(seed, n):
    hull = trimesh.convex.convex_hull(np.random.default_rng(seed).normal(size=(n, 3)))
    oriented = orient_outward(hull.vertices, scramble(hull.faces, seed))
    assert trimesh.Trimesh(hull.vertices, oriented, process=False).volume == pytest.approx(hull.volume)
    assert mesh_report(hull.vertices, oriented)["flipped_edges"] == 0


def test_weld_merges_close_vertices_and_drops_collapsed_faces():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1e-3, 0, 0], [1, 1, 0], [2, 0, 0]], float)
    faces = np.array([[0, 1, 2], [1, 4, 2], [0, 3, 2], [1, 5, 4]])
    welded, out, merged = weld(vertices, faces, distance=0.01)
    assert merged == 1 and len(welded) == 5 and len(out) == 3  # 0-3-2 collapsed
    assert weld(vertices, faces, distance=1e-3)[2] == 0  # strictly closer than the distance


def test_duplicates_of_either_winding_are_dropped():
    faces = np.array([[0, 1, 2], [2, 1, 0], [1, 2, 3], [3, 1, 2], [0, 1, 3]])
    kept, dropped = drop_duplicate_faces(faces)
    assert dropped == 2 and kept.tolist() == [[0, 1, 2], [1, 2, 3], [0, 1, 3]]


def test_clean_mesh_reports_what_it_did():
    box = CLOSED["box"]
    faces = scramble(box.faces, 7)
    faces = np.concatenate([faces, faces[:2, [0, 2, 1]]])  # a double-sided pair
    cleaned = clean_mesh(box.vertices, faces, weld_distance=1e-6)
    assert cleaned.stats["duplicate_faces"] == 2 and cleaned.stats["flipped_faces"] > 0
    assert cleaned.stats["pieces"] == 1 and cleaned.stats["inward_patches"] == 0
    assert trimesh.Trimesh(cleaned.vertices, cleaned.faces).volume == pytest.approx(box.volume)


def test_a_box_becomes_six_quads():
    box = CLOSED["box"]
    quads = join_triangles(box.vertices, orient_outward(box.vertices, box.faces))
    assert len(quads.quads) == 6 and len(quads.triangles) == 0 and quads.quad_fraction == 1.0
    for quad in quads.quads:  # each quad is a whole side: four corners on one plane
        corners = box.vertices[quad]
        assert np.ptp(corners, axis=0).min() == pytest.approx(0.0)


def test_non_planar_or_skewed_pairs_stay_triangles():
    assert len(join_triangles(*_tetrahedron()).quads) == 0  # every pair bends about 109.5 degrees
    # A sliver pair (corners near 10 and 170 degrees) is planar but far from rectangular.
    vertices = np.array([[0, 0, 0], [10, 0, 0], [11, 1, 0], [1, 1, 0]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    assert len(join_triangles(vertices, faces).quads) == 0
    assert len(join_triangles(vertices, faces, max_corner_deviation=85.0).quads) == 1


def _tetrahedron() -> tuple[np.ndarray, np.ndarray]:
    vertices = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float)
    return vertices, orient_outward(vertices, np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]]))


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
def test_quads_are_written_and_read_back(tmp_path, suffix):
    mesh = CLOSED["cylinder"]
    joined = join_triangles(mesh.vertices, orient_outward(mesh.vertices, scramble(mesh.faces, 1)))
    assert len(joined.quads) == 10  # the side: one quad per section; the caps' fans stay triangles
    path = tmp_path / f"quads{suffix}"
    write_polygons(path, joined)
    loaded = trimesh.load(path, process=False)  # trimesh splits each quad into two triangles
    assert len(loaded.faces) == len(joined.triangles) + 2 * len(joined.quads)
    assert loaded.is_winding_consistent and loaded.volume == pytest.approx(mesh.volume, rel=1e-5)
    if suffix == ".obj":
        sizes = [len(line.split()) - 1 for line in path.read_text().splitlines() if line.startswith("f ")]
        assert sizes.count(4) == 10 and sizes.count(3) == len(joined.triangles)


def test_quads_refuse_a_triangle_only_format(tmp_path):
    box = CLOSED["box"]
    with pytest.raises(ValueError, match="obj or .ply"):
        write_polygons(tmp_path / "x.glb", join_triangles(box.vertices, box.faces))


def _unit_box() -> tuple[np.ndarray, np.ndarray]:
    """Corners 0..7 = (x, y, z) bits; the top is 4 (0,0,1), 5 (1,0,1), 6 (1,1,1), 7 (0,1,1)."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                         [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
    sides = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
    faces = [t for a, b, c, d in sides for t in ((a, b, c), (a, c, d))]
    return vertices, np.array(faces)


def test_faces_covered_by_coplanar_faces_are_dropped_and_the_surface_is_kept():
    """A box whose top is drawn three times (two diagonals and a fan around its centre): the
    redundant copies go, the box is closed again, and every side becomes one quad."""
    from backend.mesh.cleanup import covered_faces

    vertices, faces = _unit_box()
    vertices = np.concatenate([vertices, [[0.5, 0.5, 1.0]]])  # 8: the top's centre
    extra = [(4, 5, 7), (5, 6, 7), (8, 4, 5), (8, 5, 6), (8, 6, 7), (8, 7, 4)]
    faces = scramble(np.concatenate([faces, extra]), 2)
    dropped = covered_faces(vertices, faces, plane_distance=1e-3)
    assert len(dropped) == 6  # the fan first (smallest), then two of the four diagonal halves
    kept = np.delete(faces, dropped, axis=0)
    assert trimesh.Trimesh(vertices, kept, process=False).area == pytest.approx(6.0)  # nothing uncovered
    cleaned = clean_mesh(vertices, faces, weld_distance=1e-6, plane_distance=1e-3)
    assert cleaned.stats["covered_faces"] == 6 and cleaned.stats["nonmanifold_edges"] == 0
    result = trimesh.Trimesh(cleaned.vertices, cleaned.faces, process=False)
    assert result.is_watertight and result.volume == pytest.approx(1.0)
    assert len(join_triangles(cleaned.vertices, cleaned.faces).quads) == 6


def test_coplanar_neighbours_that_do_not_overlap_are_kept():
    from backend.mesh.cleanup import covered_faces

    grid = trimesh.creation.box().subdivide().subdivide()  # 16 coplanar triangles per side, no overlap
    assert len(covered_faces(grid.vertices, grid.faces, plane_distance=1e-3)) == 0
    # Overlapping but not covered: a triangle sticking out of a square stays.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 1.5, 0]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 1, 4]])
    assert len(covered_faces(vertices, faces, plane_distance=1e-3)) == 0


def test_a_closed_part_is_never_opened_to_drop_a_covered_face():
    """A closed box and a loose square drawn over its top: the square's faces go, the box's stay
    (although the square covers the top as well)."""
    from backend.mesh.cleanup import closed_faces, covered_faces

    vertices, faces = _unit_box()
    vertices = np.concatenate([vertices, [[0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]]])  # 8..11: the top again
    faces = np.concatenate([faces, [(8, 9, 11), (9, 10, 11)]])
    assert closed_faces(faces).tolist() == [True] * 12 + [False] * 2
    assert covered_faces(vertices, faces, plane_distance=1e-3).tolist() == [12, 13]


def _inside(point, triangle, slack: float = 1e-9) -> bool:
    (ax, ay), (bx, by), (cx, cy) = triangle
    px, py = point
    d = [(bx - ax) * (py - ay) - (by - ay) * (px - ax), (cx - bx) * (py - by) - (cy - by) * (px - bx),
         (ax - cx) * (py - cy) - (ay - cy) * (px - cx)]
    return min(d) >= -slack or max(d) <= slack


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6))
def test_coverage_agrees_with_sampling(seed, n):
    """`_is_covered` (exact clipping) against points sampled in the target: covered means every
    sample lies in some other triangle; not covered means some sample lies in none."""
    from backend.mesh.cleanup import _area, _is_covered

    rng = np.random.default_rng(seed)

    def triangle(scale):
        t = [tuple(p) for p in rng.integers(0, 8, size=(3, 2)).astype(float) * scale]
        return t if _area(t) > 0 else t[::-1]

    target = triangle(1.0)
    if abs(_area(target)) < 1e-9:
        return
    others = [t for t in (triangle(1.5) for _ in range(n)) if _area(t) > 1e-9]
    weights = rng.dirichlet(np.ones(3), size=400)
    samples = weights @ np.array(target)
    hits = [any(_inside(p, o) for o in others) for p in samples]
    if _is_covered(target, others):
        assert all(hits)
    else:
        # Uncovered by more than a thousandth of its area: some sample is likely to miss, unless
        # the gap is small; a gap of a tenth of the area cannot hide from 400 samples.
        from backend.mesh.cleanup import _minus

        pieces = [target]
        for o in others:
            pieces = [q for p in pieces for q in _minus(p, o)]
        if sum(_area(p) for p in pieces) > 0.1 * _area(target):
            assert not all(hits)


def test_coverage_ignores_zero_area_faces_and_stays_fast_on_a_crowded_plane():
    import time
    import warnings

    from backend.mesh.cleanup import covered_faces

    rng = np.random.default_rng(0)
    vertices = np.column_stack([rng.integers(0, 30, size=(600, 2)).astype(float), np.zeros(600)])
    vertices[:3] = [[0, 0, 0], [1, 0, 0], [2, 0, 0]]  # face 0 is a zero-area sliver
    faces = np.arange(600).reshape(-1, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        started = time.process_time()
        dropped = covered_faces(vertices, faces, plane_distance=1e-3)
        assert time.process_time() - started < 10.0  # 200 overlapping triangles in one plane
    assert 0 not in dropped.tolist() and len(dropped) > 100


def test_open_patches_follow_the_input_normals_when_given():
    """Two open pieces: a box without its top, and a lone square far off to one side facing
    -x. Without the input, the square faces away from the mesh's centre (+x side: wrong); with
    the input's points and normals it faces where the input surface faces."""
    vertices, faces = _unit_box()
    cup = faces[[i for i, f in enumerate(faces) if not np.allclose(vertices[f][:, 2], 1.0)]]
    square = np.array([[5, 0, 0], [5, 1, 0], [5, 1, 1], [5, 0, 1]], float)
    vertices = np.concatenate([vertices, square])
    faces = scramble(np.concatenate([cup, [(8, 9, 10), (8, 10, 11)]]), 4)
    points = np.array([[5, 0.5, 0.5], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
    normals = np.array([[-1, 0, 0], [0, 0, -1], [-1, 0, 0]], float)  # the square faces -x here
    square_normal = lambda f: face_normals(vertices, f)[-1] / np.linalg.norm(face_normals(vertices, f)[-1])
    assert square_normal(orient_outward(vertices, faces))[0] > 0.99
    oriented = orient_outward(vertices, faces, points, normals)
    assert square_normal(oriented)[0] < -0.99
    cup_normals = face_normals(vertices, oriented[:-2])
    assert (np.einsum("ij,ij->i", cup_normals, vertices[oriented[:-2]].mean(axis=1) - 0.5) > 0).all()
