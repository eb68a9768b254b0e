"""docs/architecture.md keeps matching the code: every module it names exists, and the defaults
it documents are the code's."""

import ast
import dataclasses
import importlib.util
import re
from pathlib import Path

from backend.options import GenerateOptions

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def layout_paths() -> list[Path]:
    """Files and folders of the "Package layout" tree (and the .py names its folder lines list)."""
    block = DOC.split("## Package layout", 1)[1].split("```")[1]
    stack: list[str] = []
    paths = []
    for line in block.splitlines()[1:]:
        match = re.match(r"( *)(\S+)", line)
        if not match or len(match.group(1)) > 2 * len(stack) + 2 or len(match.group(1)) % 2:
            continue  # a description's continuation line
        depth = len(match.group(1)) // 2
        name = match.group(2).rstrip(",")
        stack = stack[:depth]
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
            folder = ROOT.joinpath(*stack)
            paths.append(folder)
            paths += [folder / extra for extra in re.findall(r"\b(\w+\.py)\b", line[match.end():])]
        elif name.endswith(".py"):
            paths.append(ROOT.joinpath(*stack, name))
    return paths


def test_every_module_in_the_package_layout_exists():
    paths = layout_paths()
    assert len(paths) > 50
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    assert not missing


def test_every_backend_module_the_page_names_exists():
    files = set(re.findall(r"\b(backend(?:/\w+)+\.py)\b", DOC))
    assert [f for f in files if not (ROOT / f).is_file()] == []
    for dotted in set(re.findall(r"\b(backend(?:\.\w+)+)", DOC)):
        parts, length = dotted.split("."), 1
        while length < len(parts):  # the longest importable prefix is a module...
            try:
                if importlib.util.find_spec(".".join(parts[:length + 1])) is None:
                    break
            except ModuleNotFoundError:  # the prefix is a module, not a package
                break
            length += 1
        value = importlib.import_module(".".join(parts[:length]))
        for attribute in parts[length:]:  # ...and what follows it are its attributes
            value = getattr(value, attribute)


def documented_defaults(class_name: str) -> dict:
    block = DOC.split(f"class {class_name}:", 1)[1].split("\n\n", 1)[0].split("class ", 1)[0]
    return {name: ast.literal_eval(value.strip())
            for name, value in re.findall(r"(\w+): [\w |]+ = ([^;#\n]+)", block)}


def test_documented_generate_options_are_the_defaults():
    documented = documented_defaults("GenerateOptions")
    assert documented == dataclasses.asdict(GenerateOptions())


def test_documented_sampling_defaults_are_the_defaults():
    from backend.decoding.sampling import SamplingConfig

    text = re.search(r"SamplingConfig\(([^)]*=[^)]*)\)", DOC).group(1)
    documented = {k: ast.literal_eval(v) for k, v in (part.split("=") for part in text.split(", "))}
    assert documented == dataclasses.asdict(SamplingConfig())
