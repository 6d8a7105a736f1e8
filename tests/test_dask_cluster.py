"""executor=dask against a real cluster: `dask scheduler` and `dask worker` processes on loopback.

The runner runs in this process, as it would in the Panel server, or in a served
app as the generated README deploys it; the calls run in the worker processes,
which import the rendered project from PYTHONPATH, as the README tells users to
arrange.
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from support import (
    Cluster,
    descendants,
    panel_serve,
    poll,
    render,
    tracebacks,
)

pytestmark = pytest.mark.slow

distributed = pytest.importorskip("distributed")

PACKAGE = "cluster_app"

#: Functions the workers import from the project: where they ran, and how to end a worker.
PROBE = '''
"""Worker functions for the cluster test."""

import os
import signal
import time
from pathlib import Path


def pid(task: object) -> int:
    """Return the process id of the worker that runs the call."""
    return os.getpid()


def pid_when_released(folder: str) -> int:
    """Say which process started, wait for the test's go, return the process id."""
    Path(folder, f"started-{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not Path(folder, "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.getpid()


def until_cancelled(folder: str, control) -> str:
    """Say which process started, check for cancellation until it comes, say it came."""
    Path(folder, f"started-{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if control.cancelled:
            Path(folder, f"saw-cancelled-{os.getpid()}").touch()
            control.raise_if_cancelled()
        time.sleep(0.01)
    return "never cancelled"


def die(task: object) -> None:
    """End the worker process that runs the call, as a crash or the OOM killer would."""
    os.kill(os.getpid(), signal.SIGKILL)
'''


#: Appended to the project's workers.py: each call of the shared feed leaves the id of its process.
FEED_PROBE = """

_fetch_prices = fetch_prices


def fetch_prices() -> dict[str, float]:
    \"\"\"The example feed, leaving a file named after the process that runs the call.\"\"\"
    import os
    from pathlib import Path

    Path({folder!r}, f"call-{{os.getpid()}}").touch()
    return _fetch_prices()
"""


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the shared feed's calls leave their process ids."""
    return tmp_path_factory.mktemp("calls")


@pytest.fixture(scope="module")
def project(template: Path, tmp_path_factory: pytest.TempPathFactory, calls: Path) -> Path:
    destination = tmp_path_factory.mktemp("cluster")
    project = render(template, destination, threading="both", executor="dask", package_name=PACKAGE)
    (project / "probe.py").write_text(textwrap.dedent(PROBE).lstrip())
    workers = project / PACKAGE / "workers.py"
    workers.write_text(workers.read_text() + FEED_PROBE.format(folder=str(calls)))
    return project


@pytest.fixture
def modules(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, ModuleType]]:
    """The rendered project's runners and the probe, imported in this process."""
    monkeypatch.syspath_prepend(str(project))
    yield importlib.import_module(f"{PACKAGE}.runners"), importlib.import_module("probe")
    for name in [name for name in sys.modules if name == "probe" or name.split(".")[0] == PACKAGE]:
        del sys.modules[name]


@pytest.fixture
def start_cluster(project: Path, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    with ExitStack() as stack:
        yield lambda **config: Cluster(project, tmp_path, stack, **config)


@pytest.fixture
def connect(modules) -> Iterator[Callable[[Cluster, int], object]]:
    """Connect a client to a cluster once it has this many workers; closed after the test."""
    clients = []

    def connect_to(cluster: Cluster, workers: int) -> object:
        client = distributed.Client(cluster.address, set_as_default=False, timeout=30)
        clients.append(client)
        client.wait_for_workers(workers, timeout=60)
        return client

    yield connect_to
    for client in clients:
        client.close()


@contextmanager
def running(modules, client, worker_name: str) -> Iterator:
    """A session runner whose worker is one of the probe's functions, on the cluster; stopped after."""
    runners, probe = modules
    runner = runners.SessionTaskRunner(
        worker=getattr(probe, worker_name), executor=runners.DaskExecutor(client)
    )
    try:
        yield runner
    finally:
        runner.stop()
        assert runner.join(timeout=10), f"{runner.name} did not end"


@pytest.fixture
def flags(tmp_path: Path) -> Path:
    """A folder where the probe's calls leave their flags, and the test its go."""
    folder = tmp_path / "flags"
    folder.mkdir()
    return folder


def test_calls_run_in_the_worker_process_not_in_the_server(modules, start_cluster, connect):
    cluster = start_cluster()
    worker = cluster.add_worker("only")
    client = connect(cluster, 1)
    with running(modules, client, "pid") as runner:
        runner.append(1)
        poll(lambda: runner.completed == 1, timeout=30, message="the call returned")
        assert runner.outcome == "done"
        assert runner.value == worker.pid
        assert runner.value != os.getpid()


def test_a_worker_process_sees_its_call_cancelled(modules, start_cluster, connect, flags):
    cluster = start_cluster()
    worker = cluster.add_worker("only")
    client = connect(cluster, 1)
    with running(modules, client, "until_cancelled") as runner:
        runner.append(str(flags))
        poll(lambda: (flags / f"started-{worker.pid}").exists(), timeout=30, message="the call started")
        assert runner.cancel()
        poll(lambda: runner.completed == 1, timeout=10, message="the runner moved on")
        assert runner.outcome == "cancelled"
        poll(lambda: (flags / f"saw-cancelled-{worker.pid}").exists(), timeout=30,
             message="the worker process saw the cancellation")  # fmt: skip


def test_a_call_on_a_killed_worker_runs_again_on_another(modules, start_cluster, connect, flags, report):
    cluster = start_cluster()
    workers = [cluster.add_worker("first"), cluster.add_worker("second")]
    client = connect(cluster, 2)
    with running(modules, client, "pid_when_released") as runner:
        runner.append(str(flags))
        poll(lambda: any(flags.glob("started-*")), timeout=30, message="the call started on a worker")
        (first_started,) = flags.glob("started-*")
        victim = next(worker for worker in workers if f"started-{worker.pid}" == first_started.name)
        survivor = next(worker for worker in workers if worker is not victim)
        victim.kill()
        poll(lambda: (flags / f"started-{survivor.pid}").exists(), timeout=60,
             message="the scheduler ran the call again on the other worker")  # fmt: skip
        (flags / "go").touch()
        poll(lambda: runner.completed == 1, timeout=30, message="the call returned")
        assert runner.outcome == "done"
        assert runner.value == survivor.pid
        report(f"Dask: a call whose worker was killed ran again on the other worker (pid {survivor.pid})")


def test_a_call_that_keeps_killing_workers_is_reported_as_failed(modules, start_cluster, connect):
    cluster = start_cluster(allowed_failures="0")  # the first death fails the task
    cluster.add_worker("first")
    cluster.add_worker("second")
    client = connect(cluster, 2)
    with running(modules, client, "die") as runner:
        runner.append("boom")
        poll(lambda: runner.completed == 1, timeout=60, message="the call was given up, not left hanging")
        assert runner.outcome == "failed"
        assert type(runner.exception).__name__ == "KilledWorker"
        assert not runner.stopped
        poll(lambda: runner.status == "Idle", timeout=10, message="the runner waits for the next task")


def test_a_served_app_sends_its_calls_to_the_scheduler_named_in_the_environment(
    project, calls, start_cluster, tmp_path, monkeypatch
):
    cluster = start_cluster()
    worker = cluster.add_worker("only")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.address)  # as the generated README deploys it
    with panel_serve(project, tmp_path / "serve.log") as server:
        with urllib.request.urlopen(server.url, timeout=30) as response:  # a session starts the feed
            assert response.status == 200
        poll(lambda: (calls / f"call-{worker.pid}").exists(), timeout=60,
             message=f"the feed's call ran on the dask worker; log:\n{server.output()}")  # fmt: skip
        assert f"Dask: connected to the scheduler at {cluster.address}" in server.output()
        assert "local cluster" not in server.output()
        assert not (calls / f"call-{server.process.pid}").exists(), "a call ran in the server"
        assert descendants(server.process.pid) == set(), "the server started processes of its own"
        code, _ = server.interrupt()
    assert code == 0
    assert tracebacks(server.output()) == []
    assert "GlobalTaskRunner[prices] stopped" in server.output()
    assert worker.poll() is None, "the server's exit took down a cluster it does not own"
