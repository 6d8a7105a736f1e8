"""Answers: defaults, derived names, and bad answers refused with a reason."""

from __future__ import annotations

import ast
import keyword
import re
import subprocess
import sys
import tomllib

import pytest
import yaml

from support import ROOT, render


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"package_name": "sales-monitor"}, "not a valid package name"),
        ({"package_name": "2fast"}, "not a valid package name"),
        ({"package_name": "Sales"}, "not a valid package name"),
        ({"package_name": "lambda"}, "is a Python keyword"),
        ({"package_name": "panel"}, "would shadow the panel library"),
        ({"package_name": "param"}, "would shadow the param library"),
        ({"package_name": "bokeh"}, "would shadow the bokeh library"),
        ({"package_name": "queue"}, "would shadow the standard library module"),
        ({"package_name": "tests"}, "clashes with the project's own"),
        ({"project_name": "  "}, "must not be empty"),
        ({"author_email": "nobody"}, "does not look like an e-mail address"),
        ({"threading": "process"}, "Invalid choice for 'threading'"),
        ({"threading": "session", "max_tasks": 0}, "must take at least 1 task"),
        ({"threading": "both", "max_workers": 0}, "At least 1 task must be able to run"),
        ({"threading": "session", "keep_seconds": -1}, "must be 0 seconds or more"),
        ({"threading": "global", "global_interval_seconds": 0}, "must be more than 0 seconds"),
        ({"threading": "both", "global_interval_seconds": -2.5}, "must be more than 0 seconds"),
    ],
)
def test_bad_answers_are_refused_with_a_reason(template, tmp_path, data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        render(template, tmp_path / "project", **data)
    assert not (tmp_path / "project" / "app.py").exists()


@pytest.mark.parametrize(
    ("project_name", "package_name"),
    [("Sales Monitor", "sales_monitor"), ("  Ünits & Co. 2 ", "nits_co_2"), ("ACME-feed", "acme_feed")],
)
def test_package_name_defaults_to_the_project_name(template, tmp_path, project_name, package_name):
    project = render(template, tmp_path / "project", project_name=project_name)
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["package_name"] == package_name
    assert (project / package_name / "runners" / "__init__.py").is_file()


def test_names_and_quotes_reach_the_code_intact(template, tmp_path):
    name, description, author = 'Quote "Desk"', 'A "quoted" \\ app', 'O\'Brien "Bob"'
    project = render(
        template,
        tmp_path / "p",
        project_name=name,
        package_name="desk",
        description=description,
        author_name=author,
    )
    module = ast.parse((project / "desk" / "app.py").read_text())
    titles = [
        node.value for node in module.body if isinstance(node, ast.Assign) and node.targets[0].id == "TITLE"
    ]
    assert ast.literal_eval(titles[0]) == name
    metadata = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert metadata["description"] == description
    assert metadata["authors"] == [{"name": author, "email": "you@example.com"}]


def test_the_queue_size_reaches_the_app(template, tmp_path):
    project = render(template, tmp_path / "project", threading="both", max_tasks=7)
    assert "MAX_QUEUED_EXPERIMENTS = 7\n" in (project / "panel_threading_app" / "app.py").read_text()


def test_max_workers_reaches_the_runners_settings(template, tmp_path):
    project = render(template, tmp_path / "project", threading="session", max_workers=2)
    settings = (project / "panel_threading_app" / "runners" / "settings.py").read_text()
    assert 'MAX_WORKERS = _setting("MAX_WORKERS", 2, ' in settings


def test_keep_seconds_reaches_the_runners_settings(template, tmp_path):
    project = render(template, tmp_path / "project", threading="both", keep_seconds=0)
    settings = (project / "panel_threading_app" / "runners" / "settings.py").read_text()
    assert 'KEEP_SECONDS = _setting("KEEP_SECONDS", 0.0, ' in settings


def test_the_interval_reaches_the_app(template, tmp_path):
    project = render(template, tmp_path / "project", threading="global", global_interval_seconds=2.5)
    assert "PRICES_INTERVAL_SECONDS = 2.5\n" in (project / "panel_threading_app" / "app.py").read_text()


def test_the_reserved_name_lists_are_complete():
    """includes/python_names.jinja must know every keyword and public stdlib module of this Python."""
    text = (ROOT / "includes" / "python_names.jinja").read_text()
    listed = set(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', text))
    assert set(keyword.kwlist) <= listed
    assert {name for name in sys.stdlib_module_names if not name.startswith("_")} <= listed


@pytest.mark.parametrize("threading", ["session", "global", "both"])
def test_the_command_line_takes_defaults_and_data(template, tmp_path, threading):
    result = subprocess.run(
        [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--data", f"threading={threading}",
         str(template), str(tmp_path / "app")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((tmp_path / "app" / ".copier-answers.yml").read_text())["threading"] == threading


#: Copier prints a help line after its prompt mark ("🎤 ", 3 columns) and cuts it at the terminal's width.
HELP_WIDTH = 76


def test_every_help_line_and_choice_reads_whole_in_80_columns():
    questions = {
        name: spec
        for name, spec in yaml.safe_load((ROOT / "copier.yml").read_text()).items()
        if not name.startswith("_")
    }
    for name, spec in questions.items():
        assert "help" in spec, f"{name} has no help"
        assert spec["help"].endswith("\n"), f"{name}: write help as a literal block (|), a line each"
        for line in [*spec["help"].splitlines(), *spec.get("choices", {})]:
            assert len(line) <= HELP_WIDTH, f"{name}: {line!r} is over {HELP_WIDTH} characters"
