"""The README's side-by-side picture: inputs, SpecMesh, Blender's Decimate and QuadriFlow at the
same triangle count, shaded with every edge drawn, from the meshes `benchmarks/retopo_compare.py`
wrote (its --meshes folder).

    python docs/images/render_retopo_grid.py out/retopo_meshes/<rev> --out docs/images/retopo_grid.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
INPUTS = ["suzanne_subdiv", "uv_sphere_subdiv", "torus_subdiv", "cube_bevel_subdiv", "test0001", "test0009"]
COLUMNS = [("input", "input"), ("specmesh", "SpecMesh --quads"), ("decimate", "Decimate"), ("quadriflow", "QuadriFlow")]
LIGHT = np.array([0.4, -0.6, 0.7]) / np.linalg.norm([0.4, -0.6, 0.7])


def polygons(path: Path) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices and faces (triangles and quads as written) of an .obj file."""
    vertices, faces = [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "v":
            vertices.append([float(x) for x in parts[1:4]])
        elif parts and parts[0] == "f":
            faces.append([int(p.split("/")[0]) - 1 for p in parts[1:]])
    return np.asarray(vertices), faces


def draw(ax, vertices: np.ndarray, faces: list[list[int]], title: str, view: tuple[float, float]) -> None:
    shapes = [vertices[f] for f in faces]
    normals = np.array([np.cross(s[1] - s[0], s[2] - s[0]) for s in shapes])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    shade = 0.35 + 0.6 * np.clip(normals @ LIGHT, 0, 1)
    ax.add_collection3d(Poly3DCollection(shapes, facecolors=plt.cm.Blues(shade), edgecolors="k", linewidths=0.25))
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    centre, radius = (low + high) / 2, (high - low).max() / 2
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
        setter(c - radius, c + radius)
    ax.view_init(*view)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("meshes", type=Path, help="retopo_compare.py's --meshes folder")
    parser.add_argument("--inputs", type=Path, default=REPO / "out" / "retopo_inputs")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "retopo_grid.png")
    args = parser.parse_args()
    fig = plt.figure(figsize=(3.0 * len(COLUMNS), 2.8 * len(INPUTS)))
    for row, name in enumerate(INPUTS):
        for col, (kind, label) in enumerate(COLUMNS):
            path = args.inputs / f"{name}.obj" if kind == "input" else args.meshes / f"{name}.{kind}.obj"
            ax = fig.add_subplot(len(INPUTS), len(COLUMNS), row * len(COLUMNS) + col + 1, projection="3d")
            if not path.is_file():
                ax.set_axis_off()
                ax.set_title(f"{label}: failed", fontsize=8)
                continue
            vertices, faces = polygons(path)
            if kind == "input":
                mesh = trimesh.load(path, force="mesh", process=False)
                vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces).tolist()
            quads = sum(len(f) == 4 for f in faces)
            draw(ax, vertices, faces, f"{name}: {label}\n{len(faces)} faces, {quads} quads", (25, -60))
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
