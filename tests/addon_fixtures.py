"""Fixtures for the add-on and server tests (import the ones you use into the test module).

Real bpy runs in a throw-away Blender user folder: BLENDER_USER_RESOURCES is set here, before
anything imports bpy, so installing the extension never touches ~/.config/blender.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

if "bpy" not in sys.modules:
    _blender_user = tempfile.mkdtemp(prefix="specmesh-blender-user-")
    os.environ["BLENDER_USER_RESOURCES"] = _blender_user
    atexit.register(shutil.rmtree, _blender_user, ignore_errors=True)

bpy_mark = pytest.mark.bpy


def load_addon_module(name: str) -> ModuleType:
    """A bpy-free add-on module (client, installer) loaded from its file, without the package."""
    path = REPO_ROOT / "blender_addon" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"specmesh_addon_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def serve_argv(model_dir: Path) -> list[str]:
    """How the add-on starts the backend (`-P`: the working directory is not on sys.path)."""
    return [sys.executable, "-P", "-m", "backend", "serve", "--model", str(model_dir), "--device", "cpu"]


def serve_env() -> dict[str, str]:
    """This checkout's backend on the path explicitly: the client runs the backend in a folder of
    its own with a safe path, so it would otherwise import whichever `backend` is installed."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


@pytest.fixture(scope="session")
def long_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random model with room for 3072 tokens, so that a generation lasts long enough
    (a second or more on a CPU) to be cancelled or killed part-way."""
    import torch

    from backend.model.config import load_preset
    from backend.model.decoder import MeshTransformer
    from backend.model.heads import build_heads
    from backend.model.io import save_model

    torch.manual_seed(0)
    config = load_preset("tiny")
    config.max_seq_len = 3072
    model = MeshTransformer(config)
    out = tmp_path_factory.mktemp("long_tiny_model")
    save_model(out, model, build_heads(config, lm_head=model.lm_head))
    return out


@pytest.fixture
def client(long_model_dir: Path, tmp_path: Path):
    """The add-on's BackendClient on `specmesh serve` with the long-running test model; it must
    leave no process behind."""
    c = load_addon_module("client").BackendClient(serve_argv(long_model_dir), tmp_path / "backend.log",
                                                  env=serve_env(), startup_timeout=120)
    yield c
    c.shutdown()
    assert c.pid is None or process_gone(c.pid)


def wait_for(client, predicate, timeout: float = 60.0) -> list[dict]:
    """Poll `client` until an event satisfies `predicate`; returns every event seen (the match last)."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.poll(budget_s=0.05):
            seen.append(event)
            if predicate(event):
                return seen
        client.wait(0.05)
    raise AssertionError(f"no matching event within {timeout} s; saw {[e.get('event') for e in seen]}")


def cloud(n: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points on a unit sphere with their normals."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), points.astype(np.float32)


def generate_request(request_id: str, max_faces: int = 30, **fields) -> dict:
    points, normals = cloud()
    return {"op": "generate", "id": request_id, "points": points.tolist(), "normals": normals.tolist(),
            "max_faces": max_faces, **fields}


def process_gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def backend_children() -> list:
    """Backend server processes started by this test process (orphan check)."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "serve" in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(scope="session")
def addon_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("bpy")
    sys.path.insert(0, str(REPO_ROOT))
    import build_addon

    return build_addon.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def addon(addon_zip: Path, long_model_dir: Path) -> Iterator[ModuleType]:
    """The built zip installed with Blender's extension installer, enabled, and pointed at this
    test's Python (which has the backend) and the long tiny model."""
    bpy = pytest.importorskip("bpy")
    import build_addon

    name = build_addon.install_into_blender(addon_zip)
    configure(name, long_model_dir)
    yield sys.modules[name]
    bpy.ops.preferences.addon_disable(module=name)
    bpy.ops.extensions.package_uninstall(repo_index=_repo_index(bpy, "user_default"), pkg_id="specmesh")


def configure(name: str, model_dir: Path) -> None:
    """Point the enabled add-on at this test's Python (which has the backend) and a model.
    Blender forgets add-on preferences when the add-on is disabled, so call it after re-enabling."""
    import bpy

    prefs = bpy.context.preferences.addons[name].preferences
    prefs.backend_python = sys.executable
    prefs.model_dir = str(model_dir)
    prefs.device = "cpu"


def _repo_index(bpy: ModuleType, module: str) -> int:
    return [r.module for r in bpy.context.preferences.extensions.repos].index(module)


@pytest.fixture
def monkey(addon: ModuleType):
    """A Suzanne with a non-trivial transform, the only selected and active object."""
    import bpy

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    bpy.ops.mesh.primitive_monkey_add(location=(1.0, -2.0, 0.5), rotation=(0.3, 0.2, 1.1), scale=(1.5, 1.0, 0.7))
    obj = bpy.context.active_object
    obj.select_set(True)
    return obj
