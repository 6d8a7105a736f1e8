"""`copier update` on a project whose owner rewrote the examples: the template's files change, theirs never.

The template's releases are built here, in throwaway repositories tagged with PEP 440 versions:
the working tree is the release under test, and the previous release comes from this
repository's history (a clone without tags still has the commit).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import copier
import pytest
import yaml

from support import (
    PACKAGE,
    ROOT,
    TEMPLATE_PARTS,
    USER_FILES,
    VARIANT_IDS,
    VARIANTS,
    commit_all,
    copy_template,
    git,
    install_blocks,
    release,
    run_generated_tests,
)

#: Updates clone the template's repository and run copier twice: the full suite's, not the quick loop's.
pytestmark = pytest.mark.slow

CONFLICT_MARKER = re.compile(r"^(<{7}|>{7}|={7})( .*)?$", re.MULTILINE)
FIRST_COMMIT = "Start from the copier-panel-threading template"
TEMPLATE_FIX = "# Fixed in the next release: a comment that stands for a fix of the template.\n"
#: The release the working tree is (CHANGELOG.md), and the one before it.
THIS_RELEASE = "v0.3.0"
NEXT_RELEASE = "v0.3.1"
PREVIOUS_RELEASE = "v0.1.0"
#: The commit of the previous release, for clones that hold no tags.
PREVIOUS_RELEASE_COMMIT = "5c1c3c6"
#: The user's files that releases after the first added: an update that crosses v0.3.0 gives
#: each to a project that lacks it (hooks/add_user_files.py), once.
ADDED_SINCE_THE_FIRST_RELEASE = (
    ".github/workflows/ci.yml",
    ".github/workflows/template-update.yml",
    "Dockerfile",
    ".dockerignore",
    "deploy/compose.yaml",
    "deploy/haproxy.cfg",
    "deploy/prometheus.yml",
)
#: The line that hooks/report_conflicts.py prints when an update leaves files to resolve.
CONFLICTS_REPORTED = "copier update left CONFLICTS in"
#: The user's files as the user rewrite leaves them: their own test in place of the example page's.
REWRITTEN_USER_FILES = (*sorted(USER_FILES - {"tests/test_app.py"}), "tests/test_crunch.py")
#: The template's sources of the user's files.
EXAMPLE_SOURCES = (
    "app.py.jinja",
    "README.md.jinja",
    "{{package_name}}/__init__.py.jinja",
    "{{package_name}}/app.py.jinja",
    "{{package_name}}/workers.py.jinja",
    "tests/conftest.py.jinja",
    "tests/test_app.py.jinja",
    "deploy/compose.yaml.jinja",
    "deploy/haproxy.cfg.jinja",
    "deploy/prometheus.yml.jinja",
)
#: The variant, with every runner, whose updated project runs its whole suite. The others run
#: the quick loop: their template files are a fresh render's byte for byte (asserted), and
#: test_render runs each fresh render's whole suite, while test_render also checks that the
#: template's files name nothing of the user's.
WHOLE_SUITE_AFTER_UPDATE = ("both", "dask")
#: A dependency the user adds to pyproject.toml, which the template shares with them.
USER_DEPENDENCY = '    "tomli-w>=1.0",  # the user\'s own\n'


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """A git repository of the working tree's template, tagged as this release."""
    repo = copy_template(tmp_path / "template-repo")
    git(repo, "init", "--quiet")
    release(repo, THIS_RELEASE)
    return repo


def template_at(commit: str, repo: Path) -> None:
    """Write the template as it was at ``commit`` into ``repo``, in place of what is there."""
    for part in TEMPLATE_PARTS:
        if (repo / part).is_dir():
            shutil.rmtree(repo / part)
    archive = subprocess.run(
        ["git", "archive", commit, *TEMPLATE_PARTS], cwd=ROOT, capture_output=True, check=True, timeout=60
    )
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive.stdout, check=True, timeout=60)


def working_tree_template(repo: Path) -> None:
    """Write the working tree's template into ``repo``, in place of what is there."""
    for part in TEMPLATE_PARTS:
        if (repo / part).is_dir():
            shutil.rmtree(repo / part)
        elif (repo / part).exists():
            (repo / part).unlink()
    copy_template(repo)


