"""Render held-out inputs beside what the shipped model makes of them, as one grid for the README.

Eight inputs the model never trained on: four procedural meshes of the data's test split and four
meshes Blender makes (benchmarks/blender_inputs.py). Each is generated with the default settings
and written as `specmesh generate` writes it (decoding on the input mesh, cleaned up, oriented
outward), then source (grey) and result
(faces coloured by orientation, blue front / red back, with their edges) are laid out in pairs and
rendered with Cycles on the CPU.

    python docs/images/render_grid.py [--model DIR] [--out docs/images/grid.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

PROCEDURAL = (11, 6, 15, 23)  # test-split items: a chair, a stool, a building, a torus
BLENDER = ("suzanne_subdiv", "uv_sphere", "torus_subdiv", "cylinder")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "grid.png")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples")
    return parser.parse_args()


def _generate(args: argparse.Namespace, folder: Path) -> list[tuple[str, Path, Path, dict]]:
    """(name, source .obj, result .obj, stats) for the eight inputs."""
    import torch

    import blender_inputs  # benchmarks/, put on the path by main()
    from backend.commands.generate import quantization_step, write_artist_mesh
    from backend.decoding.pipeline import Generator
    from backend.evaluation import procedural_cases
    from backend.generation import generate
    from backend.inputs import from_mesh
    from backend.mesh.io import load_mesh
    from backend.options import GenerateOptions

    torch.set_num_threads(1)
    blender_inputs.main(folder / "blender")
    generator = Generator.load(args.model)
    cases = procedural_cases(max(PROCEDURAL) + 1)
    meshes = [(cases[i].name, cases[i].mesh) for i in PROCEDURAL]
    meshes += [(name, load_mesh(folder / "blender" / f"{name}.obj")) for name in BLENDER]
    rows = []
    for name, mesh in meshes:
        cloud = from_mesh(mesh)
        result = generate(generator, cloud.points, cloud.normals, GenerateOptions(), mesh=cloud.source_mesh)
        source, output = folder / f"{name}_source.obj", folder / f"{name}_result.obj"
        mesh.export(source)
        # What `specmesh generate` writes: cleaned up and oriented outward.
        write_artist_mesh(output, result.vertices, result.faces, quantization_step(cloud.points), quads=False)
        rows.append((name, source, output, result.stats))
        print(f"{name}: {len(mesh.faces)} -> {len(result.faces)} faces, stop {result.stats['stop_reason']}")
    return rows


def main() -> int:
    args = _args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    with tempfile.TemporaryDirectory() as tmp:
        rows = _generate(args, Path(tmp))
        import bpy
        from render_example import _frame, _material, _show_edges

        for obj in list(bpy.data.objects):
            bpy.data.objects.remove(obj)
        placed = []
        for index, (name, source_path, result_path, _) in enumerate(rows):
            pair = []
            for path in (source_path, result_path):
                bpy.ops.wm.obj_import(filepath=str(path), forward_axis="Y", up_axis="Z")
                pair.append(bpy.context.selected_objects[0])
            source, result = pair
            size = max(source.dimensions)
            for obj in pair:  # every pair scaled to one size, in a 4 x 2 grid of pairs
                obj.scale = (1.0 / size,) * 3
                obj.location = ((index % 4) * 2.6 + (1.15 if obj is result else 0.0), 0.0, -(index // 4) * 1.5)
            source.data.materials.append(_material(bpy, "Source", (0.8, 0.8, 0.8)))
            _show_edges(bpy, result, 1.0)
            placed += pair
        bpy.context.view_layer.update()
        _frame(bpy, placed, aspect=2.0, margin=1.05)
        scene = bpy.context.scene
        scene.render.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = args.samples
        scene.render.resolution_x, scene.render.resolution_y = 1600, 800
        scene.world = bpy.data.worlds.new("World")
        scene.world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.85, 0.86, 0.9, 1.0)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        scene.render.filepath = str(args.out)
        bpy.ops.render.render(write_still=True)
    stats = {name: {k: s.get(k) for k in ("faces", "tokens", "scr", "coverage", "stop_reason")}
             for name, _, _, s in rows}
    args.out.with_suffix(".json").write_text(json.dumps(stats, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
