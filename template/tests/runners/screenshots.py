"""A pytest plugin: a failed test's browser pages, saved as PNG files in ``test-results/``.

Template-owned, like every file of this folder. ``pyproject.toml`` loads it for
every test run (``-p screenshots``: this folder is on pytest's ``pythonpath``). A
test that fails while it holds a Playwright ``Page`` (a fixture such as ``page``)
leaves one screenshot per page, named after the test; CI keeps the folder as an
artifact. Tests without a browser, and passing ones, leave nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

#: Where the screenshots go, relative to the directory pytest runs in.
SCREENSHOTS = Path("test-results")


def is_page(value: object) -> bool:
    """True for a Playwright page (sync API), without importing Playwright."""
    kind = type(value)
    from_playwright = kind.__module__.startswith("playwright.")
    return kind.__name__ == "Page" and from_playwright and hasattr(value, "screenshot")


def screenshot_path(nodeid: str, fixture: str) -> Path:
    """A file name for a test's page: the test's id and the fixture's name, made safe."""
    name = re.sub(r"[^A-Za-z0-9_.]+", "-", f"{nodeid}-{fixture}").strip("-")
    return SCREENSHOTS / f"{name}.png"


def save_screenshots(item: pytest.Item) -> list[Path]:
    """Save a screenshot of each open page among the test's fixtures; return the files written."""
    saved = []
    for fixture, value in getattr(item, "funcargs", {}).items():
        if not is_page(value) or value.is_closed():
            continue
        path = screenshot_path(item.nodeid, fixture)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            value.screenshot(path=str(path), full_page=True)
        except Exception:  # a crashed browser: the test's own failure says more
            logger.warning("No screenshot of %s for %s", fixture, item.nodeid, exc_info=True)
            continue
        saved.append(path)
    return saved


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, object, object]:
    """After a failed test body, while its pages are still open, save them."""
    report = yield
    if isinstance(report, pytest.TestReport) and report.when == "call" and report.failed:
        for path in save_screenshots(item):
            report.sections.append(("screenshot", str(path.resolve())))
    return report