def needs_commit(commit: str) -> None:
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, check=False)
    if known.returncode:
        pytest.skip(f"commit {commit} is not in this clone's history")


@pytest.fixture
def release_history(tmp_path: Path) -> Path:
    """A template repository whose history is the previous release, then this one."""
    needs_commit(PREVIOUS_RELEASE_COMMIT)
    repo = tmp_path / "template-history"
    repo.mkdir()
    git(repo, "init", "--quiet")
    template_at(PREVIOUS_RELEASE_COMMIT, repo)
    release(repo, PREVIOUS_RELEASE)
    working_tree_template(repo)
    release(repo, THIS_RELEASE)
    return repo


def copy(template: Path, project: Path, vcs_ref: str = THIS_RELEASE, **data: object) -> Path:
    copier.run_copy(
        str(template), str(project), data=data, defaults=True, quiet=True, unsafe=True, vcs_ref=vcs_ref
    )
    return project


def update(project: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run `copier update` as a user does, on the command line; fail unless it succeeds."""
    result = subprocess.run(
        [sys.executable, "-m", "copier", "update", "--trust", "--defaults", *options],
        cwd=project, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def assert_clean_merge(project: Path) -> None:
    """No conflict markers, no .rej or .orig files anywhere in the project."""
    for path in project.rglob("*"):
        if ".git" in path.parts or not path.is_file():
            continue
        assert path.suffix not in (".rej", ".orig"), f"{path} was left by the update"
        conflict = CONFLICT_MARKER.search(path.read_text(errors="replace"))
        assert conflict is None, f"{path} holds a conflict marker: {conflict and conflict.group()}"


def files_of(project: Path) -> dict[str, bytes]:
    """Every file of a project but git's, by its path in the project."""
    return {
        path.relative_to(project).as_posix(): path.read_bytes()
        for path in sorted(project.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


def rewrite_as_a_user(
    project: Path, threading: str, executor: str, old_layout: bool = False
) -> dict[str, bytes]:
    """Do what a user does on day one: own workers, an own page, own tests; the example's tests go.

    Return the user's files as committed.
    """
    package = project / PACKAGE
    session, shared, dask = threading != "global", threading != "session", executor == "dask"
    # Until v0.2.0 the runners' modules stood beside the user's code, and users imported them.
    executors_module = ".executors" if old_layout else ".runners.executors"
    workers = f'''\
        """My workers."""

        import time

        from {executors_module} import TaskControl


        def crunch(number: int, control: TaskControl) -> int:
            """My slow computation."""
            control.report(1, 2)
            return number * 2


        def heartbeat() -> str:
            """My shared feed."""
            return time.strftime("%H:%M:%S")
        '''
    runners = [name for name, chosen in (("DaskExecutor", dask), ("GlobalTaskRunner", shared),
                                         ("SessionTaskRunner", session)) if chosen]  # fmt: skip
    executor_argument = ", executor=DaskExecutor()" if dask else ""
    page = [
        '"""My page."""',
        "",
        "import panel as pn",
        "",
        f"from .runners import {', '.join(runners)}",
        "from .workers import crunch, heartbeat",
        "",
        'TITLE = "My App"',
        "",
        "",
        "def create_app() -> pn.viewable.Viewable:",
        '    """My page of one session."""',
        "    page = pn.Column(f'# {TITLE}')",
    ]
    if session:
        page += [
            f"    crunching = SessionTaskRunner(worker=crunch{executor_argument})",
            "    button = pn.widgets.Button(label='Crunch')",
            "    button.on_click(lambda event: crunching.append(21))",
            "    page.extend([button, crunching, pn.pane.Str(crunching.param.value)])",
        ]
    else:
        page.append("    assert crunch  # kept for later")
    if shared:
        page += [
            f"    beat = GlobalTaskRunner(key='heartbeat', worker=heartbeat, seconds=1.0{executor_argument})",
            "    page.append(pn.pane.Str(beat.subscribe().param.value))",
        ]
    page.append("    return page")
    (package / "workers.py").write_text(textwrap.dedent(workers))
    (package / "app.py").write_text("\n".join(page) + "\n")
    entry = project / "app.py"
    entry.write_text(entry.read_text().replace("pn.extension()", 'pn.extension(sizing_mode="stretch_width")'))
    readme = project / "README.md"
    readme.write_text("# My App\n\nWhat my app does.\n" + readme.read_text().split("\n", 1)[1])
    (project / "tests" / "test_crunch.py").write_text(
        textwrap.dedent(f'''\
            """My tests."""

            from {PACKAGE}.runners import TaskControl
            from {PACKAGE}.workers import crunch


            def test_crunch_doubles():
                assert crunch(21, TaskControl()) == 42
            ''')
    )
    for example_test in ("tests/test_browser.py", "tests/test_app.py"):  # the example page's tests
        (project / example_test).unlink(missing_ok=True)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('    "param>=2.1",\n', '    "param>=2.1",\n' + USER_DEPENDENCY)
    )
    workflow = project / ".github" / "workflows" / "ci.yml"
    if workflow.exists():  # made by a release that writes it: the user's from then on
        workflow.write_text(workflow.read_text() + "      - name: Deploy\n        run: ./deploy.sh\n")
    dockerfile = project / "Dockerfile"
    if dockerfile.exists():
        dockerfile.write_text(
            dockerfile.read_text().replace("WORKDIR /app", "RUN apt-get update\nWORKDIR /app", 1)
        )
    commit_all(project, "My own app")
    return {name: (project / name).read_bytes() for name in REWRITTEN_USER_FILES if (project / name).exists()}


def assert_template_files_as_rendered_afresh(
    project: Path, fresh: Path, user_files: dict[str, bytes]
) -> None:
    """The template's files are those of a fresh render with the same answers; the user's are the user's."""
    updated, rendered = files_of(project), files_of(fresh)
    for name in USER_FILES:  # the example page's tests among them, which the user deleted
        rendered.pop(name, None)
    assert set(updated) - set(user_files) == set(rendered), "the template's files, and no others"
    pyproject = updated.pop("pyproject.toml").decode()
    assert USER_DEPENDENCY in pyproject, "the user's dependency is kept"
    assert pyproject.replace(USER_DEPENDENCY, "") == rendered.pop("pyproject.toml").decode()
    for name, content in rendered.items():
        assert updated[name] == content, f"{name} differs from a fresh render"


@pytest.mark.parametrize(("threading", "executor"), VARIANTS, ids=VARIANT_IDS)
def test_an_update_from_the_previous_release_leaves_a_rewritten_app_alone(
    release_history, tmp_path, threading, executor
):
    data = {"threading": threading, "executor": executor}
    project = copy(release_history, tmp_path / "app", vcs_ref=PREVIOUS_RELEASE, **data)
    user_files = rewrite_as_a_user(project, threading, executor, old_layout=True)

    result = update(project)

    # v0.2.0's migration points the user's import of a moved module at its new place, and says so.
    workers = f"{PACKAGE}/workers.py"
    user_files[workers] = user_files[workers].replace(
        b"from .executors import", b"from .runners.executors import"
    )
    assert f"{workers}:5: from .executors import TaskControl" in result.stdout + result.stderr
    for name, content in user_files.items():
        assert (project / name).read_bytes() == content, f"the update changed {name}"
    assert not (project / "tests" / "test_browser.py").exists()
    assert not (project / "tests" / "test_app.py").exists()
    assert_clean_merge(project)
    assert CONFLICTS_REPORTED not in result.stdout + result.stderr
    # The files of the user's that later releases added come as a fresh render has them, the
    # user's from then on; the previous release's conftest.py is the user's now, as it was.
    fresh = copy(release_history, tmp_path / "fresh", **data)
    for name in ADDED_SINCE_THE_FIRST_RELEASE:
        assert (project / name).read_bytes() == (fresh / name).read_bytes(), f"{name} was not added"
        assert f"Added {name}:" in result.stdout + result.stderr
        user_files[name] = (project / name).read_bytes()
    assert_template_files_as_rendered_afresh(project, fresh, user_files)
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == THIS_RELEASE
    if (threading, executor) == WHOLE_SUITE_AFTER_UPDATE:
        run_generated_tests(project)
    else:
        run_generated_tests(project, "-m", "not slow")
    if (threading, executor) == ("both", "thread"):
        check_that_deleted_added_files_stay_deleted(release_history, project)


def check_that_deleted_added_files_stay_deleted(template: Path, project: Path) -> None:
    """The user deletes the added files; the next release's update brings none of them back."""
    commit_all(project, "The files the update added")
    for name in ADDED_SINCE_THE_FIRST_RELEASE:
        (project / name).unlink()
    commit_all(project, "No deploy, no workflows")
    release_fix(template, NEXT_RELEASE)

    result = update(project)

    assert f"# Fix of {NEXT_RELEASE}." in (project / PACKAGE / "runners" / "executors.py").read_text()
    for name in ADDED_SINCE_THE_FIRST_RELEASE:
        assert not (project / name).exists(), f"{name}, deleted, came back"
    assert "Added " not in result.stdout + result.stderr


@pytest.mark.parametrize(("threading", "executor"), VARIANTS, ids=VARIANT_IDS)
def test_the_next_release_changes_the_template_files_and_never_the_users(
    template_repo, tmp_path, threading, executor
):
    data = {"threading": threading, "executor": executor}
    project = copy(template_repo, tmp_path / "app", **data)
    user_files = rewrite_as_a_user(project, threading, executor)
    # The next release fixes a runner and changes every example: none of it may reach the user's files.
    fixed = template_repo / "template" / "{{package_name}}" / "runners" / "executors.py"
    fixed.write_text(fixed.read_text() + "\n" + TEMPLATE_FIX)
    for example in EXAMPLE_SOURCES:
        path = template_repo / "template" / example
        path.write_text("# The next release's example.\n" + path.read_text())
    release(template_repo, NEXT_RELEASE)

    result = update(project)

    assert (project / PACKAGE / "runners" / "executors.py").read_text().endswith(TEMPLATE_FIX)
    for name, content in user_files.items():
        assert (project / name).read_bytes() == content, f"the update changed {name}"
    assert not (project / "tests" / "test_app.py").exists(), "a deleted file of the user's came back"
    assert_clean_merge(project)
    assert_template_files_as_rendered_afresh(
        project, copy(template_repo, tmp_path / "fresh", vcs_ref=NEXT_RELEASE, **data), user_files
    )
    assert "Made a git repository" not in result.stdout + result.stderr, "the first-commit hook ran"
    assert "Yours were left" in result.stdout + result.stderr


#: (threading, executor) before and after: a kind of threading added, one dropped, each executor switch.
SWITCHES = [
    (("session", "thread"), ("both", "thread")),
    (("session", "thread"), ("global", "thread")),
    (("both", "thread"), ("global", "thread")),
    (("both", "thread"), ("both", "dask")),
    (("both", "dask"), ("both", "thread")),
]


@pytest.mark.parametrize(
    ("before", "after"), SWITCHES, ids=["-".join((*before, "to", *after)) for before, after in SWITCHES]
)
def test_a_switch_on_a_rewritten_app_brings_the_runner_and_leaves_the_users_files(
    template_repo, tmp_path, before, after
):
    project = copy(template_repo, tmp_path / "app", threading=before[0], executor=before[1])
    # The user's page uses what both answers have: a switch brings a runner, it does not wire it in.
    threading = after[0] if after[0] == "global" else before[0]
    user_files = rewrite_as_a_user(project, threading, "thread")

    result = update(project, "--data", f"threading={after[0]}", "--data", f"executor={after[1]}")

    runners = project / PACKAGE / "runners"
    assert (runners / "session_runner.py").exists() == (after[0] != "global")
    assert (runners / "global_runner.py").exists() == (after[0] != "session")
    assert (runners / "dask_executor.py").exists() == (after[1] == "dask")
    assert ("dask[distributed]" in (project / "pyproject.toml").read_text()) == (after[1] == "dask")
    for name, content in user_files.items():
        assert (project / name).read_bytes() == content, f"the switch changed {name}"
    assert_clean_merge(project)
    assert f"{PACKAGE}/runners/README.md has a working example" in result.stdout + result.stderr
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["threading"], answers["executor"]) == after
    # The template's files are a fresh render's, whose whole suite test_render runs: here the
    # quick loop runs them beside the user's code.
    fresh = copy(template_repo, tmp_path / "fresh", threading=after[0], executor=after[1])
    assert_template_files_as_rendered_afresh(project, fresh, user_files)
    run_generated_tests(project, "-m", "not slow")


def test_the_hook_makes_a_first_commit(template_repo, tmp_path):
    project = copy(template_repo, tmp_path / "app", threading="both")
    assert git(project, "log", "--format=%s").splitlines() == [FIRST_COMMIT]
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
        str(template_repo), str(project), defaults=True, quiet=True, skip_tasks=True, vcs_ref=THIS_RELEASE
    )
    assert (project / "app.py").is_file()
    assert not (project / ".git").exists()


