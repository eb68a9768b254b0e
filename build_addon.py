"""Build the installable Blender extension: dist/specmesh-<version>.zip.

The zip holds the add-on (blender_addon/) at its root, plus what Install Backend needs offline
from the repository: `backend_src/` (backend/, pyproject.toml, README.md) and `models/default/`
when a trained model exists. It is built and validated by Blender's own extension tool
(`blender_ext.py`, shipped with Blender and with the `bpy` wheel).

    python build_addon.py [--out dist] [--blender-ext PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "blender_addon"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


def version() -> str:
    """The manifest's version, which must be the backend's: one release, one number."""
    manifest = tomllib.loads((ADDON / "blender_manifest.toml").read_text())["version"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    if manifest != project:
        raise ValueError(f"blender_manifest.toml version {manifest} != pyproject.toml version {project}")
    return manifest


def find_blender_ext(explicit: str | None = None) -> Path:
    if explicit:
        path = Path(explicit)
    else:
        spec = importlib.util.find_spec("bpy")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("blender_ext.py not found: install the dev extra (bpy) or pass --blender-ext "
                                    "<blender>/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py")
        found = sorted(Path(spec.submodule_search_locations[0]).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        path = found[-1] if found else Path("blender_ext.py")
    if not path.is_file():
        raise FileNotFoundError(f"blender_ext.py not found at {path}")
    return path


def stage(dest: Path) -> None:
    """Lay out the extension's files in `dest`."""
    shutil.copytree(ADDON, dest, ignore=IGNORE)
    source = dest / "backend_src"
    shutil.copytree(ROOT / "backend", source / "backend", ignore=IGNORE)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, source / name)
    model = ROOT / "models" / "default"
    if (model / "config.json").is_file():
        shutil.copytree(model, dest / "models" / "default", ignore=IGNORE)


def build(out_dir: Path = ROOT / "dist", blender_ext: str | None = None) -> Path:
    tool = find_blender_ext(blender_ext)
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"specmesh-{version()}.zip"
    zip_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "specmesh"
        stage(staged)
        _run(tool, "build", "--source-dir", str(staged), "--output-filepath", str(zip_path))
    _run(tool, "validate", str(zip_path))
    return zip_path


def _run(tool: Path, *args: str) -> None:
    result = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"blender_ext.py {args[0]} failed:\n{result.stdout}{result.stderr}")


def install_into_blender(zip_path: Path, repo: str = "user_default") -> str:
    """Install and enable the zip with Blender's extension installer (inside Blender or with
    `import bpy`); returns the add-on's module name."""
    import bpy

    result = bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo=repo,
                                                      enable_on_install=True, overwrite=True)
    if result != {"FINISHED"}:
        raise RuntimeError(f"Blender did not install {zip_path}: {result}")
    return f"bl_ext.{repo}.specmesh"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--blender-ext", help="path to Blender's blender_ext.py (default: from the bpy module)")
    args = parser.parse_args(argv)
    zip_path = build(args.out, args.blender_ext)
    print(f"{zip_path} ({zip_path.stat().st_size / 1e6:.1f} MB), validated by blender_ext.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
