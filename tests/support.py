"""Helpers for the template's own tests: copy and render the template, poll, find a free port."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import copier
import pytest
import yaml
from bokeh.client.util import websocket_url_for_server_url
from bokeh.protocol import Protocol
from bokeh.util.strings import format_url_query_arguments
from bokeh.util.token import generate_jwt_token, generate_session_id
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

ROOT = Path(__file__).resolve().parents[1]
THREADINGS = ("session", "global", "both")
EXECUTORS = ("thread", "dask")
#: Every combination of answers that changes the files: (threading, executor).
VARIANTS = tuple((threading, executor) for executor in EXECUTORS for threading in THREADINGS)
#: Their names, as in test ids and `--variant`: threading-executor.
VARIANT_IDS = tuple("-".join(variant) for variant in VARIANTS)
#: What a copy of the template needs: copier reads the rest from these.
TEMPLATE_PARTS = ("copier.yml", "includes", "template", "hooks")
#: The default answer to package_name.
PACKAGE = "panel_threading_app"

#: A ``panel serve --setup`` script's lines that log every session runner's stop, which the runners
#: log at debug level when it loses nothing: the tests count the stops to see sessions end.
LOG_RUNNERS_STOPS = f"import logging\n\nlogging.getLogger('{PACKAGE}.runners.pool').setLevel(logging.DEBUG)\n"
#: The user's files: written by `copier copy`, never by an update (copier.yml's `_exclude`).
USER_FILES = frozenset(
    {
        ".dockerignore",
        ".github/workflows/ci.yml",
        ".github/workflows/template-update.yml",
        "Dockerfile",
        "README.md",
        "deploy/compose.yaml",
        "deploy/haproxy.cfg",
        "deploy/prometheus.yml",
        "app.py",
        f"{PACKAGE}/__init__.py",
        f"{PACKAGE}/app.py",
        f"{PACKAGE}/workers.py",
        "tests/conftest.py",
        "tests/test_app.py",
    }
)
#: The interpreter that runs generated projects (another Python line, say); this one by default.
GENERATED_PYTHON = os.environ.get("GENERATED_PYTHON", sys.executable)
#: The Chromium the browser tests drive: $CHROMIUM, else Debian's headless shell, the same engine
#: without the browser around it (a page load costs half the CPU time: 1.7 core-seconds against
#: 3.3), else Debian's Chromium. Playwright's own browser download is not used.
CHROMIUM = os.environ.get("CHROMIUM") or next(
    (path for path in ("/usr/bin/chromium-headless-shell", "/usr/bin/chromium") if Path(path).exists()),
    "/usr/bin/chromium",
)


#: Set on a variant's test of its generated slow tests when the run holds its quick-loop test too
#: (conftest.py): it then runs the whole generated suite in one process, and the quick-loop test
#: is deselected, so that no generated test runs twice or pays for an interpreter of its own.
RUNS_THE_QUICK_LOOP = pytest.StashKey[bool]()


def copy_template(dst: Path) -> Path:
    """Copy the template as it is in the working tree, committed or not, to ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for part in TEMPLATE_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, dst / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, dst / part)
    return dst


def render(template: Path, dst: Path, **data: object) -> Path:
    """Render the template into ``dst`` with ``data``, taking defaults for the rest."""
    copier.run_copy(str(template), str(dst), data=data, defaults=True, quiet=True, unsafe=True)
    return dst


