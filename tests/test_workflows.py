"""GitHub workflows: the generated project's and this repository's, valid, linted and in step with
the READMEs they mirror; the generated update workflow's script, run outside GitHub."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from support import PACKAGE, ROOT, copy_template, git, install_blocks, release, render

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


def test_the_generated_update_workflow_is_valid_with_least_permissions(project):
    path = project / UPDATE_WORKFLOW
    check_workflow(path)
    workflow = yaml.safe_load(path.read_text())
    assert set(workflow[True]) == {"schedule", "workflow_dispatch"}  # YAML 1.1 reads `on` as True
    assert workflow["permissions"] == {}
    [job] = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    ci = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    ci_actions = {step["uses"] for step in ci["jobs"]["test"]["steps"] if "uses" in step}
    assert {step["uses"] for step in job["steps"] if "uses" in step} <= ci_actions, "ci.yml's, at its commits"
    assert "secrets." not in path.read_text(), "the workflow's own token, and no other secret"


def test_the_generated_update_workflow_runs_the_readmes_commands(project):
    readme = (project / "README.md").read_text()
    uv, _ = install_blocks(readme)
    script, env = update_script(project)
    assert "uvx copier check-update" in readme
    assert "uvx copier check-update --quiet" in script
    assert "copier update --trust" in readme
    assert "uvx copier update --trust --defaults" in script
    assert env["TEST_COMMAND"] == "uv run pytest"
    assert env["TEST_COMMAND"] in uv
    assert "template-update.yml" in readme


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


# The generated template-update workflow, run as GitHub would run its script, outside GitHub.

UPDATE_WORKFLOW = Path(".github") / "workflows" / "template-update.yml"
#: The step whose script does the work, as GitHub runs a step of `shell: bash`.
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]
#: What the throwaway template's v0.2.0 changes in a runner, and says of it in its CHANGELOG.md.
RUNNER_FIX = "# v0.2.0: a comment that stands for a fix of the runners.\n"
FIX_NOTE = "- **A fix of the runners.** `runners/executors.py` is fixed; nothing to do in your code.\n"
FIRST_RELEASE_NOTE = "The first release, from which the project is made.\n"
#: gh, recorded: each call's arguments, and the text of the file that `--body-file` names.
FAKE_GH = f"""\
#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
body = open(args[args.index("--body-file") + 1]).read() if "--body-file" in args else None
with open(os.environ["GH_RECORD"], "a") as record:
    record.write(json.dumps({{"args": args, "body": body}}) + "\\n")
"""
#: uvx, whose `uvx copier` runs this suite's Copier: no download.
FAKE_UVX = '#!/bin/sh\nexec "$@"\n'


def release_with_changelog(repo: Path, tag: str, changelog: str) -> None:
    """Commit the template repository with its CHANGELOG.md, and tag the commit."""
    (repo / "CHANGELOG.md").write_text(changelog)
    release(repo, tag)


def update_script(project: Path) -> tuple[str, dict[str, str]]:
    """The script and the environment of the update workflow's step that runs `copier check-update`."""
    workflow = yaml.safe_load((project / UPDATE_WORKFLOW).read_text())
    [step] = [step for step in workflow["jobs"]["update"]["steps"] if "check-update" in step.get("run", "")]
    assert step["shell"] == "bash"
    return step["run"], step["env"]


