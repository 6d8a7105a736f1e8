"""Each variant serves with `panel serve`: the page loads, runner threads come and go, Ctrl+C ends it."""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import panel.models  # noqa: F401  (a client must know Panel's models to read the document)
import pytest
from bokeh.client import pull_session

from support import GENERATED_PYTHON, free_port, poll

pytestmark = pytest.mark.slow


@dataclass
class Served:
    port: int
    url: str
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def served(project: Path, tmp_path: Path) -> Iterator[Served]:
    """`panel serve app.py` for the project, destroying closed sessions within a fraction of a second."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [GENERATED_PYTHON, "-m", "panel", "serve", "app.py", "--address", "127.0.0.1",
             "--port", str(port), "--allow-websocket-origin", f"127.0.0.1:{port}",
             "--check-unused-sessions", "100", "--unused-session-lifetime", "100"],
            cwd=project, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        yield Served(port, f"http://127.0.0.1:{port}/app", process, log)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_page_loads_runners_follow_sessions_and_ctrl_c_stops(project, served):
    threading = (project / ".copier-answers.yml").read_text().split("threading: ")[1].split()[0]
    poll(lambda: listens(served.port), timeout=60, message=f"the server listens; log:\n{served.output()}")
    with urllib.request.urlopen(served.url, timeout=30) as response:  # the first session
        assert "<title>Panel Threading App</title>" in response.read().decode()
    sessions = [pull_session(url=served.url) for _ in range(3)]  # three more
    for session in sessions:
        session.close()

    if threading in ("session", "both"):
        for number in range(1, 5):
            stopped = f"SessionTaskRunner-{number} stopped"
            poll(lambda stopped=stopped: stopped in served.output(), timeout=30,
                 message=f"{stopped} with its session; log:\n{served.output()}")  # fmt: skip
        assert "SessionTaskRunner-5" not in served.output()
    if threading in ("global", "both"):
        poll(lambda: "GlobalTaskRunner[prices] started" in served.output(), timeout=30,
             message=f"the global runner started; log:\n{served.output()}")  # fmt: skip
        assert served.output().count("GlobalTaskRunner[prices] started") == 1

    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(timeout=10) == 0
    assert "Traceback" not in served.output()
    if threading in ("global", "both"):
        assert "GlobalTaskRunner[prices] stopped" in served.output()
