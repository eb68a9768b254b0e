"""Per-scene generation settings: `scene.specmesh`.

Speed ⟷ Quality is δ, the XSpecMesh acceptance threshold: a drafted token is kept only while
the backbone gives it probability > δ. Low δ keeps more drafts per forward pass (faster, drifts
further from what the backbone alone would make); high δ rejects more (slower, closer to plain
autoregressive output). The slider maps linearly onto δ ∈ [DELTA_SPEED, DELTA_QUALITY]:
0 -> 0.1, 0.5 -> 0.5 (the paper's setting), 1 -> 0.9. Outside that range speculation stops
paying (δ near 0 accepts noise, δ near 1 accepts almost nothing).

Lossless replaces the threshold by exact verification (speculative sampling): every token is a
sample of the backbone's own distribution, so the mesh is what plain autoregressive decoding
would give, at about the same tokens per pass; δ is then unused (docs/bench: `tree_exact`).
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty

DELTA_SPEED = 0.1
DELTA_QUALITY = 0.9


def quality_to_delta(quality: float) -> float:
    return DELTA_SPEED + min(max(quality, 0.0), 1.0) * (DELTA_QUALITY - DELTA_SPEED)


def delta_to_quality(delta: float) -> float:
    return min(max((delta - DELTA_SPEED) / (DELTA_QUALITY - DELTA_SPEED), 0.0), 1.0)


def _get_quality(self) -> float:
    return delta_to_quality(self.delta)


def _set_quality(self, value: float) -> None:
    self.delta = quality_to_delta(value)


class SpecMeshSettings(bpy.types.PropertyGroup):
    delta: FloatProperty(
        name="δ", description="Acceptance threshold of drafted tokens (set it with Speed ⟷ Quality)",
        default=0.5, min=0.0, max=1.0, precision=2)
    quality: FloatProperty(
        name="Speed ⟷ Quality", subtype="FACTOR", min=0.0, max=1.0, get=_get_quality, set=_set_quality,
        description="Left: more drafted tokens accepted per step (faster). Right: closer to the "
                    "backbone's own output (slower). Sets δ from 0.1 to 0.9")
    lossless: BoolProperty(
        name="Lossless", default=False,
        description="Verify drafts exactly: the same output distribution as plain autoregressive "
                    "decoding, whatever the speed. Speed ⟷ Quality is then unused")
    quads: BoolProperty(
        name="Quads", default=True,
        description="At the end, join triangle pairs that are near-planar and near-rectangular into "
                    "quads (Tris to Quads). Normals are always made to point outside")
    heads: IntProperty(
        name="Heads", description="Drafting heads D used per step (0: plain autoregressive decoding)",
        default=4, min=0, max=8)
    faces: IntProperty(
        name="Target Faces", default=300, min=4, max=10000, soft_max=3000,
        description="Faces to make: the whole object is covered with about this many (quads when "
                    "Quads is on, each counting as two triangles; triangles otherwise)")
    max_faces: IntProperty(
        name="Face Budget", description="Stop after this many triangles, whatever the target",
        default=2000, min=1, max=20000, soft_max=5000)
    seed: IntProperty(name="Seed", description="Random seed of sampling and of the point cloud",
                      default=0, min=0)
    symmetry: EnumProperty(
        name="Symmetry", default="NONE",
        items=[("NONE", "Off", "Decode the whole object"),
               ("X", "X", "Mirror across the plane through the object's centre normal to local X"),
               ("Y", "Y", "Mirror across the plane through the object's centre normal to local Y"),
               ("Z", "Z", "Mirror across the plane through the object's centre normal to local Z")],
        description="When the object is symmetric about this axis's plane through its centre, decode one "
                    "half and mirror it (welded on the plane); otherwise the whole object, and the status "
                    "says it was not symmetric")
    attempts: IntProperty(
        name="Attempts", default=1, min=1, max=16,
        description="Generate this many meshes (seeds Seed, Seed+1, ...) and keep the one closest to "
                    "the object. With more than one, the mesh appears at the end instead of live")