def run_update_workflow(project: Path, tools: Path, test_command: str) -> tuple[str, list[dict]]:
    """Run the workflow's script in the project as GitHub would, with gh recorded and uvx this suite's.

    Return its output and the recorded gh calls.
    """
    script, step_env = update_script(project)
    record = tools / "gh.jsonl"
    record.unlink(missing_ok=True)
    environment = {name: value for name, value in os.environ.items() if not name.startswith("GITHUB_")}
    environment |= step_env | {
        "GH_TOKEN": "the workflow's token",
        "GITHUB_REF_NAME": git(project, "branch", "--show-current").strip(),
        "TEST_COMMAND": test_command,
        "GH_RECORD": str(record),
        "PATH": os.pathsep.join([str(tools), str(BIN), os.environ["PATH"]]),
    }
    result = subprocess.run(
        [*BASH, "-c", script], cwd=project, env=environment, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    calls = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    return output, calls


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.slow
def test_the_update_workflow_proposes_each_newer_release_once(tmp_path):
    """Against a throwaway template tagged v0.1.0, then v0.2.0 with a fix of a runner, then v0.3.0.

    v0.2.0: the check sees it, the update applies, the project's quick loop passes, and one pull
    request names v0.2.0 with its CHANGELOG section. Merged, nothing newer: nothing happens.
    v0.3.0 changes a line of pyproject.toml the owner changed too: a draft that names the file,
    and a second run leaves the branch that holds v0.3.0 alone.
    """
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, text in (("gh", FAKE_GH), ("uvx", FAKE_UVX)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    template = copy_template(tmp_path / "template")
    git(template, "init", "--quiet")
    first = f"# Changelog\n\n## v0.1.0\n\n{FIRST_RELEASE_NOTE}"
    release_with_changelog(template, "v0.1.0", first)
    project = tmp_path / "app"
    render(template, project, threading="both")  # the hook commits it
    main = git(project, "branch", "--show-current").strip()
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", str(origin))
    git(project, "remote", "add", "origin", str(origin))
    git(project, "push", "--quiet", "origin", main)
    fixed = template / "template" / "{{package_name}}" / "runners" / "executors.py"
    fixed.write_text(fixed.read_text() + "\n" + RUNNER_FIX)
    release_with_changelog(
        template, "v0.2.0", f"# Changelog\n\n## v0.2.0\n\n{FIX_NOTE}\n## v0.1.0\n\n{FIRST_RELEASE_NOTE}"
    )

    quick_loop = f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider -m 'not slow'"
    output, calls = run_update_workflow(project, tools, quick_loop)

    assert [call["args"][:2] for call in calls] == [["auth", "setup-git"], ["pr", "list"], ["pr", "create"]]
    created = calls[-1]["args"]
    assert (option(created, "--base"), option(created, "--head")) == (main, "template-update")
    assert "v0.2.0" in option(created, "--title")
    assert "--draft" not in created
    body = calls[-1]["body"]
    assert "**v0.2.0**" in body
    assert FIX_NOTE in body, "the release's CHANGELOG section"
    assert FIRST_RELEASE_NOTE not in body, "and no other"
    assert f"`{quick_loop}` **passed**" in body
    assert " passed" in body.split("**passed**")[1], "the end of the tests' output"
    assert "Conflicts" not in body
    pushed = f"template-update:{PACKAGE}/runners/executors.py"
    assert git(origin, "show", pushed).endswith(RUNNER_FIX)
    assert "_commit: v0.2.0" in git(origin, "show", "template-update:.copier-answers.yml")

    # The pull request merged: the project is on the newest release, and the workflow does nothing.
    git(project, "switch", "--quiet", main)
    git(project, "merge", "--quiet", "--ff-only", "template-update")
    git(project, "push", "--quiet", "origin", main)
    branch = git(origin, "rev-parse", "template-update")
    output, calls = run_update_workflow(project, tools, "false")
    assert "nothing to do" in output
    assert calls == []
    assert git(origin, "rev-parse", "template-update") == branch
    assert git(project, "status", "--porcelain") == ""

    # The owner pins ruff; v0.3.0 raises the template's pin: a conflict in the shared pyproject.toml.
    pins = {project / "pyproject.toml": "0.8.6", template / "template" / "pyproject.toml.jinja": "0.9"}
    for pyproject, pin in pins.items():
        pyproject.write_text(pyproject.read_text().replace('"ruff>=0.8"', f'"ruff>={pin}"'))
    git(project, "commit", "--quiet", "--all", "-m", "Pin ruff")
    git(project, "push", "--quiet", "origin", main)
    release_with_changelog(
        template, "v0.3.0", f"# Changelog\n\n## v0.3.0\n\n- ruff 0.9.\n\n## v0.2.0\n\n{FIX_NOTE}"
    )

    output, calls = run_update_workflow(project, tools, "true")

    created = calls[-1]["args"]
    assert created[:2] == ["pr", "create"]
    assert "--draft" in created
    assert "## Conflicts" in calls[-1]["body"]
    assert "- `pyproject.toml`" in calls[-1]["body"]
    assert "_commit: v0.3.0" in git(origin, "show", "template-update:.copier-answers.yml")

    # The next week: the branch holds v0.3.0 already, with whatever the owner committed to it.
    git(project, "reset", "--quiet", "--hard")
    git(project, "switch", "--quiet", main)
    branch = git(origin, "rev-parse", "template-update")
    output, calls = run_update_workflow(project, tools, "false")
    assert "holds the update to v0.3.0 already" in output
    assert [call["args"] for call in calls] == [["auth", "setup-git"]]
    assert git(origin, "rev-parse", "template-update") == branch
