"""Sharded mesh + token dataset (format in docs/architecture.md, "Dataset shards").

`build(count, seed, out_dir)` writes items `seed .. seed+count-1` of a split: item k has the
global seed `split_seeds(split, 1, seed + k)` (see `backend.data.registry`), so train, val and
test sets never share a mesh, and datasets built from disjoint item ranges never overlap.
`MeshDataset(dir)` reads them back lazily, one whole shard in memory at a time."""

from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from backend.data.registry import FAMILY_NAMES, make_mesh, sample_family, split_seeds
from backend.fileio import atomic_path, atomic_write
from backend.tokenizer.bpt import encode_mesh

FORMAT_VERSION = 1
SHARD_SIZE = 1000
CHUNK = 16  # items per worker task: amortizes the inter-process round trip


@dataclass(frozen=True)
class MeshRecord:
    vertices: np.ndarray  # float32 (n, 3), normalized to [-0.95, 0.95], Z up
    faces: np.ndarray  # int32 (m, 3)
    tokens: np.ndarray  # int64 BPT tokens of the un-augmented mesh, ending with EOS
    family: str
    seed: int


def make_item(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(vertices, faces, tokens, family index) of the item with this global seed."""
    family = sample_family(seed)
    mesh = make_mesh(family, seed)
    tokens = encode_mesh(mesh)
    return (mesh.vertices.astype(np.float32), mesh.faces.astype(np.int32), tokens.astype(np.int16),
            FAMILY_NAMES.index(family))


def _concat(arrays: list[np.ndarray], dtype, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated rows and int64 offsets (n+1) into them."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    empty = np.zeros((0, width) if width else (0,), dtype=dtype)
    return (np.concatenate(arrays).astype(dtype) if arrays else empty), offsets


def _write_shard(path: Path, items: list, seeds: np.ndarray) -> None:
    vertices, vertex_offsets = _concat([it[0] for it in items], np.float32, 3)
    faces, face_offsets = _concat([it[1] for it in items], np.int32, 3)
    tokens, token_offsets = _concat([it[2] for it in items], np.int16)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, vertices=vertices, vertex_offsets=vertex_offsets, faces=faces, face_offsets=face_offsets,
                 tokens=tokens, token_offsets=token_offsets,
                 family=np.array([it[3] for it in items], dtype=np.int16), seed=np.asarray(seeds, dtype=np.int64))


def build(count: int, seed: int, out_dir: str | Path, workers: int = 2, split: str = "train",
          shard_size: int = SHARD_SIZE, progress: bool = True) -> Path:
    """Generate, tokenize and write `count` items of `split` starting at item `seed`."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if workers < 1 or shard_size < 1:
        raise ValueError("workers and shard_size must be at least 1")
    seeds = split_seeds(split, count, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # meta.json is the dataset's index: gone first, written last, so a build that fails part-way
    # leaves no index pointing at shards that are not there.
    (out / "meta.json").unlink(missing_ok=True)
    for stale in out.glob("shard-*.npz"):
        stale.unlink()
    shards: list[str] = []
    items: list = []
    bar = tqdm(total=count, unit="mesh", disable=not progress, desc=f"data {split}")

    def flush() -> None:
        name = f"shard-{len(shards):05d}.npz"
        start = len(shards) * shard_size
        _write_shard(out / name, items, seeds[start:start + len(items)])
        shards.append(name)
        items.clear()

    with mp.get_context("fork").Pool(workers) if workers > 1 else _Serial() as pool:
        for item in pool.imap(make_item, seeds.tolist(), chunksize=CHUNK):
            items.append(item)
            bar.update(1)
            if len(items) == shard_size:
                flush()
    if items:
        flush()
    bar.close()
    meta = {"count": count, "seed": seed, "split": split, "families": FAMILY_NAMES, "shards": shards,
            "shard_size": shard_size, "format_version": FORMAT_VERSION}
    atomic_write(out / "meta.json", json.dumps(meta, indent=1))
    return out


class _Serial:
    """Stand-in for a Pool with one worker: runs in this process (easier to debug and profile)."""

    def __enter__(self) -> "_Serial":
        return self

    def __exit__(self, *exc) -> None:
        return None

    @staticmethod
    def imap(fn, iterable, chunksize: int = 1):
        return map(fn, iterable)


class MeshDataset:
    """Random access to a built dataset; each shard is loaded whole on first use and kept."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        meta_path = self.dir / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"no dataset at {self.dir} (missing meta.json; build one with `specmesh data build`)")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{self.dir}: dataset format {self.meta.get('format_version')}, expected {FORMAT_VERSION}")
        self.families: list[str] = self.meta["families"]
        self.shard_size = int(self.meta["shard_size"])  # every shard but the last is full
        self._shards: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return int(self.meta["count"])

    def _shard(self, index: int) -> dict[str, np.ndarray]:
        if index not in self._shards:
            with np.load(self.dir / self.meta["shards"][index], allow_pickle=False) as data:
                self._shards[index] = {k: data[k] for k in data.files}
        return self._shards[index]

    def __getitem__(self, i: int) -> MeshRecord:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} meshes")
        i %= n
        s, k = divmod(i, self.shard_size)
        d = self._shard(s)

        def rows(name: str, offsets: str) -> np.ndarray:
            return d[name][d[offsets][k]:d[offsets][k + 1]]

        return MeshRecord(rows("vertices", "vertex_offsets"), rows("faces", "face_offsets"),
                          rows("tokens", "token_offsets").astype(np.int64),
                          self.families[int(d["family"][k])], int(d["seed"][k]))
