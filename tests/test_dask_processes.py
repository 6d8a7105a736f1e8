"""Several `panel serve` processes of one `both`/`dask` project, and how many of them call the global worker.

With a shared scheduler (`DASK_SCHEDULER_ADDRESS`), the processes elect one producer of
the global runner's key: the worker is called once per interval across the deployment,
every session of every process sees each result, and when the producer's process is
killed another takes over within the bound that the runners' DESIGN.md states. Without a
scheduler address, `--num-procs` gives each process a local cluster of its own, and each
says so in a warning.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import Cluster, Server, close_sessions, open_sessions, panel_serve, poll, render

pytestmark = pytest.mark.slow

PACKAGE = "deployed_app"
#: Seconds between two calls of the example feed (the `global_interval_seconds` answer).
INTERVAL = 1.0
#: Dask's lease timeout in the app processes, and the scheduler's check of leases, short for the test:
#: the failover bound is their sum and one interval (the runners' DESIGN.md).
LEASE_TIMEOUT, LEASE_VALIDATION_INTERVAL = 2.0, 0.5
FAILOVER_BOUND = LEASE_TIMEOUT + LEASE_VALIDATION_INTERVAL + INTERVAL
#: What a loaded 2-core machine may add to the bound: the new producer's call, the fan-out to the
#: sessions, the processes' turns on the cores.
LOAD_ALLOWANCE = 5.0
#: Sessions opened on each server.
SESSIONS = 2
#: Intervals over which the calls are counted.
WINDOW = 4

#: Appended to the project's workers.py: each call of the feed, and of a job of every second, appends
#: its time to a file; the feed's time goes with the prices, for the sessions to say which they have.
FEED_PROBE = """

_fetch_prices = fetch_prices


def fetch_prices() -> dict[str, float]:
    \"\"\"The example feed, noting the time of each call.\"\"\"
    now = time.time()
    with open({calls!r}, "a") as calls:
        calls.write(f"{{now}}\\n")
    return {{**_fetch_prices(), "called at": now}}


def note_tick() -> float:
    \"\"\"A job of a schedule of every second, noting the time of each call.\"\"\"
    now = time.time()
    with open({ticks!r}, "a") as ticks:
        ticks.write(f"{{now}}\\n")
    return now
"""

#: Appended to the served script: each session writes the time of the latest result it has.
SESSION_PROBE = """

import os
from pathlib import Path

import panel as pn

from {package}.app import EXECUTOR, PRICES_INTERVAL_SECONDS
from {package}.runners import GlobalTaskRunner
from {package}.workers import fetch_prices, note_tick

_feed = GlobalTaskRunner(
    "prices", fetch_prices, seconds=PRICES_INTERVAL_SECONDS, executor=EXECUTOR, rest_when_unwatched=True
)
if os.environ.get("PROBE_SCHEDULE"):  # the deployments' tests: a job of every second as well
    _ticks = GlobalTaskRunner("ticks", note_tick, cron="* * * * * *", executor=EXECUTOR)
_seen = Path({folder!r}, f"{{os.getpid()}}-{{pn.state.curdoc.session_context.id}}")
_feed.param.watch(lambda event, seen=_seen: seen.write_text(str(event.new["called at"])), "value")
"""


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The files of the feed's and the scheduled job's calls, and the folder of the sessions' results."""
    calls, seen = tmp_path_factory.mktemp("calls") / "calls", tmp_path_factory.mktemp("seen")
    ticks = calls.with_name("ticks")
    calls.touch()
    ticks.touch()
    return calls, seen, ticks


@pytest.fixture(scope="module")
def project(
    template: Path, tmp_path_factory: pytest.TempPathFactory, folders: tuple[Path, Path, Path]
) -> Path:
    calls, seen, ticks = folders
    destination = tmp_path_factory.mktemp("deployed")
    project = render(
        template, destination, threading="both", executor="dask", package_name=PACKAGE,
        global_interval_seconds=INTERVAL,
    )  # fmt: skip
    workers = project / PACKAGE / "workers.py"
    workers.write_text(workers.read_text() + FEED_PROBE.format(calls=str(calls), ticks=str(ticks)))
    app = project / "app.py"
    app.write_text(app.read_text() + textwrap.dedent(SESSION_PROBE).format(package=PACKAGE, folder=str(seen)))
    return project


