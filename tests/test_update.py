"""`copier update`: template fixes arrive, user edits survive, variants switch; the post-copy hook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import copier
import pytest
import yaml

from support import ROOT, TEMPLATE_PARTS, copy_template, run_generated_tests

PACKAGE = "panel_threading_app"
CONFLICT_MARKER = re.compile(r"^(<{7}|>{7}|={7})( .*)?$", re.MULTILINE)
FIRST_COMMIT = "Start from the copier-panel-threading template"
TEMPLATE_FIX = "# Fixed in v2: a comment that stands for a fix of the template.\n"
USER_EDIT = '\n\ndef my_own_worker() -> str:\n    """The user\'s own code."""\n    return "mine"\n'


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "--all")
    git(repo, "-c", "user.name=Test", "-c", "user.email=test@example.com", "commit", "--quiet", "-m", message)


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """A git repository of the working tree's template, tagged v1; the tests add v2."""
    repo = copy_template(tmp_path / "template-repo")
    git(repo, "init", "--quiet")
    commit_all(repo, "v1")
    git(repo, "tag", "v1")
    return repo


def release_v2(repo: Path) -> None:
    """Change a template-owned file and tag the result v2."""
    sessions = repo / "template" / "{{package_name}}" / "_sessions.py"
    sessions.write_text(sessions.read_text() + "\n" + TEMPLATE_FIX)
    commit_all(repo, "v2")
    git(repo, "tag", "v2")


def copy(template: Path, project: Path, **data: object) -> Path:
    copier.run_copy(
        str(template), str(project), data=data, defaults=True, quiet=True, unsafe=True, vcs_ref="v1"
    )
    return project


def update(project: Path, **data: object) -> None:
    copier.run_update(str(project), data=data, defaults=True, overwrite=True, quiet=True, unsafe=True)


def assert_clean_merge(project: Path) -> None:
    """No conflict markers, no .rej or .orig files anywhere in the project."""
    for path in project.rglob("*"):
        if ".git" in path.parts or not path.is_file():
            continue
        assert path.suffix not in (".rej", ".orig"), f"{path} was left by the update"
        conflict = CONFLICT_MARKER.search(path.read_text(errors="replace"))
        assert conflict is None, f"{path} holds a conflict marker: {conflict and conflict.group()}"


def test_the_hook_makes_a_first_commit(template_repo, tmp_path):
    project = copy(template_repo, tmp_path / "app", threading="both")
    assert git(project, "log", "--format=%s").splitlines() == [
        "Start from the copier-panel-threading template"
    ]
    assert git(project, "status", "--porcelain") == ""


def test_the_hook_leaves_an_existing_repository_alone(template_repo, tmp_path):
    outer = tmp_path / "monorepo"
    outer.mkdir()
    git(outer, "init", "--quiet")
    (outer / "README").write_text("monorepo\n")
    commit_all(outer, "monorepo start")
    copy(template_repo, outer / "apps" / "app")
    assert not (outer / "apps" / "app" / ".git").exists()
    assert git(outer, "log", "--format=%s").splitlines() == ["monorepo start"]


def test_skip_tasks_renders_without_the_hook(template_repo, tmp_path):
    project = tmp_path / "app"
    copier.run_copy(
        str(template_repo), str(project), defaults=True, quiet=True, skip_tasks=True, vcs_ref="v1"
    )
    assert (project / "app.py").is_file()
    assert not (project / ".git").exists()


def test_update_brings_template_fixes_and_keeps_user_edits(template_repo, tmp_path):
    project = copy(template_repo, tmp_path / "app", threading="both")
    workers = project / PACKAGE / "workers.py"
    workers.write_text(
        workers.read_text().replace("EXPERIMENT_SECONDS = 0.5", "EXPERIMENT_SECONDS = 2.0") + USER_EDIT
    )
    commit_all(project, "My own worker")
    release_v2(template_repo)

    update(project)

    assert (project / PACKAGE / "_sessions.py").read_text().endswith(TEMPLATE_FIX)
    text = workers.read_text()
    assert "EXPERIMENT_SECONDS = 2.0" in text
    assert text.endswith(USER_EDIT)
    assert_clean_merge(project)
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v2"
    assert answers["threading"] == "both"


SWITCHES = [("session", "global"), ("global", "both"), ("both", "session")]