def test_an_update_keeps_edits_to_the_shared_pyproject(template_repo, tmp_path):
    project = copy(template_repo, tmp_path / "app", threading="both")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('    "param>=2.1",\n', '    "param>=2.1",\n' + USER_DEPENDENCY)
    )
    commit_all(project, "My dependency")
    template_pyproject = template_repo / "template" / "pyproject.toml.jinja"
    template_pyproject.write_text(template_pyproject.read_text().replace('"ruff>=0.8"', '"ruff>=0.9"'))
    release(template_repo, NEXT_RELEASE)

    update(project)

    text = pyproject.read_text()
    assert USER_DEPENDENCY in text
    assert '"ruff>=0.9"' in text
    assert_clean_merge(project)


def test_recopy_starts_the_users_files_over(template_repo, tmp_path):
    """`copier recopy` is a fresh start, as the runners' README says: the user's files come back too."""
    project = copy(template_repo, tmp_path / "app", threading="both")
    (project / "tests" / "test_app.py").unlink()
    commit_all(project, "No example tests")
    copier.run_recopy(str(project), defaults=True, overwrite=True, quiet=True, unsafe=True)
    assert (project / "tests" / "test_app.py").exists()


#: The template as it landed before the executor question (issue 6) was asked.
BEFORE_EXECUTOR = "c907779"


