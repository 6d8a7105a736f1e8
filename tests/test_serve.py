"""Each variant under `panel serve`: the page loads, runner threads come and go, Ctrl+C ends it."""

from __future__ import annotations

import urllib.request

import pytest

from support import (
    close_sessions,
    executor_of,
    open_sessions,
    panel_serve,
    poll,
    stopped_by_ctrl_c,
    threading_of,
    tracebacks,
)

pytestmark = pytest.mark.slow

#: Session runners on each page of the example: the experiments and the preview.
EXAMPLE_SESSION_RUNNERS = 2


def test_page_loads_runners_follow_sessions_and_ctrl_c_stops(project, tmp_path):
    threading = threading_of(project)
    with panel_serve(project, tmp_path / "serve.log") as server:
        with urllib.request.urlopen(server.url, timeout=30) as response:  # the first session
            assert "<title>Panel Threading App</title>" in response.read().decode()
        close_sessions(open_sessions(server.url, 3))  # three more

        if threading in ("session", "both"):
            runners = 4 * EXAMPLE_SESSION_RUNNERS
            for number in range(1, runners + 1):
                stopped = f"SessionTaskRunner-{number} stopped"
                poll(lambda stopped=stopped: stopped in server.output(), timeout=30,
                     message=f"{stopped} with its session; log:\n{server.output()}")  # fmt: skip
            assert f"SessionTaskRunner-{runners + 1}" not in server.output()
        if threading in ("global", "both"):
            poll(lambda: "GlobalTaskRunner[prices] started" in server.output(), timeout=30,
                 message=f"the global runner started; log:\n{server.output()}")  # fmt: skip
            assert server.output().count("GlobalTaskRunner[prices] started") == 1
            if executor_of(project) == "dask":
                # Ctrl+C reaches the worker processes too: they ignore it once they have started.
                poll(lambda: "Dask: started a local cluster" in server.output(), timeout=30,
                     message=f"the local cluster started; log:\n{server.output()}")  # fmt: skip

        code, _ = server.interrupt()
        assert code == 0
        assert stopped_by_ctrl_c(server.output())
        assert tracebacks(server.output()) == []
        if threading in ("global", "both"):
            assert "GlobalTaskRunner[prices] stopped" in server.output()
