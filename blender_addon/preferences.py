"""Add-on preferences: which Python runs the backend, on which device, with which model."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from . import runtime
from .installer import InstallState, venv_python

ADDON_DIR = Path(__file__).resolve().parent
# build_addon.py bundles the backend source and the default model inside the extension.
BUNDLED_BACKEND = ADDON_DIR / "backend_src"
BUNDLED_MODEL = ADDON_DIR / "models" / "default"


def user_dir() -> Path:
    """The only place this add-on writes to (venv, logs)."""
    return Path(bpy.utils.extension_path_user(__package__, create=True))


def backend_source() -> Path:
    """The bundled backend, or the checkout this add-on lives in when run from source."""
    return BUNDLED_BACKEND if BUNDLED_BACKEND.is_dir() else ADDON_DIR.parent


def get(context: bpy.types.Context | None = None) -> "SpecMeshPreferences":
    return (context or bpy.context).preferences.addons[__package__].preferences


class SpecMeshPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    backend_python: StringProperty(
        name="Backend Python", subtype="FILE_PATH", default="",
        description="Python interpreter with torch and the SpecMesh backend installed. "
                    "Empty: the environment made by Install Backend")
    base_python: StringProperty(
        name="Python for the venv", subtype="FILE_PATH", default="",
        description="Python 3.11 to 3.14 used by Install Backend to create the environment. "
                    "Empty: python3.11 or python3 found on PATH")
    device: EnumProperty(
        name="Device", default="auto",
        items=[("auto", "Auto", "CUDA when available, else CPU"),
               ("cuda", "CUDA", "NVIDIA GPU"),
               ("cpu", "CPU", "Processor only")])
    model_dir: StringProperty(
        name="Model", subtype="DIR_PATH", default="",
        description="Model directory (config.json + safetensors). Empty: the model shipped with the add-on")

    def resolved_python(self) -> Path:
        return Path(bpy.path.abspath(self.backend_python)) if self.backend_python else venv_python(user_dir() / "venv")

    def resolved_model(self) -> str:
        if self.model_dir:
            return bpy.path.abspath(self.model_dir)
        return str(BUNDLED_MODEL) if BUNDLED_MODEL.is_dir() else ""

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        col = layout.column()
        col.prop(self, "backend_python")
        python = self.resolved_python()
        if not self.backend_python:
            col.label(text=f"Using {python}", icon="CHECKMARK" if python.is_file() else "INFO")
        col.prop(self, "device")
        col.prop(self, "model_dir")
        if not self.model_dir:
            col.label(text=f"Using {self.resolved_model() or 'the backend default model'}")

        box = layout.box()
        box.label(text="Backend installation", icon="CONSOLE")
        box.prop(self, "base_python")
        installer = runtime.installer
        row = box.row()
        row.enabled = installer is None or not installer.running
        row.operator("specmesh.install_backend", icon="IMPORT")
        if installer is None:
            box.label(text="Creates a venv in the add-on's user folder and installs PyTorch (needs Online Access).")
            return
        box.progress(factor=installer.fraction, type="BAR", text=installer.message)
        log = box.column(align=True)
        log.scale_y = 0.7
        for line in list(installer.lines)[-12:]:
            log.label(text=line[:160])
        if installer.state is InstallState.FAILED:
            box.label(text=f"See {installer.log_path}", icon="ERROR")
