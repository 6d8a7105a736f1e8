"""Measure the generated runners; print the table and write docs/benchmark.md: ``python bench/run.py``.

Renders the template's ``both`` variant into a temporary folder, imports its
runners and measures, in one run:

- the bookkeeping a SessionTaskRunner adds to each task, on tasks of 1 ms, against a bare
  queue.Queue and thread, and the CPU a task costs the server in a served session whose page
  binds the runner (the runner's work and Panel's updates of the page);
- fairness of the session runners' shared pool: 10 sessions queue 10 tasks each at once;
- GlobalTaskRunner.remove() latency for several intervals, and how long building a global runner
  takes right after a --dev re-import of its module, while the old thread is in a 3 s call;
- global worker calls per second with 1 and with 300 open sessions;
- the OS threads of a `panel serve` process (read in /proc) with 300 sessions open, idle
  and each running a short task;
- HTTP response time of a served app (GETs from a process of their own), idle and while
  10 sessions run one-second tasks, with the pool's max_workers at 1, 2 and the default;
- CPU-bound task throughput, and the response time while they run, with the workers in the
  runners' threads and on Dask (executor=dask: a local cluster of worker processes);
- ``async def`` workers: 100 served sessions each queue 10 tasks that wait 1 s, how long they all
  take, the process's threads and the GET time meanwhile; the memory of one waiting async task;
- the memory one runner holds after tasks that load a table, every other one failing;
- what the Prometheus metrics add to a task of 1 ms, and a refresh of the admin page's Tasks tab
  with 300 sessions' runners;
- global worker calls per interval with 1 and with 2 `panel serve` processes on one Dask
  scheduler, and the seconds from a SIGKILL of the producer's process to the other's next call;
- render time of each variant.

The page holds the table, the machine and the versions it ran on, and notes on reading it.
``--output PATH`` writes it elsewhere; ``--quick`` writes no page unless ``--output`` names one.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import importlib
import logging
import os
import platform
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path

import bokeh
import copier
import distributed
import panel as pn
import panel.models
import param
from bokeh.client import pull_session

ROOT = Path(__file__).resolve().parents[1]
#: The page that a full run writes, which the README links to.
PAGE = ROOT / "docs" / "benchmark.md"
ROWS: list[tuple[str, str]] = []
#: The package of the executor=dask rendering (the other one is the default, panel_threading_app).
DASK_PACKAGE = "panel_threading_app_on_dask"
#: Pure-Python arithmetic per CPU-bound task: about 0.1 s on one core of the reference machine.
CPU_WORK = 3_000_000


def row(measure: str, result: str) -> None:
    ROWS.append((measure, result))
    sys.stderr.write(f"{measure}: {result}\n")


def wait_for(condition: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark waited too long")
        time.sleep(0.005)


def render_variants(workdir: Path) -> Path:
    """Render every variant, timing each; return the ``both`` project."""
    for threading_ in ("session", "global", "both"):
        start = time.perf_counter()
        copier.run_copy(
            str(ROOT), str(workdir / threading_), data={"threading": threading_},
            defaults=True, quiet=True, skip_tasks=True, vcs_ref="HEAD",
        )  # fmt: skip
        row(f"Render the `{threading_}` variant (copier copy)", f"{time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    copier.run_copy(
        str(ROOT), str(workdir / "dask"), defaults=True, quiet=True, skip_tasks=True, vcs_ref="HEAD",
        data={"threading": "both", "executor": "dask", "package_name": DASK_PACKAGE},
    )  # fmt: skip
    row("Render the `both` variant, executor=dask (copier copy)", f"{time.perf_counter() - start:.2f} s")
    return workdir / "both"


def one_millisecond(task: object) -> object:
    """A short real task: it waits 1 ms, as a quick query would."""
    time.sleep(0.001)
    return task


def bare_queue_throughput(tasks: int) -> float:
    """Tasks of 1 ms per second through a plain queue.Queue worked by one thread."""
    work: queue.Queue[object] = queue.Queue()
    done = threading.Event()
    count = 0

    def loop() -> None:
        nonlocal count
        while (task := work.get()) is not None:
            one_millisecond(task)
            count += 1
            if count == tasks:
                done.set()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    start = time.perf_counter()
    for task in range(tasks):
        work.put(task)
    done.wait(60)
    elapsed = time.perf_counter() - start
    work.put(None)
    thread.join(5)
    return tasks / elapsed


def runner_throughput(runners: object, tasks: int) -> float:
    """Tasks of 1 ms per second through a SessionTaskRunner outside a session."""
    runner = runners.SessionTaskRunner(worker=one_millisecond, max_tasks=tasks)
    start = time.perf_counter()
    for task in range(tasks):
        runner.append(task)
    wait_for(lambda: runner.completed == tasks)
    elapsed = time.perf_counter() - start
    runner.stop()
    runner.join(5)
    return tasks / elapsed


def fairness(runners: object, sessions: int = 10, tasks_each: int = 10) -> tuple[int, int]:
    """10 sessions queue 10 tasks of 20 ms each at once, from threads of their own.

    Return the positions, in the order the tasks finished, of the last session's first
    task and of the earliest third task.
    """
    lock, order = threading.Lock(), []

    def note(task: tuple[int, int]) -> None:
        time.sleep(0.02)
        with lock:
            order.append(task)

    session_runners = [runners.SessionTaskRunner(worker=note, max_tasks=tasks_each) for _ in range(sessions)]
    together = threading.Barrier(sessions)

    def queue_tasks(number: int) -> None:
        together.wait()
        for task in range(tasks_each):
            session_runners[number].append((number, task))

    feeders = [threading.Thread(target=queue_tasks, args=(number,)) for number in range(sessions)]
    for feeder in feeders:
        feeder.start()
    for feeder in feeders:
        feeder.join(60)
    wait_for(lambda: len(order) == sessions * tasks_each)
    for runner in session_runners:
        runner.stop()
    last_first = max(order.index((number, 0)) for number in range(sessions))
    first_third = min(order.index((number, 2)) for number in range(sessions))
    return last_first, first_third


#: A served page with a session runner, whose worker sleeps in a thread, or waits on the
#: runners' event loop for a session opened with ``?worker=async``. The session opened with
#: ``?start=SECONDS&tasks=N`` (and the same ``worker``) gives every other open session of that
#: worker N tasks (1 if not given) of that many seconds, and the log counts them as they finish.
SESSIONS_APP = """\
import asyncio
import itertools
import logging
import time

