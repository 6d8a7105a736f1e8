"""The generated example page in Chromium: what the browser tests do on it."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect


def open_app(page: Page, url: str) -> None:
    """Load the app and wait for its websocket to answer: clicks before that are lost."""
    with page.expect_websocket() as opened:
        page.goto(url)
    opened.value.wait_for_event("framereceived")


def add_task(page: Page, samples: int) -> None:
    """Type a number of samples and press the button: one task for the session's runner."""
    box = page.get_by_role("textbox", name="Samples")
    box.fill(str(samples))
    box.press("Enter")
    page.get_by_role("button", name="Run experiment").click()


def results(page: Page) -> list[str]:
    """The experiments' results, as the page lists them."""
    return page.get_by_role("listitem").all_inner_texts()


def progress_percent(page: Page) -> int | None:
    """The running task's progress from the runner's status line ("Processing 40% ..."), or None."""
    status = page.get_by_text(re.compile(r"^Processing \d+%")).all_inner_texts()
    return int(re.match(r"^Processing (\d+)%", status[0]).group(1)) if status else None


def queued(page: Page, count: int | str) -> Locator:
    """The runner's status line while a task runs and ``count`` wait: a number, or a regex's digits."""
    return page.get_by_text(re.compile(rf"\(({count}) queued\)$"))


def reload(page: Page) -> None:
    """Reload the page and wait for its new websocket to answer."""
    with page.expect_websocket() as opened:
        page.reload()
    opened.value.wait_for_event("framereceived")


def queue_four_experiments(page: Page) -> None:
    """Run one experiment to its result, then add three: one runs, two wait in the queue.

    The first is done before the others are typed, and each click is seen before the next
    value is typed: a value typed while the server is busy (starting a Dask cluster) may
    reach it before the click that came first.
    """
    add_task(page, 50)
    expect(page.get_by_role("listitem")).to_have_count(1)
    add_task(page, 111)
    expect(page.get_by_text(re.compile(r"^Processing \d+%"))).to_be_visible()
    add_task(page, 222)
    expect(queued(page, 1)).to_be_visible()
    add_task(page, 333)
    expect(queued(page, 2)).to_be_visible()
