"""Make docs/app.png, the README's picture of the generated page: ``python docs/screenshot.py``.

Renders the template's ``both`` variant as it is in the working tree, serves it with
``panel serve`` as a user runs it, and drives Chromium (Debian's ``chromium-headless-shell``, or
the browser that ``CHROMIUM`` names) through Playwright: it runs three experiments, waits for
their results and for the chart to hold some prices, and saves the page while three more wait in
the queue behind a running one. Run it from the environment of the template's tests
(CONTRIBUTING.md) whenever the example page changes.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pages import add_task, open_app  # noqa: E402
from support import CHROMIUM, copy_template, panel_serve, render  # noqa: E402

#: The browser's window, tall enough for the whole example page.
VIEWPORT = {"width": 1280, "height": 930}
#: Experiments run before the picture, and the seconds of prices the chart gathers meanwhile.
EXPERIMENTS = 3
PRICES_SECONDS = 8


def screenshot(output: Path) -> None:
    if not Path(CHROMIUM).exists():
        sys.exit(f"No Chromium at {CHROMIUM}: apt-get install chromium-headless-shell, or set CHROMIUM")
    with tempfile.TemporaryDirectory() as workdir:
        template = copy_template(Path(workdir) / "template")
        project = render(template, Path(workdir) / "app", threading="both")
        with panel_serve(project, Path(workdir) / "serve.log", short_sessions=False) as server:
            take(server.url, output)
    print(f"Wrote {output}")  # noqa: T201


def take(url: str, output: Path) -> None:
    """Drive the page at ``url`` until it shows results and prices, and save it."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        open_app(page, url)
        started = time.monotonic()
        expect(page.get_by_role("row", name=re.compile("^ACME "))).to_be_visible(timeout=60_000)
        for shown in range(1, EXPERIMENTS + 1):
            add_task(page, 1000 * shown)
            expect(page.get_by_role("listitem")).to_have_count(shown, timeout=30_000)
        time.sleep(max(0.0, PRICES_SECONDS - (time.monotonic() - started)))
        page.get_by_role("button", name="Run experiment").click(
            click_count=4
        )  # one runs, three wait: the queue and the progress bar show
        expect(page.get_by_text(re.compile(r"\([23] queued\)$"))).to_be_visible()
        output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=output)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", type=Path, default=ROOT / "docs" / "app.png", help="where to save the PNG"
    )
    screenshot(parser.parse_args().output)


if __name__ == "__main__":
    main()