import panel as pn

from panel_threading_app.runners import SessionTaskRunner

logger = logging.getLogger("bench")
logger.setLevel(logging.INFO)
logging.getLogger("panel_threading_app").setLevel(logging.INFO)  # the runners' stop lines


def short_task(seconds: float) -> None:
    time.sleep(seconds)


async def waiting_task(seconds: float) -> None:
    await asyncio.sleep(seconds)


def count_finished(event: object) -> None:
    # Sessions' callbacks may run in several threads at once (Bokeh 3.10, Panel 1.10): next() on a
    # shared count is atomic, where a read followed by a write could lose an update.
    logger.info("tasks done: %d", next(pn.state.cache.setdefault("finished", itertools.count(1))))


runners = pn.state.cache.setdefault("runners", [])
arguments = pn.state.session_args
worker = waiting_task if arguments.get("worker") == [b"async"] else short_task
if "start" in arguments:
    for runner in runners:
        # By name: each session runs this script anew, with functions of its own.
        if not runner.stopped and runner.worker.__name__ == worker.__name__:
            for _ in range(int(arguments.get("tasks", [1])[0])):
                runner.append(float(arguments["start"][0]))
    pn.pane.Str("started").servable()
else:
    runner = SessionTaskRunner(worker=worker, max_tasks=100)
    runner.param.watch(count_finished, "completed")
    runners.append(runner)
    pn.panel(runner).servable()
"""


def server_threads(server: subprocess.Popen[bytes]) -> int:
    """The OS threads of a served process, read in /proc."""
    return int(Path(f"/proc/{server.pid}/status").read_text().split("Threads:")[1].split()[0])


def served_threads(
    project: Path, sessions: int, warm_up: int = 30, task_seconds: float = 0.1
) -> tuple[int, int, int]:
    """OS threads of a `panel serve` process: at baseline, with ``sessions`` idle, at most while busy.

    The baseline is read after ``warm_up`` sessions opened and closed (imports, thread pools).
    """
    with panel_serve(project, "bench_pool_app", SESSIONS_APP) as (url, server):
        log = project / "bench_pool_app.log"
        threads = partial(server_threads, server)
        for session in [pull_session(url=url) for _ in range(warm_up)]:
            session.close()
        time.sleep(1)  # the closed sessions' runners stop
        baseline = threads()
        opened = [pull_session(url=url) for _ in range(sessions)]
        idle = threads()
        opened.append(pull_session(url=url, arguments={"start": str(task_seconds)}))
        busy = 0
        while f"tasks done: {sessions}\n" not in log.read_text():
            busy = max(busy, threads())
        for session in opened:
            session.close()
    return baseline, idle, busy


def remove_latency(runners: object, seconds: float) -> float:
    runner = runners.GlobalTaskRunner(key=f"bench-remove-{seconds}", worker=time.monotonic, seconds=seconds)
    wait_for(lambda: runner.calls >= 1)
    start = time.perf_counter()
    runner.remove()
    return time.perf_counter() - start


#: A worker module that a --dev reload re-imports: each call lasts 3 s.
SLOW_WORKER = """\
import time


def slow() -> float:
    time.sleep(3.0)
    return time.monotonic()
