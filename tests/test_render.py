"""Every variant renders the files it should, and only those, as clean Python."""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from support import (
    PACKAGE,
    RUNS_THE_QUICK_LOOP,
    USER_FILES,
    executor_of,
    install_blocks,
    render,
    run_generated_tests,
    threading_of,
)

#: The template's files in every variant: the runners' folders, tool settings, the answers.
TEMPLATE_FILES = {
    ".copier-answers.yml",
    ".gitignore",
    ".pre-commit-config.yaml",
    "pyproject.toml",
    f"{PACKAGE}/runners/DESIGN.md",
    f"{PACKAGE}/runners/README.md",
    f"{PACKAGE}/runners/__init__.py",
    f"{PACKAGE}/runners/_process.py",
    f"{PACKAGE}/runners/_session.py",
    f"{PACKAGE}/runners/event_loop.py",
    f"{PACKAGE}/runners/executors.py",
    f"{PACKAGE}/runners/metrics.py",
    f"{PACKAGE}/runners/admin.py",
    f"{PACKAGE}/runners/settings.py",
    f"{PACKAGE}/runners/testing.py",
    "tests/runners/conftest.py",
    "tests/runners/faults.py",
    "tests/runners/test_async_workers.py",
    "tests/runners/test_ctrl_c.py",
    "tests/runners/test_metrics.py",
    "tests/runners/test_admin.py",
    "tests/runners/screenshots.py",
    "tests/runners/test_readme_examples.py",
    "tests/runners/test_screenshots.py",
    "tests/runners/test_served_app.py",
    "tests/runners/test_server_loop.py",
    "tests/runners/test_session_updates.py",
}
COMMON_FILES = USER_FILES | TEMPLATE_FILES
VARIANT_FILES = {
    "session": {
        f"{PACKAGE}/runners/session_runner.py",
        f"{PACKAGE}/runners/pool.py",
        f"{PACKAGE}/runners/kept.py",
        "tests/runners/test_session_runner.py",
        "tests/runners/test_pool.py",
        "tests/runners/test_kept.py",
    },
    "global": {
        f"{PACKAGE}/runners/global_runner.py",
        f"{PACKAGE}/runners/schedule.py",
        "tests/runners/test_global_runner.py",
        "tests/runners/test_schedule.py",
        "tests/runners/test_howto_bindings.py",
    },
    "dask": {f"{PACKAGE}/runners/dask_executor.py", "tests/runners/test_dask_executor.py"},
}
VARIANT_NAMES = {
    "session": (
        *("SessionTaskRunner", "QueueFull", "WorkerPool", "simulate_experiment", "session_runner"),
        *("for_user", "KEEP_SECONDS", "panel_runners_browser"),
    ),
    "global": ("GlobalTaskRunner", "fetch_prices", "global_runner"),
    "dask": ("DaskExecutor", "dask_executor", "distributed", "DASK_SCHEDULER_ADDRESS"),
}


def chosen(project: Path) -> set[str]:
    """The optional parts the project's answers chose."""
    threading = threading_of(project)
    parts = {"session", "global"} if threading == "both" else {threading}
    return parts | ({"dask"} if executor_of(project) == "dask" else set())


#: What the user's files define (the example's names): the template's own files never mention them,
#: so that its tests and runners keep working once the user replaced the example.
USER_NAMES = re.compile(
    rf"{PACKAGE}\.(app|workers)\b|from \.\.?(app|workers) import|import_module\([^)]*(app|workers)\b"
    r"|\b(simulate_experiment|fetch_prices|experiments_panel|prices_panel|create_app|add_experiments|add_prices)\b"
    r"|EXPERIMENT_SECONDS|TICKERS|Run experiment|Cancel running|Clear queue|\bapp\.py\b"
)


def test_the_template_files_name_nothing_of_the_users(project):
    """The update tests run the template's tests beside a rewritten app; this finds the names at once."""
    for path, text in project_files(project).items():
        if path in USER_FILES or not path.endswith(".py"):
            continue
        code = re.sub(r'"""(.*?)"""', "", text, flags=re.DOTALL)  # docstrings may point users to their files
        code = "\n".join(line.split("#", 1)[0] for line in code.splitlines())
        found = USER_NAMES.search(code)
        assert found is None, f"{path} names the user's {found and found.group()!r}"


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


#: Where runners/__init__.py names the runners a project left out, to explain an import of one.
NOT_CHOSEN = re.compile(r"^_NOT_CHOSEN = \{\n.*?^\}\n", re.MULTILINE | re.DOTALL)


