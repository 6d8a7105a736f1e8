"""The documentation: short READMEs with a picture, the commands the tests run, and no history told.

Comments, docstrings and READMEs describe the code as it is; what changed, and when, belongs in
CHANGELOG.md, which these tests leave alone.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
import urllib.parse

import pytest

from support import PACKAGE, ROOT, readme_command

#: The longest each README may be, in lines: a newcomer reads it in five minutes.
README_LINES = 150
RUNNERS_README_LINES = 200
#: The screenshot of the example page that the README shows (docs/screenshot.py makes it).
SCREENSHOT = "docs/app.png"

#: Words that tell a history rather than describe what is: a date, a figure's past, a change.
HISTORY = re.compile(
    r"""\b(?:
        (?:19|20)\d\d-\d\d-\d\d
      | (?:until|since|before|after|as\ of|in)\ (?:19|20)\d\d
      | (?:since|until|before)\ v?\d+\.\d+
      | at\ first | at\ the\ time | back\ then | in\ the\ past | historically | originally
      | previously | formerly | nowadays | these\ days | before\ this\ release
      | as\ of | (?<!is\ )(?<!are\ )(?<!be\ )used\ to | no\ longer | any\ ?more
    )\b""",
    re.VERBOSE | re.IGNORECASE,
)

#: The repository's pages checked for history: CHANGELOG.md is where history goes, and
#: docs/benchmark.md is written by bench/run.py, with the date of its run as data.
PAGES = (
    "README.md",
    "CONTRIBUTING.md",
    *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md") if p.name != "benchmark.md"),
)


def history_in(text: str) -> list[str]:
    """The history words in ``text``, each with its line."""
    return [
        f"{number}: {match.group()!r} in {line.strip()!r}"
        for number, line in enumerate(text.splitlines(), 1)
        for match in HISTORY.finditer(line)
    ]


def comments_and_docstrings(source: str) -> str:
    """A Python file's comments and docstrings, one after the other: what describes the code."""
    comments = [
        token.string
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    nodes = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    docstrings = [docstring for node in nodes if (docstring := ast.get_docstring(node, clean=False))]
    return "\n".join(comments + docstrings)


def test_the_history_check_finds_history_and_passes_the_present():
    told = {
        "as the test measured until 2026-11-27": "until 2026",
        "0.3x at 30 sessions at first": "at first",
        "(1,100 before this release)": "before this release",
        "# this no longer blocks": "no longer",
        "the pool is not used anymore": "anymore",
        "it used to wait a whole interval": "used to",
        "As of v0.2 the runners live in runners/": "As of",
        "since v0.2.0 the modules moved": "since v0.2",
        "previously 2 threads": "previously",
    }
    for sentence, words in told.items():
        assert [match.group() for match in HISTORY.finditer(sentence)] == [words], sentence
    present = (
        "Clicks before that are lost. The lock is used to guard the queue; the store holds their "
        'queues now. month = "2026-11"; a call on Dask 2026.8.0; the old thread ends after its call.'
    )
    assert history_in(present) == []
    source = (
        '"""Wait for the queue."""\n\nX = "no longer a comment"  # used to be 2\n\n\n'
        'def f():\n    """At first."""\n'
    )
    assert history_in(comments_and_docstrings(source)) == [
        "1: 'used to' in '# used to be 2'",
        "3: 'At first' in 'At first.'",
    ]


def test_the_readme_is_short_and_shows_the_generated_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_LINES
    assert f"]({SCREENSHOT})" in readme
    assert (ROOT / SCREENSHOT).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_readmes_links_lead_somewhere():
    for name in ("README.md", "CONTRIBUTING.md"):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", (ROOT / name).read_text()):
            if not target.startswith(("http://", "https://")):
                assert (ROOT / urllib.parse.unquote(target)).exists(), f"{name} links to {target}"


def test_the_readme_and_contributing_give_the_commands_the_tests_run():
    """test_repo runs the README's commands as written; the maintainers' guide gives the same test command."""
    readme = (ROOT / "README.md").read_text()
    generate, test = readme_command(readme, "Use it"), readme_command(readme, "Test the template")
    assert "copier copy --trust --defaults" in generate  # CI runs ``test``: test_repo.py checks it
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    assert readme_command(contributing, "Run the suite") == test
    assert "python bench/run.py" in contributing
    assert "python docs/screenshot.py" in contributing


def test_the_benchmark_page_is_bench_runs():
    page = (ROOT / "docs" / "benchmark.md").read_text()
    assert page.startswith("# Benchmark\n")
    assert "| Measure | Result |" in page
    assert "docs/benchmark.md" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", PAGES)
def test_no_history_in_the_repositorys_pages(name):
    assert history_in((ROOT / name).read_text()) == []


def test_no_history_in_the_benchmarks_comments():
    assert history_in(comments_and_docstrings((ROOT / "bench" / "run.py").read_text())) == []


def test_the_generated_runners_readme_is_short(project):
    readme = project / PACKAGE / "runners" / "README.md"
    assert len(readme.read_text().splitlines()) <= RUNNERS_README_LINES


def test_no_history_in_the_generated_docs_comments_and_docstrings(project):
    """Every file the template writes: its Markdown whole, its Python's comments and docstrings."""
    found = {}
    for path in sorted(project.rglob("*")):
        if ".git" in path.parts or not path.is_file():
            continue
        if path.suffix in (".md", ".py"):
            text = path.read_text()
            found[path.relative_to(project).as_posix()] = history_in(
                text if path.suffix == ".md" else comments_and_docstrings(text)
            )
    assert {name: words for name, words in found.items() if words} == {}
    assert f"{PACKAGE}/runners/DESIGN.md" in found


def documented_words(readme: str) -> set[str]:
    """The words of a README's code: its inline code spans and its Python examples."""
    code = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL) + re.findall(r"`([^`\n]+)`", readme)
    return set(re.findall(r"\w+", " ".join(code)))


