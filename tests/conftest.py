"""Fixtures for the template's own tests: render every variant of the working tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import VARIANTS, copy_template, render


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the working tree's template, outside git."""
    return copy_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session", params=VARIANTS)
def project(request: pytest.FixtureRequest, template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project rendered for each threading variant, once per test session."""
    threading = request.param
    return render(template, tmp_path_factory.mktemp(f"project-{threading}"), threading=threading)