@pytest.mark.slow
@pytest.mark.parametrize(("before", "after"), SWITCHES)
def test_switching_threading_swaps_the_runner_code(template_repo, tmp_path, before, after):
    project = copy(template_repo, tmp_path / "app", threading=before)
    entry = project / "app.py"  # user-owned, and the same in every variant
    entry.write_text(entry.read_text().replace("pn.extension()", 'pn.extension(sizing_mode="stretch_width")'))
    commit_all(project, "Stretch the page")

    update(project, threading=after)

    package = project / PACKAGE
    assert (package / "session_runner.py").exists() == (after != "global")
    assert (package / "global_runner.py").exists() == (after != "session")
    assert (project / "tests" / "test_session_runner.py").exists() == (after != "global")
    assert (project / "tests" / "test_global_runner.py").exists() == (after != "session")
    assert 'pn.extension(sizing_mode="stretch_width")' in entry.read_text()
    assert_clean_merge(project)
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["threading"] == after
    run_generated_tests(project)


@pytest.mark.slow
@pytest.mark.parametrize(("before", "after"), [("thread", "dask"), ("dask", "thread")])
def test_switching_the_executor_adds_or_removes_the_dask_code(template_repo, tmp_path, before, after):
    project = copy(template_repo, tmp_path / "app", threading="both", executor=before)
    entry = project / "app.py"
    entry.write_text(entry.read_text().replace("pn.extension()", 'pn.extension(sizing_mode="stretch_width")'))
    commit_all(project, "Stretch the page")

    update(project, executor=after)

    on_dask = after == "dask"
    assert (project / PACKAGE / "dask_executor.py").exists() == on_dask
    assert (project / "tests" / "test_dask_executor.py").exists() == on_dask
    assert ("executor=EXECUTOR" in (project / PACKAGE / "app.py").read_text()) == on_dask
    assert ("dask[distributed]" in (project / "pyproject.toml").read_text()) == on_dask
    assert 'pn.extension(sizing_mode="stretch_width")' in entry.read_text()
    assert_clean_merge(project)
    run_generated_tests(project)


#: The template as it landed before the executor question (issue 6) was asked.
BEFORE_EXECUTOR = "c907779"


def template_at(commit: str, repo: Path) -> None:
    """Write the template as it was at ``commit`` into ``repo``, in place of what is there."""
    for part in TEMPLATE_PARTS:
        if (repo / part).is_dir():
            shutil.rmtree(repo / part)
    archive = subprocess.run(
        ["git", "archive", commit, *TEMPLATE_PARTS], cwd=ROOT, capture_output=True, check=True, timeout=60
    )
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive.stdout, check=True, timeout=60)


@pytest.mark.slow
def test_a_project_made_before_the_executor_question_updates_cleanly(template_repo, tmp_path):
    known = subprocess.run(["git", "cat-file", "-e", f"{BEFORE_EXECUTOR}^{{commit}}"], cwd=ROOT, check=False)
    if known.returncode:
        pytest.skip(f"commit {BEFORE_EXECUTOR} is not in this clone's history")
    old = tmp_path / "old-template"
    old.mkdir()
    template_at(BEFORE_EXECUTOR, old)
    git(old, "init", "--quiet")
    commit_all(old, "v1")
    git(old, "tag", "v1")
    project = copy(old, tmp_path / "app", threading="both")
    assert "executor" not in yaml.safe_load((project / ".copier-answers.yml").read_text())
    entry = project / "app.py"
    entry.write_text(entry.read_text().replace("pn.extension()", 'pn.extension(sizing_mode="stretch_width")'))
    commit_all(project, "Stretch the page")
    # v2 is the working tree's template, as in template_repo.
    for part in TEMPLATE_PARTS:
        if (old / part).is_dir():
            shutil.rmtree(old / part)
        if (template_repo / part).is_dir():
            shutil.copytree(template_repo / part, old / part)
        elif (template_repo / part).exists():
            shutil.copy2(template_repo / part, old / part)
    commit_all(old, "v2")
    git(old, "tag", "v2")

    update(project)

    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["executor"] == "thread"
    assert (project / PACKAGE / "executors.py").exists()
    assert not (project / PACKAGE / "dask_executor.py").exists()
    assert 'pn.extension(sizing_mode="stretch_width")' in entry.read_text()
    assert_clean_merge(project)
    run_generated_tests(project)


def test_a_switch_over_edited_examples_leaves_inline_conflicts_not_rej_files(template_repo, tmp_path):
    """As the generated README says: edits where the switch rewrites the examples conflict inline."""
    project = copy(template_repo, tmp_path / "app", threading="session")
    workers = project / PACKAGE / "workers.py"
    workers.write_text(workers.read_text() + USER_EDIT)
    commit_all(project, "My own worker")

    update(project, threading="global")

    text = workers.read_text()
    assert CONFLICT_MARKER.search(text)
    assert "def my_own_worker()" in text
    assert "def fetch_prices()" in text
    assert not list(project.rglob("*.rej"))