#: Calls that build a runner: the page's variables bound to one are runners.
RUNNER_FACTORIES = {"SessionTaskRunner", "GlobalTaskRunner", "for_user"}


def runner_api_used(source: str) -> set[str]:
    """What a page uses of the runners: the names it imports from them, and the attributes and
    parameters it uses of the runners it builds (``runner.append``, ``runner.param.history``)."""
    tree = ast.parse(source)
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module == "runners"
        for alias in node.names
    }
    runners = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", getattr(node.value.func, "attr", None)) in RUNNER_FACTORIES
        for target in node.targets
        if isinstance(target, ast.Name)
    }  # fmt: skip
    used = set(imported)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        if isinstance(owner, ast.Attribute) and owner.attr == "param":  # runner.param.history
            owner = owner.value
        if isinstance(owner, ast.Name) and owner.id in runners | imported and node.attr != "param":
            used.add(node.attr)
    return used


def test_the_example_page_uses_only_what_the_runners_readme_documents(project):
    page = (project / PACKAGE / "app.py").read_text()
    used = runner_api_used(page)
    assert "append" in used or "GlobalTaskRunner" in used, used  # the check sees the page's runners
    documented = documented_words((project / PACKAGE / "runners" / "README.md").read_text())
    assert used - documented == set(), "the example page uses what runners/README.md does not document"


def test_the_example_page_shows_each_fact_of_a_runner_once(project):
    """The runner in a layout shows its status, queue length and last error: the page repeats none."""
    page = (project / PACKAGE / "app.py").read_text()
    for shown_by_the_runner in ("runner.param.tasks", "runner.param.exception", "pn.pane.Alert(pn.bind"):
        assert shown_by_the_runner not in page
    readme = (project / PACKAGE / "runners" / "README.md").read_text()
    if "SessionTaskRunner" in page:
        assert "a progress bar and the last\nerror: add no alert or count of your own" in readme
    if "GlobalTaskRunner" in page:
        assert "which shows its value and the last call's error" in readme


def test_the_page_module_loads_the_extensions_and_the_readme_says_so(project):
    """Served by `panel serve app.py` or by the tests' `serve(create_app)`, each session loads them."""
    page = ast.parse((project / PACKAGE / "app.py").read_text())
    create_app = next(node for node in page.body if getattr(node, "name", None) == "create_app")
    assert "pn.extension(" in ast.unparse(create_app)
    assert "pn.extension(" not in (project / "app.py").read_text()
    readme = (project / "README.md").read_text()
    assert f'top of `create_app` in `{PACKAGE}/app.py` (`pn.extension("tabulator")`' in readme.replace(
        "\n", " "
    )


def test_the_readmes_say_when_an_update_conflicts_and_what_to_do(project):
    readme = (project / "README.md").read_text().replace("\n", " ")
    assert "**When an update conflicts.**" in readme
    for words in ("If you edited lines of a template file", "`<<<<<<< before updating` (yours)",
                  "delete the marker lines", "`git add` the files"):  # fmt: skip
        assert words in readme
    assert "only `pyproject.toml` is shared" not in readme
    top = (ROOT / "README.md").read_text().replace("\n", " ")
    assert "If you edited a template file, or lines of `pyproject.toml`, that the release changes too" in top


def test_the_generate_commands_leave_no_environment_active():
    """The README generates with uvx, or with a Copier whose environment it never activates."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use it\n", 1)[1].split("\n## ", 1)[0]
    commands = [block.split("\n", 1)[0] for block in section.split("```bash\n")[1:]]
    assert commands[0].startswith("uvx copier copy --trust --defaults ")
    assert commands[1].startswith("python3 -m venv .venv && .venv/bin/python -m pip install copier && ")
    assert commands[1].endswith(commands[0].removeprefix("uvx "))
    assert "activate" not in section


def test_the_readmes_update_commands_are_the_generated_readmes(project):
    """The template's README updates with the command the generated README gives (test_update runs it)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Update, and switch answers\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    generated = (project / "README.md").read_text()
    assert "\nuvx copier update --trust --defaults\n" in generated
    for line in block.splitlines():
        assert line.startswith("uvx copier update --trust --defaults"), line