def call_times(calls: Path) -> list[float]:
    return [float(line) for line in calls.read_text().split()]


def calls_in(calls: Path, start: float, intervals: int) -> int:
    """The calls of ``intervals`` intervals from ``start`` (wall-clock), once the last has begun."""
    end = start + intervals * INTERVAL
    poll(lambda: any(when >= end for when in call_times(calls)), timeout=intervals * INTERVAL + 60,
         message=f"a call after {intervals} intervals")  # fmt: skip
    return sum(start <= when < end for when in call_times(calls))


def results_seen(seen: Path, pid: int) -> dict[str, float]:
    """The time of the latest result each session of the server ``pid`` has, by session."""
    return {path.name: float(path.read_text() or 0) for path in seen.glob(f"{pid}-*")}


@dataclass
class Deployment:
    """Two servers of one scheduler, each with ``SESSIONS`` sessions, once every session has a result."""

    producer: Server
    survivor: Server
    seen: Path

    def everyone_saw(self, after: float, servers: list[Server] | None = None) -> bool:
        """Every session of ``servers`` (both by default) has a result of a call made after ``after``."""
        latest = [results_seen(self.seen, server.process.pid) for server in servers or self.servers]
        return all(len(found) == SESSIONS and min(found.values()) > after for found in latest)

    @property
    def servers(self) -> list[Server]:
        return [self.producer, self.survivor]


@contextmanager
def deployment(
    project: Path, seen: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    with ExitStack() as stack:
        cluster = Cluster(project, tmp_path, stack)
        for name in ("first", "second"):
            cluster.add_worker(name)
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.address)
        monkeypatch.setenv("PROBE_SCHEDULE", "1")
        servers = [stack.enter_context(panel_serve(project, tmp_path / f"serve-{n}.log")) for n in (1, 2)]
        for server in servers:
            sessions = open_sessions(server.url, SESSIONS)
            stack.callback(close_sessions, sessions)
        logs = lambda: "\n".join(server.output() for server in servers)  # noqa: E731
        started = Deployment(*servers, seen)
        poll(
            lambda: started.everyone_saw(0),
            timeout=120,
            message=f"every session has a result; logs:\n{logs()}",
        )
        producers = [server for server in servers if ELECTED in server.output()]
        assert len(producers) == 1, [server.output() for server in servers]
        (survivor,) = (server for server in servers if server is not producers[0])
        yield Deployment(producers[0], survivor, seen)


#: What a server logs when it becomes the producer.
ELECTED = "this process now calls the worker of"


