"""SpecMesh: turn the selected object into an artist-style low-poly mesh, streamed live from a
local backend process (see docs/protocol.md). Never imports torch."""

from __future__ import annotations

import bpy

from . import operators, panels, preferences, properties, runtime

classes = (
    preferences.SpecMeshPreferences,
    properties.SpecMeshSettings,
    operators.SPECMESH_OT_generate,
    operators.SPECMESH_OT_cancel,
    operators.SPECMESH_OT_install_backend,
    panels.SPECMESH_PT_generate,
)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.specmesh = bpy.props.PointerProperty(type=properties.SpecMeshSettings)
    runtime.register_handlers()


def unregister() -> None:
    runtime.shutdown()  # no backend process outlives the add-on
    runtime.unregister_handlers()
    del bpy.types.Scene.specmesh
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
