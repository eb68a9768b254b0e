"""Regenerate the bundled example inputs (deterministic; nothing is downloaded).

    python examples/make_examples.py [--out examples]

Each example is a held-out procedural mesh (the data's test split, from item 10000 on, so it is
outside the range `specmesh eval --procedural` uses) scaled to a real-world size in metres and
moved off the origin, to show that `specmesh generate` answers in the input's own frame. One is
also written as a point cloud with normals (.npy, float32 (N, 6)) for the point-cloud path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from backend.data.registry import make_mesh, split_seeds
from backend.mesh.sample import sample_surface

FIRST_ITEM = 10_000
FACE_RANGE = (100, 600)
# name: (family, longest side in metres, position)
EXAMPLES = {
    "chair": ("chair", 0.9, (1.0, 0.0, 0.45)),
    "table": ("table", 1.4, (-1.5, 0.5, 0.4)),
    "vase": ("lathe", 0.5, (0.0, 2.0, 0.25)),
    "torus": ("torus", 0.3, (0.5, -1.0, 0.1)),
    "gadget": ("hard_surface", 0.25, (0.0, 0.0, 1.0)),
}
POINT_CLOUD = ("vase", 2048)  # which example also ships as a point cloud, and how many points


def find_mesh(family: str, items: int = 200):
    """The first test-split item of `family` whose face count is in FACE_RANGE."""
    for seed in split_seeds("test", items, start=FIRST_ITEM):
        try:
            mesh = make_mesh(family, int(seed))
        except RuntimeError:  # this seed has no valid mesh for the family; take the next one
            continue
        if FACE_RANGE[0] <= len(mesh.faces) <= FACE_RANGE[1]:
            return mesh
    raise RuntimeError(f"no {family} mesh with {FACE_RANGE} faces in {items} test items")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    for name, (family, size, position) in EXAMPLES.items():
        mesh = find_mesh(family)
        mesh.apply_scale(size / mesh.extents.max())
        mesh.apply_translation(position)
        mesh.export(out / f"{name}.obj", include_normals=False, digits=5)
        print(f"{name}.obj: {family}, {len(mesh.faces)} faces")
        if name == POINT_CLOUD[0]:
            points, normals = sample_surface(mesh.vertices, mesh.faces, POINT_CLOUD[1], seed=0)
            np.save(out / f"{name}_points.npy", np.hstack([points, normals]).astype(np.float32))
            print(f"{name}_points.npy: {POINT_CLOUD[1]} points with normals")


if __name__ == "__main__":
    main()
