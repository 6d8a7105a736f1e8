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
