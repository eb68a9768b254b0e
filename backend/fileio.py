"""Writing files so that a failure never costs the user what was there before.

Every file the project writes (meshes, stats, model files, checkpoints, dataset shards, plots)
goes through `atomic_path` / `atomic_write`: the data is written to a temporary file beside the
target, flushed to disk, and renamed over the target in one `os.replace`. A full disk, a file-size
limit or a crash part-way leaves the previous file byte for byte as it was and no temporary file
behind. `check_output_path` validates a path before any expensive work starts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def check_output_path(path: str | Path, what: str = "output") -> Path:
    """Raise ValueError unless `path` can be written as a file: it is not a directory, and its
    nearest existing ancestor is a writable directory (so no component is a file)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory; give a file name")
    if path.name in ("", ".", ".."):
        raise ValueError(f"{what} {path} does not name a file")
    parent = path.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ValueError(f"{what} {path}: {ancestor} is a file, not a directory")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise ValueError(f"{what} {path}: cannot write in {ancestor} (permission denied)")
            break
    if path.exists() and not os.access(path, os.W_OK) and not os.access(parent, os.W_OK):
        raise ValueError(f"{what} {path} is not writable")
    return path


def _temporary_name(path: Path) -> Path:
    # Hidden, unique, and with the target's suffix (libraries pick the format from it).
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a library to write to; on success it replaces
    `path` (after an fsync), on any exception it is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # reserve the name (umask applies)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write bytes (or UTF-8 text) to `path` atomically."""
    payload = data.encode() if isinstance(data, str) else bytes(data)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(payload)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb+") as f:
        os.fsync(f.fileno())
