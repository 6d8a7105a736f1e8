"""The generated pre-commit configuration: ruff, and no conflict markers, with no download."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import PACKAGE, render


def pre_commit(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pre-commit in the project with the tools of this environment, as the dev extra installs them."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PRE_COMMIT_HOME": str(project.parent / "pre-commit-home"),
    }
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture
def committed_project(template: Path, tmp_path: Path) -> Path:
    """A fresh project with its first commit (the post-copy hook makes it)."""
    project = render(template, tmp_path / "app", threading="both")
    assert (project / ".git").is_dir()
    return project


def test_a_new_project_passes_its_hooks(committed_project):
    result = pre_commit(committed_project, "--all-files")
    assert result.returncode == 0, result.stdout + result.stderr
    for hook in ("no conflict markers", "ruff check", "ruff format"):
        assert hook in result.stdout


def test_conflict_markers_an_update_left_are_refused(committed_project):
    workers = committed_project / PACKAGE / "workers.py"
    # What `copier update` leaves in a file where both sides changed: no git merge is in progress.
    workers.write_text(
        workers.read_text()
        + "<<<<<<< before updating\nmine = 1\n=======\ntheirs = 2\n>>>>>>> after updating\n"
    )
    result = pre_commit(committed_project, "--files", str(workers.relative_to(committed_project)))
    assert result.returncode != 0
    assert "Merge conflict string" in result.stdout
