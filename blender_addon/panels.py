"""The sidebar panel: 3D Viewport > N > SpecMesh."""

from __future__ import annotations

import textwrap

import bpy

from . import runtime


class SPECMESH_PT_generate(bpy.types.Panel):
    bl_label = "SpecMesh"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "SpecMesh"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        props = context.scene.specmesh
        session = runtime.running_session()

        if session is None:
            row = layout.row()
            row.scale_y = 1.5
            row.operator("specmesh.generate", icon="MOD_REMESH")
        else:
            # What is known while streaming: triangles against the target (the rules may add a
            # few at the end, so it is a count, not a bar), elapsed, speed.
            box = layout.box().column(align=True)
            for line, icon in zip(session.progress.text(), ("MESH_DATA", "SORTTIME")):
                box.label(text=line, icon=icon)
            layout.operator("specmesh.cancel", icon="CANCEL")

        col = layout.column()
        col.enabled = session is None
        col.label(text="Speed ⟷ Quality")
        row = col.row(align=True)
        row.active = not props.lossless  # greyed out: exact verification has no threshold
        row.prop(props, "quality", text="")
        row.label(text=f"δ {props.delta:.2f}")
        col.prop(props, "lossless")
        col.prop(props, "heads")
        col.prop(props, "quads")
        col.prop(props, "faces", text="Target Quads" if props.quads else "Target Triangles")
        col.prop(props, "max_faces")
        col.prop(props, "symmetry")
        col.prop(props, "seed")
        col.prop(props, "attempts")

        status = runtime.status
        if session is not None:
            layout.label(text=session.message, icon="TIME")
            if session.input_note:
                layout.label(text=session.input_note, icon="MOD_DECIM")
        elif status.text:
            # A long message wraps over a few labels so the last error is readable in the sidebar.
            box = layout.box().column(align=True)
            icon = "ERROR" if status.is_error else "INFO"
            for i, line in enumerate(_wrap(status.text, 42)):
                box.label(text=line, icon=icon if i == 0 else "BLANK1")


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width) or [""]
