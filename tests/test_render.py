"""Every variant renders the files it should, and only those, as clean Python."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import executor_of, run_generated_tests, threading_of

PACKAGE = "panel_threading_app"  # the default package_name
COMMON_FILES = {
    ".copier-answers.yml",
    ".gitignore",
    "README.md",
    "app.py",
    "pyproject.toml",
    f"{PACKAGE}/__init__.py",
    f"{PACKAGE}/_sessions.py",
    f"{PACKAGE}/app.py",
    f"{PACKAGE}/executors.py",
    f"{PACKAGE}/runners.py",
    f"{PACKAGE}/workers.py",
    "tests/conftest.py",
    "tests/test_browser.py",
    "tests/test_ctrl_c.py",
    "tests/test_served_app.py",
}
VARIANT_FILES = {
    "session": {f"{PACKAGE}/session_runner.py", "tests/test_session_runner.py"},
    "global": {f"{PACKAGE}/global_runner.py", "tests/test_global_runner.py"},
    "dask": {f"{PACKAGE}/dask_executor.py", "tests/test_dask_executor.py"},
}
VARIANT_NAMES = {
    "session": ("SessionTaskRunner", "QueueFull", "simulate_experiment", "session_runner"),
    "global": ("GlobalTaskRunner", "GlobalSubscription", "fetch_prices", "global_runner"),
    "dask": ("DaskExecutor", "dask_executor", "distributed", "DASK_SCHEDULER_ADDRESS"),
}


def chosen(project: Path) -> set[str]:
    """The optional parts the project's answers chose."""
    threading = threading_of(project)
    parts = {"session", "global"} if threading == "both" else {threading}
    return parts | ({"dask"} if executor_of(project) == "dask" else set())


#: A Jinja tag's end; a percent format in an f-string ({share:.0%}) is not one.
JINJA_CLOSE = re.compile(r"(?<![0-9])%}")

#: Folders in a project that the template did not write (the hook's git repository, caches).
NOT_RENDERED = {".git", "__pycache__", ".pytest_cache"}


def project_files(project: Path) -> dict[str, str]:
    return {
        path.relative_to(project).as_posix(): path.read_text()
        for path in sorted(project.rglob("*"))
        if path.is_file()
        and not {".git", "__pycache__", ".pytest_cache"} & set(path.relative_to(project).parts)
    }


def test_the_variant_has_its_files_and_no_others(project):
    expected = set(COMMON_FILES)
    for part in chosen(project):
        expected |= VARIANT_FILES[part]
    assert set(project_files(project)) == expected


def test_no_code_of_the_unchosen_variant(project):
    files = project_files(project)
    for part in set(VARIANT_NAMES) - chosen(project):
        for path, text in files.items():
            for name in VARIANT_NAMES[part]:
                assert name not in text, f"{path} mentions {name}, but the project did not choose {part}"


def test_no_jinja_residue(project):
    for path, text in project_files(project).items():
        for marker in ("{%", "{{", "{#", "#}"):
            assert marker not in text, f"{path} holds {marker!r}"
        assert not JINJA_CLOSE.search(text), f"{path} holds '%}}'"
        assert "\n\n\n" not in text or path.endswith(".py"), f"{path} has a clump of blank lines"
        assert "\n\n\n\n" not in text, f"{path} has a clump of blank lines"
        assert text.endswith("\n"), f"{path} does not end with a newline"
        assert not text.endswith("\n\n"), f"{path} ends with blank lines"
        trailing = [n for n, line in enumerate(text.splitlines(), 1) if line != line.rstrip()]
        assert not trailing, f"{path} has trailing spaces on lines {trailing}"


def test_answers_are_recorded(project):
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["package_name"] == PACKAGE
    assert answers["threading"] in ("session", "global", "both")
    assert ("global_interval_seconds" in answers) == (answers["threading"] != "session")
    assert ("max_tasks" in answers) == (answers["threading"] != "global")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(project, command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache", "."],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_generated_tests_pass(project):
    output = run_generated_tests(project)
    assert " passed" in output
    assert "skipped" not in output
    assert " warning" not in output.splitlines()[-1], output[-3000:]  # users would see them too
