"""Look at the families: a few .obj per family and one PNG contact sheet, rendered with
matplotlib (Agg, flat Lambert shading, visible edges so the low-poly topology shows)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402

from backend.data.registry import FAMILY_NAMES, make_mesh  # noqa: E402
from backend.fileio import atomic_path, atomic_write  # noqa: E402

LIGHT = np.array([0.35, -0.55, 0.75]) / np.linalg.norm([0.35, -0.55, 0.75])
BASE_COLOR = np.array([0.62, 0.74, 0.88])
COLUMNS = 6


def draw_mesh(ax, mesh: trimesh.Trimesh, title: str) -> None:
    shade = 0.3 + 0.7 * np.clip(mesh.face_normals @ LIGHT, 0.0, 1.0)
    colors = np.clip(BASE_COLOR[None, :] * shade[:, None], 0, 1)
    ax.add_collection3d(Poly3DCollection(mesh.vertices[mesh.faces], facecolors=colors,
                                         edgecolors=(0.1, 0.1, 0.15, 0.7), linewidths=0.3))
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_zlim(-1, 1)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=22, azim=-58)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8, pad=0)


def contact_sheet(cells: list[tuple[str, trimesh.Trimesh]], path: str | Path, columns: int = COLUMNS) -> Path:
    rows = -(-len(cells) // columns)
    fig = plt.figure(figsize=(columns * 2.0, rows * 2.1), dpi=80)
    for k, (title, mesh) in enumerate(cells):
        draw_mesh(fig.add_subplot(rows, columns, k + 1, projection="3d"), mesh, title)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.97, wspace=0, hspace=0.12)
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(path)


def preview(out_dir: str | Path, per_family: int = 3, seed: int = 0, families: list[str] | None = None) -> Path:
    """Write `<family>_<k>.obj` for seeds seed..seed+per_family-1 and `contact_sheet.png`."""
    if per_family < 1:
        raise ValueError(f"per-family must be at least 1, got {per_family}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells = []
    for family in families or FAMILY_NAMES:
        for k in range(per_family):
            mesh = make_mesh(family, seed + k)
            atomic_write(out / f"{family}_{k}.obj", mesh.export(file_type="obj"))
            cells.append((f"{family} ({len(mesh.faces)} f)", mesh))
    return contact_sheet(cells, out / "contact_sheet.png", columns=max(per_family, COLUMNS // per_family * per_family))
