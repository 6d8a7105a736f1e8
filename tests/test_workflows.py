"""GitHub workflows: the generated project's and this repository's, valid, linted and in step with
the READMEs they mirror."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from support import ROOT, install_blocks

#: The checkers, installed with the suite: GitHub's workflow schema, and zizmor's security audits.
BIN = Path(sys.executable).parent
#: The Python lines the generated workflow must test: those `requires-python` admits, with a Panel.
PYTHON_LINES = ["3.11", "3.12", "3.13"]


def check_workflow(path: Path) -> None:
    """Fail unless the workflow matches GitHub's schema and zizmor (offline) finds nothing."""
    for command in (
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", path],
        [BIN / "zizmor", "--offline", "--no-progress", path],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{command[0].name}:\n{result.stdout}{result.stderr}"


def run_lines(workflow: dict) -> list[str]:
    """Every command line of every step's `run`, in order."""
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    return [line.strip() for step in steps for line in step.get("run", "").splitlines() if line.strip()]


def test_the_generated_workflow_is_valid(project):
    check_workflow(project / ".github" / "workflows" / "ci.yml")


def test_the_generated_workflow_runs_the_readmes_commands_on_every_python_line(project):
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    commands = run_lines(workflow)
    readme, _ = install_blocks((project / "README.md").read_text())
    for command in ("uv sync", "uv run pytest"):  # the install, and the whole suite
        assert command in readme
        assert command in commands
    assert {"uv run ruff check .", "uv run ruff format --check ."} <= set(commands)
    assert commands.index("uv sync") < commands.index("uv run pytest")
    matrix = workflow["jobs"]["test"]["strategy"]["matrix"]["python-version"]
    assert matrix == PYTHON_LINES
    requires = tomllib.loads((project / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={PYTHON_LINES[0]}"
    steps = workflow["jobs"]["test"]["steps"]
    uploads = [step for step in steps if "upload-artifact" in step.get("uses", "")]
    assert [step["with"]["path"] for step in uploads] == ["test-results/"]  # the screenshots plugin's folder
    assert uploads[0]["if"] == "failure()"


def test_the_template_workflow_is_valid_and_runs_ci():
    path = ROOT / ".github" / "workflows" / "template.yml"
    check_workflow(path)
    workflow = yaml.safe_load(path.read_text())
    assert "bash .ci/run" in run_lines(workflow)
    assert workflow[True]["schedule"], "a scheduled run catches new releases"  # YAML 1.1 reads `on` as True
    assert workflow["jobs"]["suite"]["timeout-minutes"] <= 90


def test_the_checkers_can_fail(tmp_path):
    """A workflow with a key GitHub does not know, or an action not pinned to a commit, is refused."""
    good = (ROOT / ".github" / "workflows" / "template.yml").read_text()
    bad = tmp_path / "bad.yml"
    bad.write_text(good.replace("timeout-minutes: 90", "timeout-minutes: 90\n    not-a-key: 1"))
    with pytest.raises(AssertionError, match="check-jsonschema"):
        check_workflow(bad)
    unpinned = tmp_path / "unpinned.yml"
    unpinned.write_text(good.replace("@08c6903cd8c0fde910a37f88322edcfb5dd907a8", "@v5"))
    with pytest.raises(AssertionError, match="zizmor"):
        check_workflow(unpinned)