def poll(condition: Callable[[], object], timeout: float, message: str) -> None:
    """Return once ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"Not true within {timeout} s: {message}")
        time.sleep(0.05)


#: The event loop of the sessions that open_sessions opens, in a thread of its own: Playwright's
#: sync API keeps another one running in the main thread while a browser is open.
_CLIENT_LOOP = asyncio.new_event_loop()
threading.Thread(target=_CLIENT_LOOP.run_forever, name="session-clients", daemon=True).start()


@dataclass
class OpenSession:
    """A session of the app opened as a browser opens one: the server made it and sent its document.

    The document's JSON is received and left unread, as are the updates that
    follow: a page that shows nothing, which costs the test little (a Bokeh
    client builds every model of the document, a third of the server's work).
    """

    socket: WebSocketClientConnection


async def _open_session(url: str, arguments: dict[str, str] | None) -> OpenSession:
    """Connect a session's websocket, as bokeh.client does, and pull the document."""
    loop = asyncio.get_running_loop()
    acknowledged, pulled = loop.create_future(), loop.create_future()
    frames_left, message_type = 0, ""

    def received(frame: str | bytes | None) -> None:
        """Count each message's frames: a header, metadata, content, two per buffer."""
        nonlocal frames_left, message_type
        if frame is None:  # closed
            for waiting in (acknowledged, pulled):
                if not waiting.done():
                    waiting.set_exception(ConnectionError(f"the server closed the session at {url}"))
            return
        if frames_left == 0:  # a message's header
            header = json.loads(frame)
            message_type, frames_left = header["msgtype"], 2 + 2 * header.get("num_buffers", 0)
            return
        frames_left -= 1
        if frames_left == 0:
            done = {"ACK": acknowledged, "PULL-DOC-REPLY": pulled}.get(message_type)
            if done is not None and not done.done():
                done.set_result(None)

    token = generate_jwt_token(generate_session_id())
    request = HTTPRequest(format_url_query_arguments(websocket_url_for_server_url(url), arguments))
    socket = await websocket_connect(
        request, subprotocols=["bokeh", token], on_message_callback=received, max_message_size=2**26
    )
    await acknowledged
    pull = Protocol().create("PULL-DOC-REQ")
    for frame in (pull.header_json, pull.metadata_json, pull.content_json):
        await socket.write_message(frame)
    await pulled
    return OpenSession(socket)


def open_sessions(url: str, count: int, arguments: dict[str, str] | None = None) -> list[OpenSession]:
    """Open ``count`` sessions of the app at ``url``, as browsers do, one after the other.

    ``arguments`` are the page's query arguments (``pn.state.session_args`` in the app).
    """

    async def opened() -> list[OpenSession]:
        return [await _open_session(url, arguments) for _ in range(count)]

    return asyncio.run_coroutine_threadsafe(opened(), _CLIENT_LOOP).result(timeout=300)


def close_sessions(sessions: list[OpenSession]) -> None:
    """Close sessions that ``open_sessions`` opened, as closing their pages does."""

    async def closed() -> None:
        for session in sessions:
            session.socket.close()

    asyncio.run_coroutine_threadsafe(closed(), _CLIENT_LOOP).result(timeout=300)


def dockerfile_instructions(project: Path) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (keyword, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", "", (project / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerfile_env(project: Path) -> dict[str, str]:
    """The variables the Dockerfile's ENV lines set (NAME=value pairs)."""
    found: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions(project):
        if keyword == "ENV":
            for pair in re.findall(r'(\w+)=("[^"]*"|\S+)', arguments):
                found[pair[0]] = pair[1].strip('"')
    return found


def image_environment(project: Path) -> dict[str, str]:
    """The environment of the project's image, here: the Dockerfile's ENV, this environment's commands.

    The image installs the project and puts its environment's commands (panel, dask) on PATH; here
    the generated project's interpreter's folder leads PATH, and no other virtual environment is active.
    """
    environment = os.environ | dockerfile_env(project)
    environment["PATH"] = os.pathsep.join([str(Path(GENERATED_PYTHON).parent), os.environ["PATH"]])
    environment.pop("VIRTUAL_ENV", None)
    return environment


def liveness(port: int) -> object:
    """What the server on ``port`` answers at /liveness (``panel serve --liveness``); None if nothing."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/liveness", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listens(port: int) -> bool:
    """True once something accepts connections on the port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def require(program: str, package: str) -> str:
    """The path of ``program``; skip the test without it, but in CI, where .ci/run installs ``package``."""
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if found is None:
        reason = f"no {program} on this machine (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@contextmanager
def prometheus(config: str, folder: Path) -> Iterator[Callable[[str], list[dict]]]:
    """Debian's Prometheus server on loopback with ``config`` (YAML); yields its instant query.

    ``query("up")`` returns the query's result: a list of ``{"metric": labels, "value": [time, text]}``.
    """
    server = require("prometheus", "prometheus")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prometheus.yml").write_text(config)
    port = free_port()
    command = [
        server, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]  # fmt: skip
    log = folder / "prometheus.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def query(expression: str) -> list[dict]:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)["data"]["result"]

    def ready() -> bool:  # it listens before its storage is open, answering 503 until then
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        poll(ready, timeout=30, message=f"Prometheus is ready; log:\n{log.read_text()}")
        yield query
    finally:
        stop_process(process)


@dataclass
class Server:
    """A `panel serve app.py` subprocess of a generated project."""

    process: subprocess.Popen[str]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/app"

    def output(self) -> str:
        return self.log.read_text()

    def status(self, field: str) -> int:
        """A number from /proc/<pid>/status of the server, e.g. "Threads" or "VmRSS" (KiB)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0])
        raise KeyError(field)

    def interrupt(self, timeout: float = 10.0) -> tuple[int, float]:
        """Press Ctrl+C: SIGINT to the server's process group, as a terminal sends it.

        Return the exit code and the seconds it took to exit.
        """
        start = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - start


@contextmanager
def panel_serve(
    project: Path,
    log: Path,
    *options: str,
    app: str = "app.py",
    short_sessions: bool = True,
    environment: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Serve the project's app.py (or ``app``, a script named app.py elsewhere) on a free port.

    With ``short_sessions``, closed sessions go within a fraction of a second; without, sessions
    last Bokeh's default, as a user serves the app (Panel 1.9 then takes its CSS from the server,
    not its CDN). ``environment`` adds to the server's environment variables.
    """
    port = free_port()
    lifetimes = (
        ["--check-unused-sessions", "100", "--unused-session-lifetime", "100"] if short_sessions else []
    )
    if "--setup" not in options:  # the tests read every runner's stop, at debug level
        setup = log.with_name("log_runners_stops.py")
        setup.write_text(LOG_RUNNERS_STOPS)
        options = ("--setup", str(setup), *options)
    command = [
        GENERATED_PYTHON, "-m", "panel", "serve", app, "--address", "127.0.0.1", "--port", str(port),
        "--allow-websocket-origin", f"127.0.0.1:{port}", *(lifetimes if short_sessions else []), *options,
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(  # a process group of its own, as in a terminal
            command, cwd=project, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, **(environment or {})},
        )  # fmt: skip
    server = Server(process, port, log)
    try:
        poll(lambda: listens(port), timeout=60, message=f"the server listens; log:\n{log.read_text()}")
        yield server
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen) -> None:
    """End a process that may still run: Ctrl+C first, so that it closes what it started, then kill."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout=10)


def descendants(pid: int) -> set[int]:
    """The process ids of a process's children, their children, and so on."""
    parents: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:  # the process ended while we looked
            continue
        parents[int(status.parent.name)] = int(fields["PPid"])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def run_generated_tests(project: Path, *options: str) -> str:
    """Run a generated project's own test suite with GENERATED_PYTHON; fail unless it passes.

    ``options`` go to pytest: ``"-m", "not slow"`` runs the project's quick loop.
    """
    environment = dict(os.environ)
    if Path(CHROMIUM).exists():  # the project's browser tests drive the suite's (CHROMIUM_PATH)
        environment.setdefault("CHROMIUM_PATH", CHROMIUM)
    result = subprocess.run(
        [GENERATED_PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    failed = [line[:300] for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert result.returncode == 0, "\n".join(failed) + "\n" + result.stdout[-5000:] + result.stderr[-5000:]
    return result.stdout


def write_to_a_page_that_left(traceback: str) -> bool:
    """True for Tornado's failed write to a page that has gone (a reload, a closed tab).

    Panel writes some messages to the websocket itself; when the page left
    meanwhile, asyncio logs the failed write as "Task exception was never
    retrieved", with a traceback that is all Tornado's. Nothing is lost: the
    page is gone.
    """
    frames = re.findall(r'File "([^"]+)", line \d+, in (\w+)', traceback)
    closed = "StreamClosedError" in traceback or "WebSocketClosedError" in traceback
    return closed and bool(frames) and all(path.endswith("tornado/websocket.py") for path, _ in frames)


def readme_command(readme: str, section: str) -> str:
    """The first line of the first bash block under the README's ``## section`` heading."""
    return readme.split(f"## {section}\n", 1)[1].split("```bash\n", 1)[1].split("\n", 1)[0]


def install_blocks(readme: str) -> tuple[list[str], list[str]]:
    """The commands of the README's "Install, serve, test" section: the uv block and the pip block."""
    section = readme.split("## Install, serve, test", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```bash\n")[1:]]
    assert len(blocks) == 2, "a uv block, then a pip block"
    uv, pip = ([line.split("  #")[0].strip() for line in block.splitlines()] for block in blocks)
    return uv, pip


def tracebacks(output: str) -> list[str]:
    """The tracebacks in a server's output, each up to the next timestamped log line, but for
    failed writes to pages that have gone."""
    found = []
    for chunk in output.split("Traceback (most recent call last):")[1:]:
        lines = chunk.splitlines()
        end = next((n for n, line in enumerate(lines[1:], 1) if line[:2] == "20"), len(lines))
        traceback = "\n".join(lines[:end])
        if not write_to_a_page_that_left(traceback):
            found.append(traceback)
    return found


def stopped_by_ctrl_c(output: str) -> bool:
    """True when the server logged that Ctrl+C stopped its event loop between two callbacks."""
    return "Ctrl+C: stopping the server" in output


def threading_of(project: Path) -> str:
    """The project's answer to the threading question."""
    return yaml.safe_load((project / ".copier-answers.yml").read_text())["threading"]


def only_with_both(project: Path) -> None:
    """Skip the test unless ``project`` is a `both` one, whose code runs every other variant's.

    The code of a `session` or `global` project is the `both` project's with lines left out (a
    test in test_render.py checks it, line by line): a test of the runners' behaviour run with
    `both`, for each executor, runs every line that the other variants would run.
    """
    if threading_of(project) != "both":
        pytest.skip("run with `both`, whose code holds every line of the session and global projects'")


def executor_of(project: Path) -> str:
    """The project's answer to the executor question."""
    return yaml.safe_load((project / ".copier-answers.yml").read_text())["executor"]


#: `dask` of this interpreter's environment: the scheduler and workers run the same Python.
DASK = str(Path(sys.executable).parent / "dask")


class Cluster:
    """A `dask scheduler` and its `dask worker`s on loopback, each a process, stopped with ``stack``.

    They import the project from PYTHONPATH, as a deployment's do (the scheduler unpickles the
    calls too); ``scheduler_config`` becomes its DASK_DISTRIBUTED__SCHEDULER__* variables.
    """

    def __init__(self, project: Path, logs: Path, stack: ExitStack, **scheduler_config: str) -> None:
        self.project, self.logs, self._stack = project, logs, stack
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        # Dask reads its configuration from DASK_* variables: DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0
        config = {f"DASK_DISTRIBUTED__SCHEDULER__{key.upper()}": val for key, val in scheduler_config.items()}
        scheduler = ["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"]
        self._start("scheduler", scheduler, config)
        poll(lambda: listens(self.port), timeout=60,
             message=f"the scheduler listens; log:\n{self.log('scheduler')}")  # fmt: skip

    def add_worker(self, name: str) -> subprocess.Popen[bytes]:
        """Start a worker without a nanny, so that its process runs the calls."""
        command = ["worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name]
        self.workers[name] = self._start(name, command, {})
        return self.workers[name]

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def _start(self, name: str, arguments: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        environment = {**os.environ, "PYTHONPATH": str(self.project), **env}
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [DASK, *arguments], cwd=self.project, env=environment, stdout=log, stderr=subprocess.STDOUT
            )
        self._stack.callback(stop_process, process)
        return process


@contextmanager
def restored(path: Path) -> Iterator[None]:
    """Put the file back as it was: other tests share the rendered project."""
    original = path.read_text()
    try:
        yield
    finally:
        path.write_text(original)


@contextmanager
def session_project_edited(project: Path, pattern: str, old: str, new: str) -> Iterator[None]:
    """Replace ``old`` by ``new`` in the project's file ``pattern`` while the block runs.

    For tests of the session runners, run with `both` (``only_with_both``).
    """
    only_with_both(project)
    path = next(project.glob(pattern))
    with restored(path):
        path.write_text(path.read_text().replace(old, new))
        yield


def slow_experiments(project: Path, seconds: float) -> AbstractContextManager[None]:
    """Make the example's experiments last ``seconds`` while the block runs."""
    return session_project_edited(
        project, "*/workers.py", "EXPERIMENT_SECONDS = 0.5", f"EXPERIMENT_SECONDS = {seconds}"
    )


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` as a test's committer; return its output, failing the test if git fails."""
    command = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", message)


def release(repo: Path, tag: str) -> None:
    """Commit what the template repository holds now and tag it."""
    commit_all(repo, tag)
    git(repo, "tag", tag)
