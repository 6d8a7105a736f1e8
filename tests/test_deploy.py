"""The generated deploy/ folder: HAProxy with sticky sessions in front of two `panel serve` processes,
and the compose file that starts them (with a Dask scheduler and two workers for executor=dask).

Docker cannot run here (no daemon): the compose file is checked against the compose specification's
schema, and its services' commands run as processes on loopback, in the suite's environment for the
generated project, as tests/test_container.py runs the Dockerfile's CMD. Each service's host name
becomes 127.0.0.1 with a free port; the proxy is Debian's `haproxy`, with the project's haproxy.cfg.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page, expect

from pages import open_app, progress_percent, queue_four_experiments, queued, reload
from support import (
    dockerfile_instructions,
    executor_of,
    free_port,
    image_environment,
    liveness,
    poll,
    prometheus,
    slow_experiments,
    stop_process,
    tracebacks,
)

BIN = Path(sys.executable).parent
#: Debian's HAProxy (apt-get install haproxy), as .ci/run installs it.
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
#: The cookie by which the proxy sends a browser back to its process (haproxy.cfg).
AFFINITY_COOKIE = "SERVERID"
#: Compose's interpolation: `$$` is a `$`; `${NAME:-default}` the variable, or the default if unset or empty.
COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?::-([^}]*))?\}")


def compose_file(project: Path) -> dict:
    return yaml.safe_load((project / "deploy" / "compose.yaml").read_text())


def proxy_config(project: Path, bind: str, addresses: dict[str, str]) -> str:
    """The project's haproxy.cfg, listening on ``bind``, with the apps' addresses replaced."""
    config = (project / "deploy" / "haproxy.cfg").read_text().replace("bind :8080", f"bind {bind}")
    for name, address in addresses.items():
        config = config.replace(name, address)
    return config


def require_haproxy() -> None:
    """Skip the test without HAProxy, but in CI, where .ci/run installs it."""
    if not Path(HAPROXY).exists():
        reason = "no haproxy on this machine (apt-get install haproxy)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def interpolated(text: str, environment: dict[str, str]) -> str:
    """``text`` as Compose reads it, with the variables of ``environment``."""

    def value(match: re.Match[str]) -> str:
        if match.group() == "$$":
            return "$"
        return environment.get(match[1]) or match[2] or ""

    return COMPOSE_VARIABLE.sub(value, text)


def test_the_compose_file_matches_the_compose_specification(project):
    command = [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "deploy/compose.yaml"]
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_file_runs_the_image_s_command_behind_the_proxy(project):
    services = compose_file(project)["services"]
    dask = executor_of(project) == "dask"
    expected = {"app1", "app2", "proxy", "prometheus"} | ({"scheduler", "worker"} if dask else set())
    assert set(services) == expected
    (image_command,) = [
        json.loads(arguments) for keyword, arguments in dockerfile_instructions(project) if keyword == "CMD"
    ]
    for name in ("app1", "app2"):
        app = services[name]
        command = [interpolated(part, {}) for part in app["command"]]
        assert command[:2] == image_command[:2]
        assert command[2] == image_command[2].replace(" --liveness", " --use-xheaders --liveness")
        assert ("DASK_SCHEDULER_ADDRESS" in app["environment"]) == dask
    proxy = services["proxy"]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in proxy["volumes"]
    assert set(proxy["depends_on"]) == {"app1", "app2"}
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    scraped = yaml.safe_load((project / "deploy" / "prometheus.yml").read_text())["scrape_configs"]
    targets = {target for job in scraped for config in job["static_configs"] for target in config["targets"]}
    assert targets == {"app1:5006", "app2:5006"} | ({"scheduler:8787"} if dask else set())


def test_haproxy_accepts_the_proxy_config(project, tmp_path):
    require_haproxy()
    config = tmp_path / "haproxy.cfg"
    # The apps' host names resolve on Compose's network only; `haproxy -c` listens on nothing.
    config.write_text(proxy_config(project, ":8080", {"app1:": "127.0.0.1:", "app2:": "127.0.0.1:"}))
    result = subprocess.run([HAPROXY, "-c", "-f", config], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@dataclass
class Deployment:
    """The compose file's services, each a process on loopback; the proxy's address."""

    url: str
    logs: Path
    query: Callable[[str], list[dict]]  # Prometheus'

    def log(self, service: str) -> str:
        return (self.logs / f"{service}.log").read_text()


@contextmanager
def deployed(project: Path, logs: Path) -> Iterator[Deployment]:
    """Start every service of the project's compose file as processes, as Compose would in containers.

    The image installs the project; here its folder is on PYTHONPATH, and its environment's
    commands (panel, dask) on PATH.
    """
    services = compose_file(project)["services"]
    ports = {name: free_port() for name in ("scheduler", "dashboard", "app1", "app2", "proxy")}
    proxy = f"127.0.0.1:{ports['proxy']}"
    # The services' addresses on Compose's network, then the scheduler's port and its dashboard's
    # address in its command, as they are on loopback.
    addresses = {f"{name}:{port}": f"127.0.0.1:{ports[name]}"
                 for name, port in (("scheduler", 8786), ("app1", 5006), ("app2", 5006))}  # fmt: skip
    addresses["scheduler:8787"] = f"127.0.0.1:{ports['dashboard']}"  # its /metrics, for Prometheus
    arguments = {"8786": str(ports["scheduler"]), ":8787": addresses["scheduler:8787"]}
    host = {"ALLOWED_ORIGIN": proxy}  # as a user sets it for `docker compose up`
    image = image_environment(project) | {"PYTHONPATH": str(project)}

    def on_loopback(text: str) -> str:
        text = arguments.get(text, text)
        for name, address in addresses.items():
            text = text.replace(name, address)
        return text

    with ExitStack() as stack:

        def start(log: str, command: list[str], environment: dict[str, str]) -> None:
            with (logs / f"{log}.log").open("w") as out:
                process = subprocess.Popen(
                    command, cwd=project, env=environment, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            stack.callback(stop_process, process)

        for name, service in services.items():
            if name in ("proxy", "prometheus"):
                continue
            command = [on_loopback(interpolated(part, host)) for part in service["command"]]
            environment = {key: on_loopback(interpolated(str(value), host))
                           for key, value in service.get("environment", {}).items()}  # fmt: skip
            if name in ("app1", "app2"):
                environment["PORT"] = str(ports[name])
            for replica in range(1, service.get("deploy", {}).get("replicas", 1) + 1):
                start(f"{name}-{replica}", command, image | environment)

        for name in ("app1", "app2"):
            log = logs / f"{name}-1.log"
            poll(
                lambda name=name: liveness(ports[name]) == {"/liveness": True},
                timeout=60,
                message=f"{name} answers /liveness (log: {log})",
            )
        # The proxy once the apps answer: its first health checks would find them down otherwise,
        # and it would refuse pages for seconds. The haproxy image runs `haproxy -f <its config>`
        # in the foreground, as here.
        (logs / "haproxy.cfg").write_text(proxy_config(project, proxy, addresses))
        start("proxy", [HAPROXY, "-db", "-f", str(logs / "haproxy.cfg")], dict(os.environ))

        log = logs / "proxy.log"
        poll(
            lambda: liveness(ports["proxy"]) == {"/liveness": True},
            timeout=30,
            message=f"the proxy answers (log: {log})",
        )
        # Prometheus as its image runs it, with the project's prometheus.yml, every second.
        config = (project / "deploy" / "prometheus.yml").read_text()
        config = config.replace("scrape_interval: 15s", "scrape_interval: 1s")
        query = stack.enter_context(prometheus(on_loopback(config), logs / "prometheus"))
        yield Deployment(f"http://{proxy}/app", logs, query)


def server_of(page: Page) -> str:
    """The app process that the proxy sends this page's browser to (its affinity cookie)."""
    return next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == AFFINITY_COOKIE)