def test_servers_sharing_a_scheduler_call_the_global_worker_once_per_interval_and_take_over(
    project, folders, tmp_path, monkeypatch, report
):
    calls, seen, ticks = folders
    # Dask reads its configuration from DASK_* variables; the lease timeout is the app processes'.
    locks = "DASK_DISTRIBUTED__SCHEDULER__LOCKS__"
    monkeypatch.setenv(f"{locks}LEASE_TIMEOUT", f"{LEASE_TIMEOUT}s")
    monkeypatch.setenv(f"{locks}LEASE_VALIDATION_INTERVAL", f"{LEASE_VALIDATION_INTERVAL}s")
    with deployment(project, seen, tmp_path, monkeypatch) as served:
        counted_from = time.time()
        counted = calls_in(calls, counted_from, WINDOW)
        assert counted <= WINDOW + 1, f"{counted} calls in {WINDOW} intervals: more than one producer"
        assert counted >= WINDOW - 1, f"{counted} calls in {WINDOW} intervals: the feed lags"
        # A schedule of every second: one call per time for the deployment, each in its own second.
        scheduled = [when for when in call_times(ticks) if counted_from <= when < counted_from + WINDOW]
        assert WINDOW - 1 <= len(scheduled) <= WINDOW + 1, scheduled
        assert len({int(when) for when in scheduled}) == len(scheduled), f"two calls of one time: {scheduled}"
        poll(
            lambda: served.everyone_saw(counted_from),
            timeout=30,
            message="every session of both servers follows",
        )

        served.producer.process.kill()  # SIGKILL: no clean exit, the lease lapses
        killed_at = time.time()
        survivor_log = served.survivor.output
        poll(lambda: served.everyone_saw(killed_at, [served.survivor]), timeout=FAILOVER_BOUND + 60,
             message=f"the survivor's sessions get new results; log:\n{survivor_log()}")  # fmt: skip
        failover = time.time() - killed_at
        assert failover <= FAILOVER_BOUND + LOAD_ALLOWANCE, f"took over in {failover:.1f} s"
        assert ELECTED in served.survivor.output()

        counted_from = time.time()
        counted = calls_in(calls, counted_from, WINDOW)
        assert WINDOW - 1 <= counted <= WINDOW + 1, f"{counted} calls in {WINDOW} intervals after takeover"
        # The schedule's new producer calls at its next times, with no burst of the times it missed.
        scheduled = [when for when in call_times(ticks) if when >= killed_at]
        assert len({int(when) for when in scheduled}) == len(scheduled), f"two calls of one time: {scheduled}"
        assert sum(when >= counted_from for when in scheduled) >= WINDOW - 1, scheduled
        report(
            f"Dask, 2 server processes on one scheduler: {counted} calls of the global worker "
            f"in {WINDOW} intervals; after SIGKILL of the producer, new results in {failover:.1f} s "
            f"(bound {FAILOVER_BOUND:g} s)"
        )


def test_after_sigterm_another_server_takes_over_within_an_interval(
    project, folders, tmp_path, monkeypatch, report
):
    """``docker stop``: the producer gives its lease back as it stops, long before its lease lapses (30 s)."""
    monkeypatch.delenv("DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_TIMEOUT", raising=False)
    _, seen, _ = folders
    with deployment(project, seen, tmp_path, monkeypatch) as served:
        served.producer.process.terminate()
        stopped_at = time.time()
        survivor_log = served.survivor.output
        poll(lambda: served.everyone_saw(stopped_at, [served.survivor]), timeout=60,
             message=f"the survivor's sessions get new results; log:\n{survivor_log()}")  # fmt: skip
        takeover = time.time() - stopped_at
        assert takeover <= INTERVAL + LOAD_ALLOWANCE, f"took over in {takeover:.1f} s"
        assert served.producer.process.wait(timeout=30) == 0, served.producer.output()
        assert "SIGTERM: stopping the server" in served.producer.output(), (
            "the exit hooks ran before the loop stopped"
        )
        report(
            f"Dask, 2 server processes on one scheduler: after SIGTERM of the producer, "
            f"new results in {takeover:.1f} s"
        )


def test_num_procs_without_a_scheduler_address_warns_in_each_process(project, tmp_path, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    warning = "starts a local cluster of its own"
    with panel_serve(project, tmp_path / "serve.log", "--num-procs", "2") as server, ExitStack() as stack:
        stack.callback(kill_group, server.process.pid)  # the processes and their clusters, whatever happens
        sessions: list = []
        deadline = time.monotonic() + 120
        while server.output().count(warning) < 2:
            assert time.monotonic() < deadline, f"not both processes warned; log:\n{server.output()}"
            # The kernel hands each connection to either process: open sessions until both have had one.
            sessions += open_sessions(server.url, 1)
            with suppress(pytest.fail.Exception):  # this session may have gone to the process that warned
                poll(lambda: server.output().count(warning) == 2, timeout=3, message="")
        close_sessions(sessions)
        assert "Set DASK_SCHEDULER_ADDRESS to one scheduler's address" in server.output()
        server.interrupt(timeout=60)
    assert server.output().count(warning) == 2, "one warning in each process"


def kill_group(pid: int) -> None:
    """SIGKILL to what is left of a process group that the test started."""
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
