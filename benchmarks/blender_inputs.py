"""Write the meshes Blender itself makes (Suzanne, UV sphere, cylinder, torus; each as created
and with a Subdivision Surface modifier applied) as .obj files: held-out inputs for `specmesh
eval --inputs DIR`, never seen in training (the training data is procedural).

    python benchmarks/blender_inputs.py OUT_DIR     # needs bpy (pip install bpy==5.0.1)
"""

from __future__ import annotations

import sys
from pathlib import Path

import bpy
import numpy as np

PRIMITIVES = {
    "suzanne": lambda: bpy.ops.mesh.primitive_monkey_add(),
    "uv_sphere": lambda: bpy.ops.mesh.primitive_uv_sphere_add(segments=24, ring_count=12),
    "cylinder": lambda: bpy.ops.mesh.primitive_cylinder_add(vertices=16),
    "torus": lambda: bpy.ops.mesh.primitive_torus_add(major_segments=24, minor_segments=8),
}


def write_obj(path: Path, vertices: np.ndarray, faces: list[list[int]]) -> None:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += ["f " + " ".join(str(i + 1) for i in face) for face in faces]
    tmp = path.with_suffix(".obj.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, add in PRIMITIVES.items():
        for subdivided in (False, True):
            bpy.ops.wm.read_factory_settings(use_empty=True)
            add()
            obj = bpy.context.active_object
            if subdivided:
                modifier = obj.modifiers.new("subdivision", "SUBSURF")
                modifier.levels = 2
                bpy.ops.object.modifier_apply(modifier=modifier.name)
            mesh = obj.data
            vertices = np.array([v.co[:] for v in mesh.vertices])
            faces = [list(p.vertices) for p in mesh.polygons]
            write_obj(out / f"{name}{'_subdiv' if subdivided else ''}.obj", vertices, faces)
            print(f"{name}{' subdivided' if subdivided else ''}: {len(vertices)} vertices, {len(faces)} faces")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/blender_inputs"))