def shows_nothing_kept(page: Page) -> None:
    expect(page.get_by_text("No results yet.")).to_be_visible()
    expect(page.get_by_text("Idle")).to_be_visible()


@pytest.mark.slow
@pytest.mark.parametrize("project", [("both", "dask")], indirect=True, ids=["both-dask"])
def test_behind_the_sticky_proxy_a_reload_finds_its_work_and_no_other_browser_does(
    project, tmp_path, new_page, report
):
    """Every service of the both-dask compose file (the thread one's are these, less Dask's)."""
    require_haproxy()
    # Experiments of 8 s: the reload lands while one runs, and the queue still holds another
    # when the page is back, however slowly a busy machine reloads it.
    with slow_experiments(project, 8):
        started = time.monotonic()
        with deployed(project, tmp_path) as deployment:
            seconds = time.monotonic() - started
            report(f"deploy, both-dask: every service up, behind the proxy, after {seconds:.1f} s")
            check_sticky_sessions(deployment, new_page)
            check_metrics(deployment)


def check_metrics(deployment: Deployment) -> None:
    """Prometheus reads both app processes and the scheduler; the proxy keeps /metrics to the inside."""
    poll(lambda: len(deployment.query("up == 1")) == 3, timeout=30,
         message="Prometheus reads the two apps and the scheduler (up == 1)")  # fmt: skip
    done = 'sum(panel_runners_tasks_finished_total{outcome="done"})'
    poll(lambda: [float(found["value"][1]) for found in deployment.query(done)] >= [1.0], timeout=30,
         message="Prometheus has the experiments' outcomes")  # fmt: skip
    assert deployment.query("dask_scheduler_workers"), "the scheduler's own metrics"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(deployment.url.replace("/app", "/metrics"), timeout=10)
    assert refused.value.code == 404


def check_sticky_sessions(deployment: Deployment, new_page) -> None:
    page = new_page()
    open_app(page, deployment.url)
    home = server_of(page)
    queue_four_experiments(page)

    # The reload goes back to the same process, and finds the running task, the queue, the result.
    reload(page)
    assert server_of(page) == home
    expect(queued(page, "[12]")).to_be_visible()
    expect(page.get_by_role("listitem").first).to_have_text(re.compile(r"^50 samples"))
    expect(page.get_by_text(re.compile(r"^Processing \d+%"))).to_be_visible()
    before = progress_percent(page)
    poll(lambda: progress_percent(page) != before, timeout=30,
         message=f"the progress moves on from {before}% after the reload")  # fmt: skip

    # The same browser without the proxy's cookie goes to the other process: its token finds nothing
    # there. This is a reload behind a proxy without affinity.
    token = [cookie for cookie in page.context.cookies() if cookie["name"] == "panel_runners_browser"]
    assert len(token) == 1, page.context.cookies()
    elsewhere = new_page()
    elsewhere.context.add_cookies(token)
    open_app(elsewhere, deployment.url)
    assert server_of(elsewhere) != home, "the proxy sends a browser without its cookie to the next process"
    shows_nothing_kept(elsewhere)

    # Another browser, sent to the process that holds the work, finds none of it.
    stranger = new_page()
    open_app(stranger, deployment.url)
    assert server_of(stranger) == home
    shows_nothing_kept(stranger)

    for app in ("app1-1", "app2-1"):
        assert "WebSocket connection opened" in deployment.log(app), f"{app} served a page"
        assert tracebacks(deployment.log(app)) == [], deployment.log(app)[-8000:]
