"""backend.options is the one place for option names, defaults and bounds: it imports no torch (the
server's validator and the CLI parser read it), and the add-on, which cannot import the backend,
declares the very same bounds and defaults on its properties."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from backend.options import BOUNDS, DEFAULTS, MAX_HEADS, GenerateOptions

ROOT = Path(__file__).resolve().parents[1]


def test_options_import_no_torch():
    code = "import sys, backend.options, backend.server.protocol; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def addon_properties() -> dict[str, dict]:
    tree = ast.parse((ROOT / "blender_addon" / "properties.py").read_text())
    settings = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SpecMeshSettings")
    return {item.target.id: {k.arg: ast.literal_eval(k.value) for k in item.annotation.keywords
                             if k.arg in ("default", "min", "max")}
            for item in settings.body if isinstance(item, ast.AnnAssign) and isinstance(item.annotation, ast.Call)}


def test_addon_properties_have_the_option_bounds_and_defaults():
    props = addon_properties()
    assert (props["delta"]["min"], props["delta"]["max"]) == BOUNDS["delta"]
    assert props["delta"]["default"] == DEFAULTS.delta
    assert (props["max_faces"]["min"], props["max_faces"]["max"]) == BOUNDS["max_faces"]
    assert props["max_faces"]["default"] == DEFAULTS.max_faces
    assert props["heads"]["max"] == MAX_HEADS
    assert props["seed"]["default"] == DEFAULTS.seed


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_every_bound_is_enforced(name):
    low, high = BOUNDS[name]
    span = high - low
    for bad in (low - max(span, 1), high + max(span, 1)):
        with pytest.raises(ValueError, match=name):
            GenerateOptions(**{name: type(low)(bad)})
