"""The generated container: a Dockerfile hadolint accepts, and its CMD line run as a process serves
the app, answers /liveness and stops cleanly on SIGTERM, as `docker stop` sends it.

Docker cannot build images on this machine (no daemon), so the image's command runs here in the
suite's environment for the generated project: the same line, the same variables.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from support import (
    ROOT,
    alive,
    descendants,
    dockerfile_instructions,
    executor_of,
    free_port,
    image_environment,
    liveness,
    only_with_both,
    poll,
)

HADOLINT = Path(sys.executable).parent / "hadolint"


def test_the_dockerfile_passes_hadolint(project):
    result = subprocess.run([HADOLINT, "Dockerfile"], cwd=project, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_installs_the_locked_app_and_runs_as_a_user(project):
    instructions = dockerfile_instructions(project)
    assert instructions[0][0] == "FROM"
    assert instructions[0][1].endswith("-slim")
    runs = " ".join(arguments for keyword, arguments in instructions if keyword == "RUN")
    assert "uv sync --locked --no-dev" in runs
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert any(keyword == "HEALTHCHECK" and "/liveness" in arguments for keyword, arguments in instructions)
    ignored = (project / ".dockerignore").read_text().split()
    assert {".git/", ".venv/"} <= set(ignored)


#: Where the suite keeps a screenshot of the page of each executor (CI keeps the folder as an artifact).
SCREENSHOTS = ROOT / "test-results"


def network_host(url: str) -> str | None:
    """The host and port a request goes to; None for data: and blob: URLs, which stay in the page."""
    parts = urlsplit(url)
    return parts.netloc if parts.scheme in ("http", "https", "ws", "wss") else None


@pytest.mark.slow
def test_the_image_command_serves_and_stops_cleanly_on_sigterm(project, tmp_path, new_page, report):
    only_with_both(project)  # the image is the same in every variant: once per executor
    (command,) = [
        json.loads(arguments) for keyword, arguments in dockerfile_instructions(project) if keyword == "CMD"
    ]
    assert "--dev" not in command[-1]
    for flag in ("--address 0.0.0.0", '--allow-websocket-origin "$ALLOWED_ORIGIN"', "--liveness"):
        assert flag in command[-1]
    port = free_port()
    environment = image_environment(project) | {"PORT": str(port), "ALLOWED_ORIGIN": f"127.0.0.1:{port}"}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=project,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        poll(
            lambda: liveness(port) == {"/liveness": True},
            timeout=60,
            message=f"/liveness; log:\n{log.read_text()}",
        )
        # In Chromium: the page renders, shows the first prices, and asks no host but this server.
        # (With the suite's 0.1 s --unused-session-lifetime, Panel 1.9 takes its CSS from its CDN.)
        page = new_page()
        hosts: set[str | None] = set()
        page.on("request", lambda request: hosts.add(network_host(request.url)))
        page.goto(f"http://127.0.0.1:{port}/app")
        expect(page.get_by_role("row", name=re.compile("^ACME "))).to_be_visible()
        if executor_of(project) == "dask":  # the page's first call starts the local cluster
            started = "Dask: started a local cluster"
            poll(lambda: started in log.read_text(), timeout=60, message=log.read_text())
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"page-both-{executor_of(project)}.png", full_page=True)
        page.context.close()
        # SIGTERM once the server saw the page go: a websocket closing at the same instant as the
        # shutdown makes Tornado log a traceback (Panel 1.10 on Python 3.13, once in CI).
        poll(lambda: "WebSocket connection closed" in log.read_text(), timeout=30, message=log.read_text())
        assert hosts - {None} == {f"127.0.0.1:{port}"}, "the page asks no host but its own server"
        children = descendants(process.pid)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)  # to the server alone, as `docker stop` signals PID 1
        code = process.wait(timeout=60)
        seconds = time.monotonic() - start
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output, output
    poll(lambda: not any(alive(pid) for pid in children), timeout=30, message="the worker processes ended")
    report(f"SIGTERM, image command, both-{executor_of(project)}: exit code 0 after {seconds:.2f} s")