def test_no_code_of_the_unchosen_variant(project):
    files = project_files(project)
    init = f"{PACKAGE}/runners/__init__.py"
    files[init] = NOT_CHOSEN.sub("", files[init])
    for part in set(VARIANT_NAMES) - chosen(project):
        for path, text in files.items():
            for name in VARIANT_NAMES[part]:
                assert name not in text, f"{path} mentions {name}, but the project did not choose {part}"


#: An import of names from a module, on one line: `from .runners import A, B`.
FROM_IMPORT = re.compile(r"^from (\S+) import ([^(]+)$")


def left_out_of(smaller: str, larger: str) -> list[str]:
    """The lines of ``smaller`` that ``larger`` lacks, once ``larger``'s other lines are left out.

    An import of some of the names that ``larger`` imports from the same module counts as
    one of its lines.
    """
    imports: dict[str, set[str]] = {}
    for line in larger.splitlines():
        if match := FROM_IMPORT.match(line):
            imports.setdefault(match[1], set()).update(match[2].split(", "))
    matcher = difflib.SequenceMatcher(None, smaller.splitlines(), larger.splitlines(), autojunk=False)
    extra = []
    for tag, start, end, _, _ in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            for line in smaller.splitlines()[start:end]:
                match = FROM_IMPORT.match(line)
                if not (match and set(match[2].split(", ")) <= imports.get(match[1], set())):
                    extra.append(line)
    return extra


def test_a_session_or_global_projects_code_is_the_both_ones_with_lines_left_out(project, template, tmp_path):
    """The served and browser tests of the session runners and the global runner run with `both`.

    That holds because every line of a `session` or `global` project's code and tests is a line
    of the `both` project's with the same executor (an import names fewer of the same names):
    CI's passes on newer Python lines run the `both` projects' suites, which run every line of
    the others'. The runners' `__init__.py`, which names the runners left out, has its own test
    above.
    """
    if threading_of(project) == "both":
        return
    both = render(template, tmp_path / "both", threading="both", executor=executor_of(project))
    code = [path for path in project_files(project) if path.endswith(".py")]
    code.remove(f"{PACKAGE}/runners/__init__.py")
    assert {f"{PACKAGE}/app.py", "tests/test_app.py", "tests/runners/test_served_app.py"} <= set(code)
    for path in code:
        extra = left_out_of((project / path).read_text(), (both / path).read_text())
        assert not extra, f"{path}: lines the `both` project lacks: {extra}"


UNCHOSEN_RUNNERS = {
    "session": ("SessionTaskRunner", "threading=both"),
    "global": ("GlobalTaskRunner", "threading=both"),
    "dask": ("DaskExecutor", "executor=dask"),
}


#: Tries `from MODULE import NAME` for each name on its command line, in one interpreter (Panel
#: imports once), and prints each one's error, or that it worked.
TRY_IMPORTS = """
import sys
for name in sys.argv[2:]:
    try:
        exec(f"from {sys.argv[1]} import {name}")
    except ImportError as error:
        print(f"{name}: ImportError: {error}")
    else:
        print(f"{name}: imported")
"""


