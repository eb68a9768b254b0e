"""The README's Quick start is what CI runs and what a new user types: keep it true."""

from __future__ import annotations

import re
import shlex

from conftest import REPO_ROOT


def quick_start_commands() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_has_exactly_two_commands():
    assert len(quick_start_commands()) == 2


def test_ci_runs_the_readme_test_command_verbatim():
    _, test_command = quick_start_commands()
    assert "pytest" in test_command
    assert test_command in (REPO_ROOT / ".ci" / "run").read_text()


def test_main_command_uses_a_bundled_example_and_the_shipped_model():
    main_command, _ = quick_start_commands()
    generate = main_command.split("&&")[-1]
    words = shlex.split(generate)
    assert words[:2] == ["specmesh", "generate"]
    assert (REPO_ROOT / words[2]).is_file()
    assert (REPO_ROOT / "models" / "default" / "config.json").is_file()
    assert (REPO_ROOT / "models" / "default" / "model.safetensors").is_file()


def test_usage_block_lists_every_option_of_the_user_verbs():
    """The README's command-line block names every option of generate, serve, tokenize, eval and
    bench (train and distill point to --help for their many)."""
    from backend.cli import build_parser

    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("### Command line", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    missing = []
    for verb in ("generate", "serve", "tokenize", "eval", "bench"):
        parser = build_parser([verb])
        sub = next(a for a in parser._actions if a.dest == "verb").choices[verb]
        for action in sub._actions:
            names = [o for o in action.option_strings if o not in ("-h", "--help")]
            if names and not any(re.search(rf"{re.escape(n)}\b", block) for n in names):
                missing.append(f"{verb} {names[0]}")
    assert not missing, f"README usage block lacks: {missing}"
