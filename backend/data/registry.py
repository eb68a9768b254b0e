"""Family registry: deterministic, validated meshes per (family, seed).

Seeds and splits: a dataset item is identified by one integer seed. `sample_family(seed)` picks
its family and `make_mesh(family, seed)` builds it, so any item can be rebuilt from the `seed`
column of a shard. Each family draws from its own stream, keyed by a hash of its *name*
(`default_rng([crc32(name), seed])`), so adding or reordering families changes nothing else.
Splits own disjoint seed ranges (`SPLIT_OFFSETS`): train seeds are in [0, 2**40), validation in
[2**40, 2**41), test/eval in [2**41, 2**42); `split_seeds` hands them out.

Every mesh leaves here triangulated, merged, closed, outward-wound, bounding-box centred with
its longest side spanning [-0.95, 0.95] (BPT's normalization), and with features big enough
to survive 7-bit quantization (see `check_mesh`)."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import trimesh

from backend.mesh.normalize import Normalization
from backend.mesh.quantize import quantize_coords

from backend.data.families import (arches, boxes, buildings, cones, extrusions, furniture, hardsurface, lathe,
                                   pipes, prisms, props, stairs, tori)

Maker = Callable[[np.random.Generator], trimesh.Trimesh]

FAMILIES: dict[str, Maker] = {
    "bevel_box": boxes.make,
    "prism": prisms.make,
    "cone": cones.make,
    "lathe": lathe.make,
    "extrusion": extrusions.make,
    "stairs": stairs.make,
    "torus": tori.make_torus,
    "capsule": tori.make_capsule,
    "arch": arches.make,
    "pipe": pipes.make,
    "table": furniture.make_table,
    "chair": furniture.make_chair,
    "shelf": furniture.make_shelf,
    "stool": furniture.make_stool,
    "hard_surface": hardsurface.make,
    "prop": props.make,
    "building": buildings.make,
    "column": buildings.make_column,
}
FAMILY_NAMES: list[str] = list(FAMILIES)

MIN_FACES, MAX_FACES = 12, 1200
MAX_ATTEMPTS = 50

SPLIT_OFFSETS = {"train": 0, "val": 2**40, "test": 2**41}
SPLIT_SIZE = 2**40
_FAMILY_PICK_KEY = 0x5EED


def family_rng(family: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(family.encode()), int(seed)])


def split_seeds(split: str, count: int, start: int = 0) -> np.ndarray:
    """Seeds of items start..start+count-1 of a split; splits never overlap."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_OFFSETS)}")
    if start < 0 or count < 0 or start + count > SPLIT_SIZE:
        raise ValueError(f"items {start}..{start + count} are outside the {split} split (0..{SPLIT_SIZE})")
    return SPLIT_OFFSETS[split] + start + np.arange(count, dtype=np.int64)


def sample_family(seed: int) -> str:
    """The family of the dataset item with this seed (uniform over families)."""
    rng = np.random.default_rng([_FAMILY_PICK_KEY, int(seed)])
    return FAMILY_NAMES[int(rng.integers(len(FAMILY_NAMES)))]


def orient(mesh: trimesh.Trimesh, rng: np.random.Generator) -> trimesh.Trimesh:
    """Mostly axis-aligned (quarter turns about Z), some free turns about Z, a few laid on
    their side, a few tumbled."""
    u = rng.random()
    turn = np.pi / 2 * int(rng.integers(4))
    if u < 0.65:
        angles = (0.0, 0.0, turn)
    elif u < 0.85:
        angles = (0.0, 0.0, rng.uniform(0, 2 * np.pi))
    elif u < 0.95:
        angles = (np.pi / 2, 0.0, turn) if rng.random() < 0.5 else (0.0, np.pi / 2, turn)
    else:
        angles = tuple(rng.uniform(0, 2 * np.pi, size=3))
    # Static x-y-z Euler angles: lay on a side first, then turn about Z.
    return mesh.apply_transform(trimesh.transformations.euler_matrix(*angles, axes="sxyz"))


def normalize(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Centre the bounding box; scale the longest side to span [-0.95, 0.95] (BPT's frame)."""
    return trimesh.Trimesh(Normalization.fit(mesh.vertices).apply(mesh.vertices), mesh.faces, process=False)


def check_mesh(mesh: trimesh.Trimesh) -> str | None:
    """Why a normalized mesh is unfit for the dataset, or None when it is fit: the face count
    must be in range, the surface closed and outward-wound, and the 7-bit quantized mesh must
    be the same mesh (no two vertices in one grid cell, no face collapsed or flipped)."""
    n = len(mesh.faces)
    if not MIN_FACES <= n <= MAX_FACES:
        return f"{n} faces outside [{MIN_FACES}, {MAX_FACES}]"
    if not (mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0):
        return "not a closed, outward-wound surface"
    q = quantize_coords(mesh.vertices)
    if len(np.unique(q, axis=0)) != len(q):
        return "vertices merge when quantized"
    corners = q[mesh.faces].astype(np.float64)
    q_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    if (np.einsum("ij,ij->i", q_normals, mesh.face_normals) <= 0).any():
        return "faces collapse or flip when quantized"
    return None


def make_mesh(family: str, seed: int) -> trimesh.Trimesh:
    """The mesh of `family` for `seed`: same seed, same mesh. Candidates that fail
    `check_mesh` are redrawn from the same stream."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILY_NAMES}")
    rng = family_rng(family, seed)
    reasons = []
    for _ in range(MAX_ATTEMPTS):
        mesh = normalize(orient(FAMILIES[family](rng), rng))
        reason = check_mesh(mesh)
        if reason is None:
            return mesh
        reasons.append(reason)
    raise RuntimeError(f"family {family!r} seed {seed}: no valid mesh in {MAX_ATTEMPTS} tries: {reasons[-3:]}")
