"""Add-on-wide state: the warm backend client, the running generation, the last status line,
the backend installer. Everything the add-on starts is stopped from here (unregister, quit,
loading another file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy

from .client import BackendClient
from .installer import Installer
from .session import GenerationSession


@dataclass(frozen=True)
class LaunchConfig:
    python: str
    model_dir: str  # "" lets the backend pick its default model
    device: str
    log_path: str

    @property
    def argv(self) -> list[str]:
        model = ["--model", self.model_dir] if self.model_dir else []
        # -P: the working directory is never on sys.path (the client also sets PYTHONSAFEPATH and
        # runs the backend in a folder of its own), so no stray `backend/` can stand in for ours.
        return [self.python, "-P", "-m", "backend", "serve", "--device", self.device, *model]


@dataclass
class Status:
    text: str = ""
    is_error: bool = False


client: BackendClient | None = None
_client_config: LaunchConfig | None = None
session: GenerationSession | None = None
installer: Installer | None = None
status = Status()


def get_client(config: LaunchConfig) -> BackendClient:
    """The warm client; replaced (old process stopped) when the preferences changed."""
    global client, _client_config
    if client is not None and config != _client_config:
        client.shutdown()
        client = None
    if client is None:
        client = BackendClient(config.argv, Path(config.log_path))
        _client_config = config
    return client


def running_session() -> GenerationSession | None:
    return session if session is not None and not session.finished else None


def set_status(text: str, is_error: bool = False) -> None:
    status.text, status.is_error = text, is_error


def shutdown() -> None:
    global client, session, installer
    if session is not None:
        session.cancel()
        session = None
    if client is not None:
        client.shutdown()
        client = None
    if installer is not None:
        installer.cancel()
        installer.join(timeout=5.0)
        installer = None


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    # The output object belongs to the file being closed: stop writing to it. The backend stays warm.
    if running_session() is not None:
        session.cancel()


def register_handlers() -> None:
    bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister_handlers() -> None:
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