"""


def reload_stall(project: Path, package: str) -> float:
    """Seconds that building a global runner takes (on the server's loop, in a session) just after a
    --dev re-import of the package and the worker's module, while the old thread is in a 3 s call."""
    (project / "bench_slow_worker.py").write_text(SLOW_WORKER)
    ours = (package, "bench_slow_worker")
    saved = {name: module for name, module in sys.modules.items() if name.partition(".")[0] in ours}

    def forget() -> None:
        """As --dev does: the package's and the worker's modules are imported again on next use."""
        for name in [name for name in sys.modules if name.partition(".")[0] in ours]:
            del sys.modules[name]

    runners = importlib.import_module(f"{package}.runners")
    old = runners.GlobalTaskRunner(
        key="bench-reload", worker=importlib.import_module("bench_slow_worker").slow, seconds=0.01
    )
    registry = importlib.import_module(f"{package}.runners.global_runner")._registry()
    wait_for(lambda: registry.beats["bench-reload"].control is not None)  # the old thread is in its call
    forget()
    reloaded = importlib.import_module(f"{package}.runners").GlobalTaskRunner  # imported before the clock
    worker = importlib.import_module("bench_slow_worker").slow
    start = time.perf_counter()
    new = reloaded(key="bench-reload", worker=worker, seconds=0.01)
    stall = time.perf_counter() - start
    new.remove(timeout=0)
    wait_for(lambda: not old.thread.is_alive() and not new.thread.is_alive())
    forget()
    sys.modules.update(saved)
    return stall


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def served(app: Callable[[], object]) -> Iterator[str]:
    port = free_port()
    server = pn.serve(
        {"app": app}, port=port, address="127.0.0.1", websocket_origin=f"127.0.0.1:{port}",
        threaded=True, show=False, verbose=False, check_unused_sessions_milliseconds=100,
        unused_session_lifetime_milliseconds=100,
    )  # fmt: skip
    wait_for(lambda: listening(port))
    try:
        yield f"http://127.0.0.1:{port}/app"
    finally:
        server.stop()
        server.join(10)


def session_task_cost(runners: object, tasks: int) -> tuple[float, float]:
    """Seconds of wall time beyond the work, and of this process's CPU, a task of 1 ms costs in a
    served session whose page shows the runner and its value (a Bokeh client holds the session)."""
    session_runners: list[object] = []

    def app() -> object:
        runner = runners.SessionTaskRunner(worker=one_millisecond, max_tasks=tasks)
        session_runners.append(runner)
        return pn.Column(runner, pn.pane.Str(runner.param.value))

    with served(app) as url:
        session = pull_session(url=url)
        wait_for(lambda: session_runners)
        runner = session_runners[0]
        cpu, start = time.process_time(), time.perf_counter()
        for task in range(tasks):
            runner.append(task)
        wait_for(lambda: runner.completed == tasks)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        session.close()
    return (wall - tasks * 0.001) / tasks, cpu / tasks


#: A worker for a served global feed: it counts its calls in a file the benchmark reads.
FEED_MODULE = """\
import os
from pathlib import Path

CALLS = Path(__file__).with_name("bench_feed_calls.txt")
calls = 0


def count() -> int:
    global calls
    calls += 1
    CALLS.with_suffix(".tmp").write_text(str(calls))
    os.replace(CALLS.with_suffix(".tmp"), CALLS)  # a reader never sees it half written
    return calls
"""

#: A served page that shows the feed through its session's subscription.
FEED_APP = """\
import panel as pn

from bench_feed import count
from panel_threading_app.runners import GlobalTaskRunner

feed = GlobalTaskRunner(key="bench-feed", worker=count, seconds=0.01)
pn.pane.Str(feed.subscribe().param.value).servable()
"""


@contextmanager
def panel_serve(
    project: Path, name: str, app: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Serve ``app`` (a script's text) with `panel serve` in a process of its own, with the variables
    ``env`` added to its environment; yield its URL and its process."""
    (project / f"{name}.py").write_text(app)
    port = free_port()
    with (project / f"{name}.log").open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", f"{name}.py", "--port", str(port),
             "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}"],
            cwd=project, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )  # fmt: skip
    try:
        wait_for(lambda: listening(port))
        yield f"http://127.0.0.1:{port}/{name}", server
    finally:
        server.terminate()
        server.wait(30)


def example_page_session(project: Path, sessions: int) -> float:
    """Median seconds to open and close one session of the project's example page (a Bokeh client)."""
    times = []
    with panel_serve(project, "example_page", (project / "app.py").read_text()) as (url, _):
        pull_session(url=url).close()  # the first session imports the app
        for _ in range(sessions):
            start = time.perf_counter()
            pull_session(url=url).close()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def calls_per_second(project: Path, sessions: tuple[int, ...], window: float) -> list[float]:
    """Worker calls per second of one served global runner (0.01 s interval) as sessions open."""
    (project / "bench_feed.py").write_text(FEED_MODULE)
    calls_file = project / "bench_feed_calls.txt"

    def calls() -> int:
        try:
            return int(calls_file.read_text())
        except FileNotFoundError:  # not written yet
            return 0

    rates, opened = [], []
    with panel_serve(project, "bench_feed_app", FEED_APP) as (url, _):
        for wanted in sessions:
            opened += [pull_session(url=url) for _ in range(wanted - len(opened))]
            time.sleep(window / 2)  # the new sessions settle
            before, start = calls(), time.perf_counter()
            time.sleep(window)  # the measuring window itself
            rates.append((calls() - before) / (time.perf_counter() - start))
        for session in opened:
            session.close()
    return rates


#: A worker for the global feed of several server processes on one scheduler: it notes the time
#: of each call in a file. The benchmark's own process runs the scheduler and its worker.
SHARED_FEED_MODULE = """\
import time
from pathlib import Path

CALLS = Path(__file__).with_name("bench_shared_feed_calls.txt")


def note_call() -> float:
    now = time.time()
    with CALLS.open("a") as calls:
        calls.write(f"{now}\\n")
    return now
"""

#: A served page of that feed: each process's sessions follow it.
SHARED_FEED_APP = f"""\
import logging

import panel as pn

from bench_shared_feed import note_call
from {DASK_PACKAGE}.runners import DaskExecutor, GlobalTaskRunner

logging.getLogger("{DASK_PACKAGE}").setLevel(logging.INFO)  # which process calls the worker

feed = GlobalTaskRunner(key="bench-shared", worker=note_call, seconds={{interval}}, executor=DaskExecutor())
pn.pane.Str(feed.param.value).servable()
"""


def shared_feed(
    project: Path, sessions: int, interval: float, window: float, lease_timeout: float, validation: float
) -> tuple[float, float, float]:
    """Global worker calls per interval with 1, then 2 server processes of ``sessions`` sessions each
    on one Dask scheduler; then seconds from a SIGKILL of the producer's process to the next call."""
    import dask

    (project / "bench_shared_feed.py").write_text(SHARED_FEED_MODULE)
    calls_file = project / "bench_shared_feed_calls.txt"
    calls_file.write_text("")
    app = SHARED_FEED_APP.format(interval=interval)

    def calls_since(start: float) -> list[float]:
        return [when for when in map(float, calls_file.read_text().split()) if when >= start]

    def per_interval() -> float:
        start = time.time()
        time.sleep(window)  # the measuring window itself
        return len(calls_since(start)) / (window / interval)

    locks = "distributed.scheduler.locks"
    environment = {
        "DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_TIMEOUT": f"{lease_timeout}s",  # read by the app processes
    }
    opened: list[object] = []
    with (
        dask.config.set({f"{locks}.lease-validation-interval": f"{validation}s"}),  # read by the scheduler
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            protocol="tcp",
            scheduler_kwargs={"dashboard": False},
        ) as cluster,
    ):
        environment["DASK_SCHEDULER_ADDRESS"] = cluster.scheduler_address
        with panel_serve(project, "bench_shared_feed_one", app, environment) as (first_url, first):
            opened += [pull_session(url=first_url) for _ in range(sessions)]
            time.sleep(window / 2)  # the new sessions settle
            one = per_interval()
            with panel_serve(project, "bench_shared_feed_two", app, environment) as (second_url, second):
                opened += [pull_session(url=second_url) for _ in range(sessions)]
                time.sleep(window / 2)
                two = per_interval()
                elected = "now calls the worker"
                one_log, two_log = (project / f"bench_shared_feed_{name}.log" for name in ("one", "two"))
                elected_in = [elected in log.read_text() for log in (one_log, two_log)]
                assert any(elected_in), "no process calls the worker"
                producer = first if elected_in[0] else second
                producer.kill()
                killed_at = time.time()
                wait_for(lambda: calls_since(killed_at), timeout=lease_timeout + validation + 60)
                failover = min(calls_since(killed_at)) - killed_at
            for session in opened:
                with suppress(Exception):  # those of the killed server are gone
                    session.close()
    return one, two, failover


def kept_runners_memory(runners: object, count: int, outcomes: int) -> tuple[float, int]:
    """KiB per queue kept with no session, each with ``outcomes`` finished tasks; threads left.

    As ``for_user`` does, the store keeps each runner's queue; the runners themselves (a
    session's Panel objects) go with their sessions. The memory is what Python still holds
    for them (tracemalloc), not the process's resident size, which keeps what was freed.
    """
    kept = importlib.import_module(f"{runners.__name__}.kept")
    store = kept.KeptRunners(max_kept=count, name="bench-kept")
    wait_for(lambda: not runners.shared_pool().threads)  # the threads of earlier rows have ended
    gc.collect()
    tracemalloc.start()
    before, threads = tracemalloc.get_traced_memory()[0], threading.active_count()
    made = []
    for number in range(count):
        runner = runners.SessionTaskRunner(worker=str, max_tasks=outcomes, history_size=outcomes)
        store.attach(number, "session", lambda runner=runner: runner._queue, keep_for=3600)
        for task in range(outcomes):
            runner.append(task)
        made.append(runner)
    wait_for(lambda: all(runner.completed == outcomes for runner in made))
    for number, runner in enumerate(made):
        runner._stop_listening()  # as the runner's session ends
        store.detach(number, "session")
    made.clear()  # the store holds their queues now: only its references count
    wait_for(lambda: threading.active_count() <= threads + 1)  # the pool's threads end, the loop stays
    gc.collect()
    per_runner = (tracemalloc.get_traced_memory()[0] - before) / 1024 / count
    tracemalloc.stop()
    assert store.kept == count
    left = threading.active_count() - threads
    store.stop_all()
    return per_runner, left


#: Times ``argv[2]`` GETs of the URL ``argv[1]``, one after the other; prints their seconds.
GET_CLIENT = """\
import sys
import time
import urllib.request

for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    with urllib.request.urlopen(sys.argv[1], timeout=60) as response:
        response.read()
    print(time.perf_counter() - start, flush=True)
    time.sleep(float(sys.argv[3]))
"""


def start_gets(url: str, count: int, pause: float = 0.0) -> subprocess.Popen[str]:
    """Start ``count`` GETs of ``url``, one after the other, ``pause`` seconds apart, from a process
    of their own; ``get_seconds`` reads how long each took."""
    client = [sys.executable, "-c", GET_CLIENT, url, str(count), str(pause)]
    return subprocess.Popen(client, stdout=subprocess.PIPE, text=True)


def get_seconds(gets: subprocess.Popen[str]) -> list[float]:
    """The seconds of each GET that ``start_gets`` started, once they are all done."""
    output = gets.communicate(timeout=300)[0]
    if gets.returncode:
        raise subprocess.CalledProcessError(gets.returncode, gets.args, output)
    return [float(line) for line in output.split()]


def get_times(url: str, count: int) -> list[float]:
    """Seconds of ``count`` GETs of ``url``, one after the other, from a process of their own."""
    return get_seconds(start_gets(url, count))


def response_times(
    runners: object,
    work: Callable[[object], object],
    samples: int,
    executor: object = None,
    max_workers: int | None = None,
) -> tuple[float, float]:
    """Median GET time of the app, idle and while 10 sessions each run one-second tasks.

    The tasks run in the process's shared pool, or in a pool of ``max_workers`` threads.
    The GETs come from a process of their own, as a browser's would: a client in the
    server's process would wait for the GIL as well. The idle time is the median of
    ``samples`` GETs before the tasks and as many after them, once the server's first
    page has been served: a busy time is compared with its own server's idle one.
    """
    session_runners: list[object] = []
    pool = None if max_workers is None else runners.WorkerPool(max_workers)

    def app() -> object:
        runner = runners.SessionTaskRunner(worker=work, executor=executor, pool=pool)
        session_runners.append(runner)
        return runner

    with served(app) as url:
        get_times(url, 1)  # the first page of a server imports and builds what the next ones reuse
        idle = get_times(url, samples)
        sessions = [pull_session(url=url) for _ in range(10)]
        for runner in session_runners[-10:]:
            for task in range(30):
                runner.append(task)
        started = session_runners[-10:]
        wait_for(lambda: all(runner.busy or runner.waiting_ahead is not None for runner in started))
        busy = statistics.median(get_times(url, samples))
        for runner in session_runners:
            runner.clear()
            runner.cancel()
        for session in sessions:
            session.close()
        # Closed sessions stop their runners after the running task.
        wait_for(lambda: all(runner.join(0) for runner in session_runners), timeout=30)
        idle += get_times(url, samples)
    return statistics.median(idle), busy


def sleep_one_second(task: object) -> None:
    time.sleep(1.0)


async def wait_one_second(task: object) -> None:
    """An ``async def`` worker that waits 1 s, as a call to a slow web API would."""
    await asyncio.sleep(1.0)


def async_sessions(project: Path, sessions: int, tasks_each: int, samples: int) -> dict[str, float]:
    """``sessions`` sessions of a `panel serve` process each queue ``tasks_each`` tasks of an async worker.

    Returns the seconds from the queueing until all are done, the server's threads before
    and at most meanwhile, and the median GET time of the app idle and while the tasks wait
    (GETs spread over the tasks' time, from a process of their own: the pages are updated in
    bursts, as tasks of one second start and end together).
    """
    with panel_serve(project, "bench_async_app", SESSIONS_APP) as (url, server):
        log = project / "bench_async_app.log"
        threads = partial(server_threads, server)
        get_times(url, 1)
        idle = statistics.median(get_times(url, samples))
        opened = [pull_session(url=url, arguments={"worker": "async"}) for _ in range(sessions)]
        baseline = most = threads()
        start = time.perf_counter()
        start_tasks = {"start": "1", "tasks": str(tasks_each), "worker": "async"}
        opened.append(pull_session(url=url, arguments=start_tasks))
        gets = start_gets(url, samples, pause=0.8 * tasks_each / samples)
        done = f"tasks done: {sessions * tasks_each}\n"
        while done not in log.read_text():
            most = max(most, threads())
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        busy = statistics.median(get_seconds(gets))
        for session in opened:
            session.close()
    return {"seconds": elapsed, "baseline": baseline, "most": most, "idle": idle, "busy": busy}


def async_task_memory(runners: object, count: int) -> float:
    """KiB that one waiting task of an ``async def`` worker holds, its runner's queue apart."""
    release = asyncio.Event()

    async def wait(task: object) -> None:
        await release.wait()

    queued = [runners.SessionTaskRunner(worker=wait) for _ in range(count)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for runner in queued:
        runner.append(None)
    wait_for(lambda: all(runner.busy for runner in queued))
    gc.collect()
    waiting = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    runners._process.runners_loop().loop().call_soon_threadsafe(release.set)
    wait_for(lambda: all(runner.completed == 1 for runner in queued))
    for runner in queued:
        runner.stop()
    return waiting / count / 1024


#: MiB of the table that ``load_then_maybe_fail`` loads.
TABLE_MIB = 5


def load_then_maybe_fail(task: int) -> object:
    """Load a table of ``TABLE_MIB`` MiB, then fail every other task, as a worker whose data is bad."""
    import numpy as np

    table = np.zeros(TABLE_MIB * 2**20 // 8)
    if task % 2:
        raise ValueError(f"task {task}: the table it loaded is bad")
    return table


def failed_task_memory(runners: object, tasks: int) -> tuple[float, float]:
    """MiB one runner holds after ``tasks`` tasks of ``load_then_maybe_fail``, default settings; and
    the MiB of the successes its ``history`` shows, which it must hold."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    runner = runners.SessionTaskRunner(worker=load_then_maybe_fail, max_tasks=tasks)
    for task in range(tasks):
        runner.append(task)
    wait_for(lambda: runner.completed == tasks)
    gc.collect()
    held = (tracemalloc.get_traced_memory()[0] - before) / 2**20
    tracemalloc.stop()
    shown = sum(item.outcome == "done" for item in runner.history) * TABLE_MIB
    runner.stop()
    return held, shown


def metrics_cost(runners: object, tasks: int, rounds: int) -> tuple[list[float], float]:
    """What the Prometheus metrics (``--plugins <package>.runners.metrics``) add to a task of 1 ms.

    Returns each round's µs a task with the metrics' observer against without, and the µs of one
    call of the observers with it, against none.
    """
    observers = runners._process.observers()
    observe = importlib.import_module(f"{runners.__name__}.metrics").observe  # what --plugins imports
    observers.pop("metrics", None)

    def rate(counted: bool) -> float:
        if counted:
            observers["metrics"] = observe
        try:
            return runner_throughput(runners, tasks)
        finally:
            observers.pop("metrics", None)

    extra = []
    for round_ in range(rounds):  # in turn first: the machine's speed drifts within minutes
        first, second = (True, False) if round_ % 2 else (False, True)
        rates = {first: rate(first), second: rate(second)}
        extra.append(1e6 / rates[True] - 1e6 / rates[False])
    calls = 20_000

    def per_call() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            runners._process.tell_observers("task", "bench.one_millisecond", "done", 0.001, 0.001)
        return (time.perf_counter() - start) / calls * 1e6

    without = per_call()
    observers["metrics"] = observe
    with_metrics = per_call()
    observers.pop("metrics")
    return sorted(extra), with_metrics - without


def admin_refresh(runners: object, sessions: int, refreshes: int) -> tuple[float, int]:
    """Seconds of one refresh of the admin page's Tasks tab, its models in a Bokeh document, with
    ``sessions`` sessions' runners (two each, as the example page) following one global key.

    Returns the median refresh, and the rows it shows.
    """
    from bokeh.document import Document

    admin = importlib.import_module(f"{runners.__name__}.admin")
    release = threading.Event()

    def blocked(task: object) -> None:
        release.wait(60)

    workers = (blocked, one_millisecond)
    queues = [runners.SessionTaskRunner(worker=worker) for _ in range(sessions) for worker in workers]
    for runner in queues[::2]:
        runner.append(None)  # a pool's worth of them run, the others wait
    feed = [runners.GlobalTaskRunner("bench-admin", server_clock, seconds=1.0) for _ in range(sessions)]
    doc = Document()
    tab = admin.TasksTab()
    doc.add_root(pn.panel(tab).get_root(doc))
    times = []
    for _ in range(refreshes):
        start = time.perf_counter()
        tab.refresh()
        times.append(time.perf_counter() - start)
    shown = len(tab.queues.value) + len(tab.global_runners.value)
    release.set()
    for runner in queues:
        runner.stop()
    feed[0].remove()
    return statistics.median(times), shown


def server_clock() -> str:
    return time.strftime("%H:%M:%S")


def compute_one_second(task: object) -> None:
    deadline = time.perf_counter() + 1.0
    while time.perf_counter() < deadline:
        sum(range(1000))


def cpu_work(task: object) -> int:
    """A fixed amount of pure-Python arithmetic: it holds the GIL throughout."""
    return sum(number * number for number in range(CPU_WORK))


def cpu_throughput(runners: object, executor: object, sessions: int, tasks_each: int) -> float:
    """Tasks per second of ``cpu_work``, ``tasks_each`` queued in each of ``sessions`` runners."""
    session_runners = [
        runners.SessionTaskRunner(worker=cpu_work, executor=executor, max_tasks=tasks_each)
        for _ in range(sessions)
    ]
    start = time.perf_counter()
    for runner in session_runners:
        for task in range(tasks_each):
            runner.append(task)
    wait_for(lambda: all(runner.completed == tasks_each for runner in session_runners), timeout=600)
    elapsed = time.perf_counter() - start
    for runner in session_runners:
        runner.stop()
        runner.join(5)
    return sessions * tasks_each / elapsed


def main() -> None:
    logging.getLogger("bokeh").setLevel(logging.ERROR)  # closed sessions' "Failed sending" warnings
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2_000, help="tasks of 1 ms for the bookkeeping row")
    parser.add_argument(
        "--quick", action="store_true", help="short runs, few samples: a smoke test, which writes no page"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where to write the page (default: {PAGE.relative_to(ROOT)}, unless --quick)",
    )
    args = parser.parse_args()
    output = args.output or (None if args.quick else PAGE)
    window, samples = (0.5, 1) if args.quick else (2.0, 10)

    with tempfile.TemporaryDirectory() as workdir:
        project = render_variants(Path(workdir))
        sys.path.insert(0, str(project))
        runners = importlib.import_module("panel_threading_app.runners")

        # Rounds of the two back to back, in turn first: the machine's speed drifts within
        # minutes. The bookkeeping is the median of each round's own difference.
        rounds = 1 if args.quick else 5
        bare_rates, our_rates = [], []
        for round_ in range(rounds):
            if round_ % 2:
                bare_rates.append(bare_queue_throughput(args.tasks))
                our_rates.append(runner_throughput(runners, args.tasks))
            else:
                our_rates.append(runner_throughput(runners, args.tasks))
                bare_rates.append(bare_queue_throughput(args.tasks))
        extra = sorted(1e6 / ours - 1e6 / bare for ours, bare in zip(our_rates, bare_rates, strict=True))
        row(
            f"Tasks of 1 ms, bare queue.Queue + thread ({args.tasks} tasks, median of {rounds})",
            f"{statistics.median(bare_rates):,.0f} tasks/s",
        )
        row(
            f"Tasks of 1 ms, SessionTaskRunner outside a session ({args.tasks} tasks, median of {rounds})",
            f"{statistics.median(our_rates):,.0f} tasks/s: {statistics.median(extra):.0f} µs of bookkeeping"
            f" a task in the median round ({extra[0]:.0f} to {extra[-1]:.0f} µs)",
        )

        metrics_extra, observer_cost = metrics_cost(runners, args.tasks, rounds)
        row(
            f"Tasks of 1 ms with the Prometheus metrics against without ({args.tasks} tasks, {rounds} pairs)",
            f"{statistics.median(metrics_extra):+.0f} µs a task in the median round ({metrics_extra[0]:+.0f} "
            f"to {metrics_extra[-1]:+.0f} µs); counting one task's end takes {observer_cost:.1f} µs",
        )

        overhead, cpu = session_task_cost(runners, args.tasks // 2)
        row(
            f"Tasks of 1 ms in a served session whose page shows the runner ({args.tasks // 2} tasks)",
            f"{overhead * 1e6:.0f} µs a task beyond the work, {cpu * 1e6:.0f} µs of the server's CPU a task",
        )

        for seconds in (1, 5, 30):
            row(
                f"GlobalTaskRunner.remove(), seconds={seconds}",
                f"{remove_latency(runners, seconds) * 1000:.1f} ms",
            )

        stall = reload_stall(project, "panel_threading_app")
        row(
            "Building a global runner just after a --dev re-import, the old thread in a 3 s call",
            f"{stall * 1000:.1f} ms, which the server's event loop waits",
        )

        last_first, first_third = fairness(runners)
        row(
            "Fairness: 10 sessions queue 10 tasks each at once (shared pool)",
            f"every first result by position {last_first + 1} of 100, the first third result at "
            f"{first_third + 1}: {'fair' if last_first < first_third else 'NOT fair'}",
        )

        kept_count, outcomes = (100, 20) if args.quick else (1000, 20)
        per_runner, threads_left = kept_runners_memory(runners, kept_count, outcomes)
        row(
            f"{kept_count} queues kept with no session (`for_user`), {outcomes} outcomes each",
            f"{per_runner:.1f} KiB each ({per_runner * kept_count / 1024:.1f} MiB), "
            f"{threads_left} thread while they wait (the runners' event loop, where their expiries wait)",
        )

        admin_sessions = 30 if args.quick else 300
        refresh, rows_shown = admin_refresh(runners, admin_sessions, 5 if args.quick else 20)
        row(
            f"A refresh of the admin page's Tasks tab, {admin_sessions} sessions' runners (two each) and "
            "a global key they follow",
            f"{refresh * 1000:.0f} ms for {rows_shown} rows (median), on the server's event loop",
        )

        page_sessions = 3 if args.quick else 20
        row(
            f"Open and close a session of the example page (`both`, median of {page_sessions})",
            f"{example_page_session(project, page_sessions) * 1000:.0f} ms",
        )

        # Rounds of a server each: the rate with many sessions varies from one server to the next.
        fan_out, fan_out_rounds = (10, 1) if args.quick else (300, 3)
        # A window of two of the many sessions' rounds (each session is updated every 3 s).
        fan_out_window = window if args.quick else 6.0
        pairs = [calls_per_second(project, (1, fan_out), fan_out_window) for _ in range(fan_out_rounds)]
        ones, manys = [one for one, _ in pairs], [many for _, many in pairs]
        ratios = sorted(many / one for one, many in pairs)
        row(
            f"Global worker calls/s, interval 0.01 s, 1 session (median of {fan_out_rounds})",
            f"{statistics.median(ones):.0f}",
        )
        row(
            f"Global worker calls/s, interval 0.01 s, {fan_out} sessions (median of {fan_out_rounds})",
            f"{statistics.median(manys):.0f} ({statistics.median(ratios):.2f}x in the median round;"
            f" {ratios[0]:.2f}x to {ratios[-1]:.2f}x)",
        )

        idle_sessions, warm_up = (10, 10) if args.quick else (300, 30)
        baseline, idle_threads, busy_threads = served_threads(project, idle_sessions, warm_up)
        default_workers = runners.shared_pool().max_workers
        row(
            f"`panel serve` OS threads, {idle_sessions} sessions (max_workers={default_workers})",
            f"{baseline} at baseline, {idle_threads} all idle, {busy_threads} at most while each runs "
            "a 0.1 s task",
        )

        idle, sleeping = response_times(runners, sleep_one_second, samples=samples)
        row(
            f"GET /app, idle server (median of {2 * samples}, before and after the tasks)",
            f"{idle * 1000:.0f} ms",
        )
        row(f"GET /app, 10 sessions in 1 s sleeping tasks (median of {samples})", f"{sleeping * 1000:.0f} ms")
        for max_workers in (1, 2, default_workers):
            idle, computing = response_times(runners, compute_one_second, samples, max_workers=max_workers)
            row(
                f"GET /app, 10 sessions in 1 s CPU-bound tasks, max_workers={max_workers}",
                f"{computing * 1000:.0f} ms ({computing / idle:.1f}x its server idle: {idle * 1000:.0f} ms)",
            )

        sessions, tasks_each = (20, 3) if args.quick else (100, 10)
        waited = async_sessions(project, sessions, tasks_each, samples)
        row(
            f"{sessions} sessions x {tasks_each} tasks of an async worker that waits 1 s (`panel serve`)",
            f"{waited['seconds']:.1f} s for all ({tasks_each} s at the least, each session's in order); "
            f"{waited['most'] - waited['baseline']:+.0f} threads at most ({waited['baseline']:.0f} before)",
        )
        row(
            f"GET /app while those {sessions * tasks_each} async tasks wait (median of {samples})",
            f"{waited['busy'] * 1000:.0f} ms ({waited['busy'] / waited['idle']:.1f}x its server idle: "
            f"{waited['idle'] * 1000:.0f} ms)",
        )
        waiting = 200 if args.quick else 1000
        row(
            f"Memory of one waiting task of an async worker ({waiting} sessions' runners, one each)",
            f"{async_task_memory(runners, waiting):.1f} KiB",
        )

        held, shown = failed_task_memory(runners, 40)
        row(
            f"Memory one runner holds after 40 tasks that load {TABLE_MIB} MiB, every other one failing "
            "(history of 20)",
            f"{held:.0f} MiB: the {shown:.0f} MiB of the successes its history shows, "
            f"{held - shown:+.0f} MiB for the failures",
        )

        sys.path.insert(0, str(Path(workdir) / "dask"))
        on_dask = importlib.import_module(f"{DASK_PACKAGE}.runners")
        dask_executor = importlib.import_module(f"{DASK_PACKAGE}.runners.dask_executor")
        client = dask_executor.shared_client()  # the local cluster the app would start
        workers = len(client.scheduler_info()["workers"])
        client.gather(client.map(cpu_work, range(workers), pure=False))  # warm the workers up
        start = time.perf_counter()
        cpu_work(None)
        one_task = time.perf_counter() - start
        sessions, tasks_each = (4, 2) if args.quick else (4, 10)
        threads = cpu_throughput(runners, None, sessions, tasks_each)
        dask = cpu_throughput(on_dask, on_dask.DaskExecutor(), sessions, tasks_each)
        what = f"{sessions * tasks_each} CPU-bound tasks of {one_task:.2f} s, {sessions} sessions"
        row(f"{what}, in the runners' threads", f"{threads:.1f} tasks/s")
        row(
            f"{what}, on Dask ({workers} local worker processes)",
            f"{dask:.1f} tasks/s ({dask / threads:.1f}x the threads)",
        )
        _, computing_on_dask = response_times(on_dask, compute_one_second, samples, on_dask.DaskExecutor())
        row("GET /app, 10 sessions in 1 s CPU-bound tasks on Dask", f"{computing_on_dask * 1000:.0f} ms")
        dask_executor.close_shared_client()

        # Short lease times, so that a run takes seconds: Dask's defaults are 30 s and 10 s.
        feed_sessions, lease_timeout, validation = (5, 2.0, 0.5) if args.quick else (150, 5.0, 1.0)
        interval, feed_window = 0.1, window if args.quick else 5.0
        one, two, failover = shared_feed(
            Path(workdir) / "dask", feed_sessions, interval, feed_window, lease_timeout, validation
        )
        row(
            f"Global worker calls per interval ({interval:g} s) on one Dask scheduler, "
            f"1 server process against 2, {feed_sessions} sessions each",
            f"{one:.2f} against {two:.2f} (one producer for both)",
        )
        row(
            f"SIGKILL of the producer's process: to the next call of the other (lease timeout "
            f"{lease_timeout:g} s, validation interval {validation:g} s, interval {interval:g} s)",
            f"{failover:.1f} s (bound {lease_timeout + validation + interval:g} s)",
        )

    machine = f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"Machine: {machine}, Panel {pn.__version__}\n")  # noqa: T201
    print(table())  # noqa: T201
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(page(quick=args.quick))
        sys.stderr.write(f"Wrote {output}\n")


def table() -> str:
    """The rows measured, as a Markdown table."""
    lines = ["| Measure | Result |", "| --- | --- |"]
    lines += [f"| {measure} | {result} |" for measure, result in ROWS]
    return "\n".join(lines)


def versions() -> str:
    """The versions of what the measures ran on."""
    packages = {"Panel": pn, "Bokeh": bokeh, "param": param, "distributed": distributed, "Copier": copier}
    return ", ".join(f"{name} {module.__version__}" for name, module in packages.items())


#: How to read the table: what each group of rows measures, as the runners do it.
NOTES = """\
- **Bookkeeping**: a runner sets its parameters with param's public API, one update per finished
  task. The rows of 1 ms tasks show that cost beside a bare queue and thread, and in a served
  session whose page shows the runner, where Panel's update of the page is most of it. Tasks worth
  a background thread take 100 ms and more.
- **The shared pool**: session runners share `max_workers` threads. Idle sessions hold none, and
  sessions that queue tasks at once take turns: every first result comes before any third one.
- **Kept queues** (`for_user`) hold no thread while they wait; their memory is their `history`.
- **Global runners**: `remove()` returns between two calls, whatever the interval, and building a
  runner after a `--dev` re-import does not wait for the old thread's call. The calls keep their
  beat with hundreds of sessions following: the pages take the latest results at most 100 updates
  a second in all.
- **Response times**: the GETs come from a process of their own, as a browser's do, and each busy
  time is compared with its own server's idle time. Tasks that sleep leave the server responsive;
  CPU-bound tasks in threads hold the GIL and slow every page, more so as more threads compute at
  once (`SWITCH_INTERVAL` is 1 ms). On Dask the same tasks run in worker processes.
- **Async workers** wait on the runners' event loop: a waiting task holds no thread.
- **The operator's view**: the metrics count a task's end in the thread where it ended, a few
  µs, below the noise of whole runs of 1 ms tasks. A refresh of the admin page's Tasks tab reads
  every queue and global key and replaces its tables' data, in the models of a Bokeh document
  here; a served page then sends the tables to the open admin pages.
- **Several processes on one Dask scheduler** elect one producer per global key; after a SIGKILL
  of the producer's process, the other calls the worker within the lease timeout, the
  scheduler's lease check and one interval (short lease times here, set for the run).
"""


def page(*, quick: bool) -> str:
    """The Markdown page of this run: where it ran, the table, how to read it."""
    quick_run = (
        "This page comes from a quick run (`--quick`): short runs and few samples, a smoke test\n"
        "rather than figures to quote.\n\n"
    )
    return (
        "# Benchmark\n\n"
        "What the generated runners cost and how they scale, as `python bench/run.py` measures them\n"
        "on the template's `both` variant, with each executor.\n\n"
        f"{quick_run if quick else ''}"
        f"- Machine: {platform.platform()}, {os.cpu_count()} cores\n"
        f"- Python {platform.python_version()}; {versions()}\n"
        f"- Run on {datetime.date.today().isoformat()}\n\n"
        f"{table()}\n\n"
        "## Reading it\n\n"
        f"{NOTES}"
    )


if __name__ == "__main__":
    main()
