"""Each variant under `panel serve`: the page loads, runner threads come and go, Ctrl+C ends it."""

from __future__ import annotations

import subprocess
import urllib.request

import pytest

from support import (
    PACKAGE,
    close_sessions,
    executor_of,
    only_with_both,
    open_sessions,
    panel_serve,
    poll,
    prometheus,
    require,
    stopped_by_ctrl_c,
    threading_of,
    tracebacks,
)

pytestmark = pytest.mark.slow

#: Session runners on each page of the example: the experiments and the preview.
EXAMPLE_SESSION_RUNNERS = 2

#: A page whose runner runs two tasks and fails one, as it opens.
METRICS_APP = f"""
import panel as pn

from {PACKAGE}.runners import SessionTaskRunner


def measure(task: str) -> str:
    if task == "fail":
        raise ValueError("a failure that the metrics count")
    return task


runner = SessionTaskRunner(worker=measure)
for task in ("ok", "fail", "ok"):
    runner.append(task)
pn.panel(runner).servable()
"""

#: Prometheus' configuration for the test below: the served app, every second.
SCRAPE = """
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["{target}"]
"""


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


def test_prometheus_reads_the_runners_metrics_of_a_served_app(project, tmp_path):
    """A real Prometheus server scrapes /metrics (--plugins), which passes promtool's check.

    In prometheus_client's multiprocess mode, as under --num-procs: the figures go through its files.
    """
    only_with_both(project)
    if executor_of(project) == "dask":
        pytest.skip("the Dask variant's metrics are read in test_deploy.py, beside the scheduler's")
    promtool = require("promtool", "prometheus")
    app = tmp_path / "metrics" / "app.py"
    app.parent.mkdir()
    app.write_text(METRICS_APP)
    plugin = ("--plugins", f"{PACKAGE}.runners.metrics")
    files = tmp_path / "metrics-files"
    files.mkdir()
    multiprocess = {"PROMETHEUS_MULTIPROC_DIR": str(files)}
    with panel_serve(
        project, tmp_path / "serve.log", *plugin, app=str(app), short_sessions=False, environment=multiprocess
    ) as server:
        with urllib.request.urlopen(server.url, timeout=30):  # a session, whose script queues the tasks
            pass
        metrics = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(metrics, timeout=30) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            exposition = response.read()
        command = [promtool, "check", "metrics"]
        checked = subprocess.run(command, input=exposition, capture_output=True, timeout=30)
        assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()

        with prometheus(SCRAPE.format(target=f"127.0.0.1:{server.port}"), tmp_path / "prometheus") as query:
            finished = 'panel_runners_tasks_finished_total{worker="<script>.measure"}'

            def counted() -> dict[str, float]:
                return {found["metric"]["outcome"]: float(found["value"][1]) for found in query(finished)}

            poll(lambda: counted() == {"done": 2.0, "failed": 1.0}, timeout=30,
                 message="Prometheus has the tasks' outcomes: done 2, failed 1")  # fmt: skip
            ran = query('panel_runners_task_seconds_count{worker="<script>.measure"}')
            assert [float(found["value"][1]) for found in ran] == [3.0]
            assert [float(found["value"][1]) for found in query("panel_runners_workers_busy")] == [0.0]
        assert server.output().count("ValueError: a failure that the metrics count") == 1, server.output()
