"""The end of a generation in Blender: the streamed triangles made artist-ready with bmesh, the
same steps `specmesh generate` applies (backend/mesh/cleanup.py, quads.py):

1. drop the faces the backend's `done` event lists in `drop` (covered by coplanar faces) and
   reverse those in `flip` (its `orient_outward`, the CLI's own orientation); without these
   lists (an older backend, or one that failed before `done`), Blender's Recalculate Outside,
   which on these open, non-manifold meshes agrees with the CLI on only about 70 % of the faces;
2. weld vertices closer than half the model's grid step (the same grid point);
3. drop faces over the same vertices as an earlier face (a double-sided pair keeps one side);
4. with Quads on, join triangle pairs that are near-planar and near-rectangular (Tris to Quads,
   with its default 40° thresholds);
5. shade flat (a mesh built without the `sharp_face` attribute is smooth-shaded).
"""

from __future__ import annotations

import math

import bmesh
import bpy

# Tris to Quads' defaults, and the CLI's (backend/mesh/quads.py).
QUAD_FACE_THRESHOLD = math.radians(40.0)
QUAD_SHAPE_THRESHOLD = math.radians(40.0)


def finish_mesh(mesh: bpy.types.Mesh, weld_distance: float, quads: bool,
                flip: list[int] | None = None, drop: list[int] | None = None) -> dict:
    """Orient, clean and optionally quadrangulate `mesh` in place; `flip` / `drop`: indices of
    its faces to reverse / delete (with `flip`, no normals are recalculated). -> what it did and has."""
    bm = bmesh.new()
    try:
        bm.from_mesh(mesh)
        bm.faces.ensure_lookup_table()
        count = len(bm.faces)
        by_backend = flip is not None and all(0 <= i < count for i in flip)
        drop = [i for i in (drop or []) if 0 <= i < count] if by_backend else []
        dropped = [bm.faces[i] for i in drop]
        if by_backend:
            bmesh.ops.reverse_faces(bm, faces=[bm.faces[i] for i in flip])
        if dropped:
            bmesh.ops.delete(bm, geom=dropped, context="FACES")
        if not by_backend:
            bmesh.ops.recalc_face_normals(bm, faces=list(bm.faces))
        verts_before = len(bm.verts)
        if weld_distance > 0:
            bmesh.ops.remove_doubles(bm, verts=list(bm.verts), dist=weld_distance)
        bm.verts.index_update()
        seen: set[frozenset[int]] = set()
        duplicates = []
        for face in bm.faces:
            key = frozenset(v.index for v in face.verts)
            if key in seen:
                duplicates.append(face)
            seen.add(key)
        if duplicates:
            bmesh.ops.delete(bm, geom=duplicates, context="FACES")
        for face in bm.faces:
            face.smooth = False  # flat shading: smoothing across a low-poly mesh's hard corners reads as black smudges
        if quads:
            bmesh.ops.join_triangles(bm, faces=list(bm.faces), angle_face_threshold=QUAD_FACE_THRESHOLD,
                                     angle_shape_threshold=QUAD_SHAPE_THRESHOLD)
        result = {
            "oriented_by": "backend" if by_backend else "blender",
            "flipped_faces": len(flip) if by_backend else None,
            "covered_faces": len(drop),
            "welded_vertices": verts_before - len(bm.verts),
            "duplicate_faces": len(duplicates),
            "quads": sum(1 for f in bm.faces if len(f.verts) == 4),
            "triangles": sum(1 for f in bm.faces if len(f.verts) == 3),
            "boundary_edges": sum(1 for e in bm.edges if len(e.link_faces) == 1),
        }
        bm.to_mesh(mesh)
    finally:
        bm.free()
    mesh.update()
    return result