def test_importing_a_runner_the_project_left_out_says_how_to_get_it(project):
    left_out = set(UNCHOSEN_RUNNERS) - chosen(project)
    if not left_out:
        return
    names = [UNCHOSEN_RUNNERS[part][0] for part in sorted(left_out)]
    result = subprocess.run(
        [sys.executable, "-c", TRY_IMPORTS, f"{PACKAGE}.runners", *names],
        cwd=project, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    errors = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    for part in left_out:
        name, answer = UNCHOSEN_RUNNERS[part]
        assert errors[name].startswith(f"ImportError: {name} is not part of this project"), errors[name]
        assert f"copier update --trust --data {answer}" in errors[name]


def test_no_jinja_residue(project):
    for path, text in project_files(project).items():
        if path.startswith(".github/workflows/"):
            text = text.replace("${{", "$(")  # GitHub's expressions
        for marker in ("{%", "{{", "{#", "#}"):
            assert marker not in text, f"{path} holds {marker!r}"
        assert not JINJA_CLOSE.search(text), f"{path} holds '%}}'"
        prose = re.sub(
            r"```.*?```", "```code```", text, flags=re.DOTALL
        )  # code blocks keep Python's blank lines
        assert "\n\n\n" not in prose or path.endswith(".py"), f"{path} has a clump of blank lines"
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


def test_the_dependency_groups_and_the_extras_list_the_same_tools(project):
    """New READMEs install the groups; the extras keep older READMEs' `.[dev,test]` working."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    groups, extras = pyproject["dependency-groups"], pyproject["project"]["optional-dependencies"]
    assert groups["test"] == extras["test"]
    assert groups["dev"] == [{"include-group": "test"}, *extras["dev"]]


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


#: The last line of a pytest run under -q: "97 passed, 20 deselected in 51.33s".
PYTEST_SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed).*) in [0-9.]+s", re.MULTILINE)


def assert_passed_cleanly(output: str) -> None:
    assert " passed" in output
    assert "skipped" not in output
    assert " warning" not in output.splitlines()[-1], output[-3000:]  # users would see them too


@pytest.mark.generated
def test_the_generated_quick_loop_passes(project):
    """The generated project's tests that need no server, browser or worker process."""
    assert_passed_cleanly(run_generated_tests(project, "-m", "not slow"))


def run_readme_commands(commands: list[str], cwd: Path) -> str:
    """Run README commands in order in bash, as a user pastes them; return what they printed.

    uv takes the suite's interpreter (the Python line under test) and never downloads one. pip
    leaves each installed module's bytecode to its first import, as uv does (``PIP_COMPILE=false``):
    compiling all 4,400 modules of the install took half of its CPU time, though the quick
    loop imports only some of them.
    """
    environment = {name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"}
    environment |= {"UV_PYTHON": sys.executable, "UV_PYTHON_DOWNLOADS": "never", "PIP_COMPILE": "false"}
    # uv, installed with the suite, as an activated environment has it on the PATH
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment["PATH"]])
    script = " && ".join(commands)
    result = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=environment, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return result.stdout


def assert_clean_summaries(output: str, count: int) -> None:
    summaries = PYTEST_SUMMARY.findall(output)
    assert len(summaries) == count, output[-3000:]
    for summary in summaries:
        assert not re.search("failed|error|skipped|warning", summary), output[-5000:]


@pytest.mark.slow
def test_the_generated_slow_tests_pass(project, template, tmp_path, request):
    """The rest of the generated project's tests; for `both`, the whole suite, as its README says.

    For `both`, a fresh render runs the README's uv commands: `uv sync` with
    this suite's Python line, the whole generated suite, then (with threads: the
    command is the same with Dask, whose tests the whole suite ran) the quick loop.
    On another line (GENERATED_PYTHON), the slow tests run in its environment instead.
    Where the run holds the quick-loop test above as well, this test runs the whole
    suite in its place (conftest.py deselects it): the quick loop's tests among them.
    """
    if threading_of(project) != "both" or "GENERATED_PYTHON" in os.environ:
        whole_suite = request.node.stash.get(RUNS_THE_QUICK_LOOP, False)
        assert_passed_cleanly(run_generated_tests(project, *([] if whole_suite else ["-m", "slow"])))
        return
    fresh = render(template, tmp_path / "app", threading="both", executor=executor_of(project))
    uv, _ = install_blocks((fresh / "README.md").read_text())
    assert uv[0] == "uv sync"
    assert "uv run panel serve app.py --dev" in uv  # a server runs until stopped: checked by test_serve.py
    assert "uv run pytest" in uv
    commands = [command for command in uv if " panel serve " not in command]
    if executor_of(project) != "thread":
        commands = [command for command in commands if "not slow" not in command]
    assert_clean_summaries(run_readme_commands(commands, fresh), len([c for c in commands if "pytest" in c]))
    assert (fresh / "uv.lock").exists(), "uv sync wrote the lock file the README says to commit"


@pytest.mark.slow
def test_the_readme_pip_commands_install_the_project(template, tmp_path):
    """The README's pip block, from a fresh render: the virtual environment, the install, the quick loop.

    The whole suite runs on the uv install (the test above): the code is the same.
    """
    if "GENERATED_PYTHON" in os.environ:
        pytest.skip("the pip block runs python3, this suite's line: tested in its own pass")
    fresh = render(template, tmp_path / "app", threading="both", executor="thread")
    _, pip = install_blocks((fresh / "README.md").read_text())
    assert pip[0].startswith("python3 -m venv .venv")
    assert "panel serve app.py --dev" in pip
    assert "python -m pytest" in pip
    quick = 'python -m pytest -m "not slow"'
    assert quick in pip
    install = pip[: pip.index("panel serve app.py --dev")]
    assert_clean_summaries(run_readme_commands([*install, quick], fresh), 1)
    assert not (fresh / "uv.lock").exists()
