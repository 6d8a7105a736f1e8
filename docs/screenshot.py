"""Make docs/app.png, the README's picture of the generated page: ``python docs/screenshot.py``.

Renders the template's ``both`` variant as it is in the working tree, serves it with
``panel serve``, and drives Chromium (Debian's ``chromium-headless-shell``, or the browser that
``CHROMIUM`` names) through Playwright: it runs three experiments, waits for their results and
for the chart to hold some prices, and saves the page while three more wait in the queue behind
a running one. Run it from the environment of the
template's tests (CONTRIBUTING.md) whenever the example page changes.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import CHROMIUM, copy_template, free_port, listens, poll, render, stop_process  # noqa: E402

#: The browser's window, tall enough for the whole example page.
VIEWPORT = {"width": 1280, "height": 930}
#: Experiments run before the picture, and the seconds of prices the chart gathers meanwhile.
EXPERIMENTS = 3
PRICES_SECONDS = 8


def serve(project: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``panel serve app.py`` on a free port, as a user runs it: with the suite's short session
    lifetime (support.panel_serve), Panel 1.9 takes its CSS from its CDN."""
    port = free_port()
    command = [
        sys.executable, "-m", "panel", "serve", "app.py", "--address", "127.0.0.1", "--port", str(port),
        "--allow-websocket-origin", f"127.0.0.1:{port}",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=project, stdout=out, stderr=subprocess.STDOUT)
    poll(lambda: listens(port), timeout=60, message=f"the server listens; log:\n{log.read_text()}")
    return process, f"http://127.0.0.1:{port}/app"


def screenshot(output: Path) -> None:
    if not Path(CHROMIUM).exists():
        sys.exit(f"No Chromium at {CHROMIUM}: apt-get install chromium-headless-shell, or set CHROMIUM")
    with tempfile.TemporaryDirectory() as workdir:
        template = copy_template(Path(workdir) / "template")
        project = render(template, Path(workdir) / "app", threading="both")
        server, url = serve(project, Path(workdir) / "serve.log")
        try:
            take(url, output)
        finally:
            stop_process(server)
    print(f"Wrote {output}")  # noqa: T201


def take(url: str, output: Path) -> None:
    """Drive the page at ``url`` until it shows results and prices, and save it."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        with page.expect_websocket() as opened:
            page.goto(url)
        opened.value.wait_for_event("framereceived")  # clicks before the websocket answers are lost
        started = time.monotonic()
        expect(page.get_by_role("row", name=re.compile("^ACME "))).to_be_visible(timeout=60_000)
        run = page.get_by_role("button", name="Run experiment")
        for shown in range(1, EXPERIMENTS + 1):
            box = page.get_by_role("textbox", name="Samples")
            box.fill(str(1000 * shown))
            box.press("Enter")
            run.click()
            expect(page.get_by_role("listitem")).to_have_count(shown, timeout=30_000)
        time.sleep(max(0.0, PRICES_SECONDS - (time.monotonic() - started)))
        run.click(click_count=4)  # one runs, three wait: the queue and the progress bar show
        expect(page.get_by_text(re.compile(r"^Queued: [23]$"))).to_be_visible()
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
