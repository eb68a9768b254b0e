"""Render a source mesh next to what the SpecMesh add-on makes of it, headless, for the README.

Runs the real path: builds the extension zip, installs it with Blender's installer into a
throw-away Blender user folder, selects the source object and calls `bpy.ops.specmesh.generate()`
(which starts `specmesh serve` with this Python). Renders with Cycles on the CPU, so it needs no
display or GPU.

    python docs/images/render_example.py [--input examples/chair.obj] [--model models/default]
                                         [--out docs/images/example.png] [--max-faces 800]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=ROOT / "examples" / "chair.obj", help="mesh to retopologize")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default", help="model directory")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "example.png")
    parser.add_argument("--max-faces", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=32, help="Cycles samples")
    return parser.parse_args()


def _material(bpy, name: str, rgb: tuple[float, float, float]):
    material = bpy.data.materials.new(name)  # node-based by default since Blender 5.0
    material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*rgb, 1.0)
    material.node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value = 0.6
    return material


def _orientation_material(bpy, name: str):
    """Blue where the camera sees a face's front, red where it sees its back: Blender's Face
    Orientation overlay, so an inward-facing face shows as red."""
    material = _material(bpy, name, (0.55, 0.7, 0.9))
    nodes, links = material.node_tree.nodes, material.node_tree.links
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.inputs["A"].default_value = (0.55, 0.7, 0.9, 1.0)
    mix.inputs["B"].default_value = (0.85, 0.2, 0.2, 1.0)
    links.new(nodes.new("ShaderNodeNewGeometry").outputs["Backfacing"], mix.inputs["Factor"])
    links.new(mix.outputs["Result"], nodes["Principled BSDF"].inputs["Base Color"])
    return material


def _show_edges(bpy, obj, size: float) -> None:
    """Dark wireframe over the faces, so that the topology (the point of it all) is visible; faces
    coloured by orientation; no self-shadowing (overlapping faces would turn each other black)."""
    obj.data.materials.append(_orientation_material(bpy, "Faces"))
    obj.data.materials.append(_material(bpy, "Edges", (0.05, 0.05, 0.08)))
    obj.visible_shadow = False
    wire = obj.modifiers.new("Edges", "WIREFRAME")
    wire.thickness = 0.006 * size
    wire.use_even_offset = False  # even thickness spikes far out at the sliver triangles' sharp corners
    wire.use_replace = False
    wire.material_offset = 1


def _frame(bpy, objects, aspect: float, margin: float = 1.1) -> None:
    """An orthographic camera, slightly from above and the side, fitted to the objects' boxes."""
    from mathutils import Vector

    corners = [obj.matrix_world @ Vector(c) for obj in objects for c in obj.bound_box]
    centre = sum(corners, Vector()) / len(corners)
    direction = Vector((0.3, -1.0, 0.4)).normalized()
    rotation = (-direction).to_track_quat("-Z", "Y").to_matrix()
    # Corners in camera coordinates (x right, y up): recentre on them and fit the larger side.
    local = [rotation.transposed() @ (c - centre) for c in corners]
    xs, ys = [c.x for c in local], [c.y for c in local]
    offset = rotation @ Vector(((max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2, 0.0))
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    bpy.context.scene.collection.objects.link(camera)
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = max(max(xs) - min(xs), (max(ys) - min(ys)) * aspect) * margin
    camera.data.clip_end = 1e4
    camera.location = centre + offset + direction * (max(xs) - min(xs) + max(ys) - min(ys)) * 5
    camera.rotation_euler = rotation.to_euler()
    bpy.context.scene.camera = camera
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    bpy.context.scene.collection.objects.link(sun)
    sun.data.energy = 3.0
    sun.rotation_euler = (0.7, 0.2, 0.6)


def main() -> int:
    args = _args()
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="specmesh-render-"))
    sys.path.insert(0, str(ROOT))
    import bpy

    import build_addon

    with tempfile.TemporaryDirectory() as dist:
        name = build_addon.install_into_blender(build_addon.build(Path(dist)))
    prefs = bpy.context.preferences.addons[name].preferences
    prefs.backend_python, prefs.model_dir, prefs.device = sys.executable, str(args.model), "auto"

    for obj in list(bpy.data.objects):  # the startup scene's cube, camera and light
        bpy.data.objects.remove(obj)
    bpy.ops.wm.obj_import(filepath=str(args.input), forward_axis="Y", up_axis="Z")  # our files are Z-up
    source = bpy.context.selected_objects[0]
    bpy.context.view_layer.objects.active = source
    settings = bpy.context.scene.specmesh
    settings.max_faces, settings.seed = args.max_faces, args.seed
    if bpy.ops.specmesh.generate() != {"FINISHED"}:
        raise SystemExit("generation did not finish; see the messages above")
    result = bpy.data.objects[f"{source.name}_retopo"]
    stats = sys.modules[name].runtime.session.progress.stats

    size = max(source.dimensions)
    result.location.x += size * 1.2  # side by side: source left, result right
    source.data.materials.append(_material(bpy, "Source", (0.8, 0.8, 0.8)))
    _show_edges(bpy, result, size)
    bpy.context.view_layer.update()  # refresh matrix_world after the move
    _frame(bpy, [source, result], aspect=2.0)

    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.render.resolution_x, scene.render.resolution_y = 1200, 600
    scene.render.film_transparent = False
    scene.world = bpy.data.worlds.new("World")
    scene.world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.85, 0.86, 0.9, 1.0)
    scene.render.filepath = str(args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.render.render(write_still=True)
    bpy.ops.preferences.addon_disable(module=name)  # stops the backend
    print(f"{args.out}: {len(source.data.polygons)} source faces -> {stats['faces']} faces, "
          f"{stats['tokens_per_second']:.0f} tokens/s, SCR {stats['scr']:.2f}, stop {stats['stop_reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
