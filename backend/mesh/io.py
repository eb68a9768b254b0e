"""Loading any mesh file trimesh reads (obj, ply, stl, glb, off, ...) as one triangle mesh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh


class MeshLoadError(ValueError):
    """The file is missing, unreadable, or holds no usable triangles."""


def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """One Trimesh from a file; a multi-part scene is concatenated with its transforms applied.
    Vertices are not merged or repaired here (the tokenizer does its own clean-up)."""
    path = Path(path)
    if not path.is_file():
        raise MeshLoadError(f"{path}: no such file")
    try:
        loaded = trimesh.load(path, process=False)
    except Exception as exc:  # trimesh raises many types for corrupt or unknown files
        raise MeshLoadError(f"{path}: cannot read mesh ({type(exc).__name__}: {exc})") from exc
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_mesh() if loaded.geometry else trimesh.Trimesh()
    if not isinstance(loaded, trimesh.Trimesh):
        raise MeshLoadError(f"{path}: holds a {type(loaded).__name__}, not a triangle mesh")
    if len(loaded.faces) == 0 or len(loaded.vertices) == 0:
        raise MeshLoadError(f"{path}: mesh has no faces")
    if not np.isfinite(loaded.vertices).all():
        raise MeshLoadError(f"{path}: vertices contain NaN or infinite values")
    return loaded
