"""The template repository itself: its own code is clean, and its README's test command is CI's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from support import ROOT, commit_all, copy_template, git, readme_command


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_the_repository_code_is_ruff_clean(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache", "tests", "hooks", "bench", "docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    command = readme_command((ROOT / "README.md").read_text(), "Test the template")
    assert command.endswith("python -m pytest")
    assert command in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_the_readme_generate_command_works_as_written(tmp_path):
    """The command, run in a clone of the template, makes an app that `copier update` can update."""
    template = copy_template(tmp_path / "copier-panel-threading")
    shutil.copy(ROOT / ".gitignore", template)  # the command's .venv leaves the clone clean
    git(template, "init", "--quiet")
    commit_all(template, "clone")
    command = readme_command((ROOT / "README.md").read_text(), "Use it")
    assert command.endswith(' "$PWD" ../my-app')
    # pip leaves the bytecode to the first import, as in test_render's README commands.
    environment = {**os.environ, "PIP_COMPILE": "false"}
    result = subprocess.run(
        ["bash", "-c", command], cwd=template, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    app = tmp_path / "my-app"
    assert (app / "app.py").is_file()
    assert "panel serve app.py --dev" in result.stdout + result.stderr  # the next steps are printed
    assert (app / ".git").is_dir()  # the hook made the first commit
    # The recorded source is the clone, not a path that means the app once inside it.
    update = subprocess.run(
        [sys.executable, "-m", "copier", "update", "--trust", "--defaults"],
        cwd=app, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert update.returncode == 0, update.stdout[-3000:] + update.stderr[-3000:]


@pytest.mark.slow
def test_the_benchmark_prints_its_table_and_writes_its_page(tmp_path):
    """A quick run writes the page only where --output says: the repository's page stays a full run's."""
    page = ROOT / "docs" / "benchmark.md"
    committed = page.read_bytes()
    output = tmp_path / "benchmark.md"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--tasks", "500", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Machine: ")
    assert "| Measure | Result |" in lines
    rows = [line for line in lines if line.startswith("| ") and "Measure" not in line and "---" not in line]
    assert len(rows) == 33, rows
    assert "Constant parameter" not in result.stderr
    written = output.read_text()
    assert written.startswith("# Benchmark\n")
    assert "\n".join(lines[2:]).strip() in written  # the table it printed
    for name in ("Python", "Panel", "Bokeh", "param", "distributed", "cores"):
        assert f"{name} " in written or f" {name}" in written, name
    assert page.read_bytes() == committed, "a --quick run rewrote docs/benchmark.md"
