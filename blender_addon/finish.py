"""The end of a generation in Blender: the streamed triangles made artist-ready with Blender's own
bmesh operators, the same steps `specmesh generate` applies (backend/mesh/cleanup.py, quads.py):

1. weld vertices closer than half the model's grid step (the same grid point);
2. drop faces over the same vertices as an earlier face (a double-sided pair keeps one side);
3. recalculate normals outside, per connected region (Mesh > Normals > Recalculate Outside);
4. with Quads on, join triangle pairs that are near-planar and near-rectangular (Tris to Quads,
   with its default 40° thresholds).
"""

from __future__ import annotations

import math

import bmesh
import bpy

# Tris to Quads' defaults, and the CLI's (backend/mesh/quads.py).
QUAD_FACE_THRESHOLD = math.radians(40.0)
QUAD_SHAPE_THRESHOLD = math.radians(40.0)


def finish_mesh(mesh: bpy.types.Mesh, weld_distance: float, quads: bool) -> dict[str, int]:
    """Clean, orient and optionally quadrangulate `mesh` in place; -> what it did and has."""
    bm = bmesh.new()
    try:
        bm.from_mesh(mesh)
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
            bmesh.ops.delete(bm, geom=duplicates, context="FACES_ONLY")
        bmesh.ops.recalc_face_normals(bm, faces=list(bm.faces))
        if quads:
            bmesh.ops.join_triangles(bm, faces=list(bm.faces), angle_face_threshold=QUAD_FACE_THRESHOLD,
                                     angle_shape_threshold=QUAD_SHAPE_THRESHOLD)
        result = {
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
