"""Loading any mesh file trimesh reads (obj, ply, stl, glb, off, ...) as one triangle mesh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh


# Coordinates beyond this are refused (the same bound as the protocol's).
MAX_COORDINATE = 1e30
# A mesh file larger than this is refused before it is parsed (a 500 MB .obj takes gigabytes of memory).
MAX_INPUT_BYTES = 512 * 1024 * 1024
# trimesh opens archives and decompresses them in memory: a 1 MB zip can hold a 1 GB mesh. Refused,
# by name and by content.
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".lzma", ".tbz2", ".txz")
ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c",
                 b"Rar!\x1a\x07", b"\x28\xb5\x2f\xfd")


class MeshLoadError(ValueError):
    """The file is missing, unreadable, or holds no usable triangles."""


def check_input_file(path: Path, max_bytes: int = MAX_INPUT_BYTES) -> None:
    """Refuse archives (by suffix or content) and files over `max_bytes` before parsing them."""
    name = path.name.lower()
    if name.endswith(ARCHIVE_SUFFIXES):
        raise MeshLoadError(f"{path}: archives are not read; extract the mesh file first")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(ARCHIVE_MAGIC):
        raise MeshLoadError(f"{path}: is a compressed archive, not a mesh file; extract the mesh first")
    size = path.stat().st_size
    if size > max_bytes:
        raise MeshLoadError(f"{path}: {size / 2**20:.0f} MiB is more than the {max_bytes / 2**20:.0f} MiB "
                            "a mesh input may have; decimate it first")


def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """One Trimesh from a file; a multi-part scene is concatenated with its transforms applied.
    Vertices are not merged or repaired here (the tokenizer does its own clean-up)."""
    path = Path(path)
    if not path.is_file():
        raise MeshLoadError(f"{path}: no such file")
    check_input_file(path)
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
    if np.abs(loaded.vertices).max() > MAX_COORDINATE:
        raise MeshLoadError(f"{path}: a vertex coordinate is beyond ±{MAX_COORDINATE:g}")
    return loaded
