"""The template repository itself: its own code is clean, and its README's test command is CI's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from support import ROOT


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_the_repository_code_is_ruff_clean(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache", "tests", "hooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = readme.split("## Test the template", 1)[1].split("```bash\n", 1)[1].split("\n", 1)[0]
    assert command.endswith("python -m pytest")
    assert command in (ROOT / ".ci" / "run").read_text()