def test_a_project_made_before_the_executor_question_updates_cleanly(tmp_path):
    needs_commit(BEFORE_EXECUTOR)
    old = tmp_path / "old-template"
    old.mkdir()
    git(old, "init", "--quiet")
    template_at(BEFORE_EXECUTOR, old)
    release(old, "v0.0.1")
    project = copy(old, tmp_path / "app", vcs_ref="v0.0.1", threading="both")
    assert "executor" not in yaml.safe_load((project / ".copier-answers.yml").read_text())
    entry = project / "app.py"
    entry.write_text(entry.read_text().replace("pn.extension()", 'pn.extension(sizing_mode="stretch_width")'))
    commit_all(project, "Stretch the page")
    working_tree_template(old)
    release(old, THIS_RELEASE)

    update(project)

    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["executor"] == "thread"
    assert (project / PACKAGE / "runners" / "executors.py").exists()
    assert not (project / PACKAGE / "runners" / "dask_executor.py").exists()
    assert 'pn.extension(sizing_mode="stretch_width")' in entry.read_text()
    assert_clean_merge(project)
    run_generated_tests(project, "-m", "not slow")


#: A line of a template file that the user edits, and the next release too: a conflict.
EDITED_LINE = "Where a runner's worker runs"


def test_an_update_that_conflicts_names_each_file_and_what_to_do(template_repo, tmp_path):
    project = copy(template_repo, tmp_path / "app", threading="both")
    runner_file = project / PACKAGE / "runners" / "executors.py"
    runner_file.write_text(runner_file.read_text().replace(EDITED_LINE, "Where my runner's worker runs"))
    commit_all(project, "My edit of a template file")
    source = template_repo / "template" / "{{package_name}}" / "runners" / "executors.py"
    source.write_text(source.read_text().replace(EDITED_LINE, "Where the runner's worker runs"))
    release(template_repo, NEXT_RELEASE)

    result = update(project)  # Copier exits with 0: the template-update workflow lists the files

    output = result.stdout + result.stderr
    assert "<<<<<<< before updating" in runner_file.read_text()
    assert f"{CONFLICTS_REPORTED} 1 file(s)" in output
    assert f"  {PACKAGE}/runners/executors.py: unmerged in git's index; conflict markers" in output
    assert "delete the marker lines" in output
    assert output.index(CONFLICTS_REPORTED) < output.index("A warning above lists any file left")

    # A .rej file (`copier update --conflict rej`) is named too, even where .gitignore hides it.
    (project / ".gitignore").write_text((project / ".gitignore").read_text() + "*.rej\n")
    (project / "pyproject.toml.rej").write_text("@@ -1 +1 @@\n-a\n+b\n")
    hook = subprocess.run(
        [sys.executable, str(ROOT / "hooks" / "report_conflicts.py")],
        cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert hook.returncode == 0
    assert "  pyproject.toml.rej: changes the update could not apply to pyproject.toml" in hook.stderr
    assert f"{CONFLICTS_REPORTED} 2 file(s)" in hook.stderr  # with executors.py


def update_blocks(readme: str) -> tuple[list[str], list[str]]:
    """The commands of the README's "Update from the template" blocks that update: uv's, then pip's."""
    section = readme.split("## Update from the template", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```bash\n")[1:]]
    commands = [[line.split("  #")[0].strip() for line in block.splitlines()] for block in blocks]
    updating = [block for block in commands if any("copier update" in line for line in block)]
    assert len(updating) == 2, "an update block for uv, then one for pip"
    return updating[0], updating[1]


def copier_messages() -> dict[str, str]:
    config = yaml.safe_load((ROOT / "copier.yml").read_text())
    return {name: config[f"_message_after_{name}"] for name in ("copy", "update")}


def release_fix(template: Path, tag: str) -> None:
    """Release the template with one more line in a runner's file: a fix."""
    fixed = template / "template" / "{{package_name}}" / "runners" / "executors.py"
    fixed.write_text(fixed.read_text() + f"# Fix of {tag}.\n")
    release(template, tag)


def test_the_update_commands_of_the_readme_and_the_messages_run_as_written(template_repo, tmp_path):
    """uv's block without a terminal, pip's in one (`script`); the messages give the same commands."""
    project = copy(template_repo, tmp_path / "app", threading="both")
    readme = (project / "README.md").read_text()
    uv, pip = update_blocks(readme)
    assert uv[-1] == "uvx copier update --trust --defaults"
    assert pip[-1] == "python -m copier update --trust --defaults"
    messages = copier_messages()
    assert f"`{uv[-1]}`" in messages["copy"]
    install_uv, install_pip = install_blocks(readme)
    steps = re.findall(r"^  (\S.*?)(?:\s+#.*)?$", messages["copy"], re.MULTILINE)
    assert steps[0].startswith("cd ")
    for step in steps[1:]:
        assert step in install_uv, f"the after-copy message's {step!r} is the README's"
    assert "`uv sync`" in messages["update"]
    assert "`python -m pip install -e . --group dev`" in messages["update"]
    assert any(line.endswith("python -m pip install -e . --group dev") for line in install_pip)

    environment = {name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"}
    environment |= {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),  # uvx, python
        "UV_PYTHON": sys.executable,
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
    }  # fmt: skip
    workers = project / PACKAGE / "workers.py"
    for number, (block, terminal) in enumerate(((uv, False), (pip, True)), start=1):
        workers.write_text(workers.read_text() + f"\n# My edit {number}.\n")
        tag = f"{THIS_RELEASE}.{number}"
        release_fix(template_repo, tag)
        script = " && ".join(block)
        command = ["script", "--quiet", "--return", "--command", script, "/dev/null"]
        result = subprocess.run(
            command if terminal else ["bash", "-c", script], cwd=project, env=environment,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == tag, output[-3000:]
        assert f"# Fix of {tag}." in (project / PACKAGE / "runners" / "executors.py").read_text()
        commit_all(project, f"Update to {tag}")
