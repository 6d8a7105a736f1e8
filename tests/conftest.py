"""Fixtures for the template's own tests: render every variant of the working tree."""

from __future__ import annotations

import os
import resource
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from support import CHROMIUM, RUNS_THE_QUICK_LOOP, VARIANT_IDS, VARIANTS, copy_template, render

#: Tests of a minute or more on their own, run before the longest files: begun near the end, one
#: would keep a core busy after the others are done.
LONGEST_TESTS = ("test_the_benchmark_prints_its_table_and_writes_its_page",)
#: The test files whose tests take longest, longest first (measured with --durations): they start
#: first, so that the parallel workers finish together.
LONGEST_FIRST = (
    "test_load.py",
    "test_update.py",
    "test_render.py",
    "test_repo.py",
    "test_browser.py",
    "test_workflows.py",
    "test_dask_processes.py",
    "test_deploy.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Give Ctrl+C back to the servers the tests start, and bytecode caching to their Pythons.

    A shell starts a command put in the background (``pytest &``, ``nohup``) with SIGINT
    ignored, and every process started from it inherits that: the tests' servers would ignore
    the Ctrl+C the tests send them, and wait out the tests' deadlines.

    The environments that uv makes (the generated README's ``uv sync``, CI's other Python lines)
    hold no bytecode, as uv compiles none when it installs; pip's do. Where PYTHONDONTWRITEBYTECODE
    is set, every process there would compile Panel, Bokeh and Dask from source again: 3.7
    core-seconds an ``import panel`` on Python 3.12, against 1.4 once the first process wrote the
    bytecode. The processes the tests start write it, as they would on a user's machine.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """One worker per core and one more for `-n auto`: the tests often wait on servers and browsers.

    Two per core kept the cores busier, but a generated Dask test then stalled now and then.
    """
    return (os.cpu_count() or 1) + 1


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--variant",
        action="append",
        default=[],
        metavar="THREADING-EXECUTOR",
        help="run only this variant's tests, for example both-dask (repeat for more); "
        "tests of no one variant run as well",
    )


def variants_of(item: pytest.Item) -> set[str]:
    """The variants (``threading-executor``) a test renders; empty if it is not one variant's."""
    params = getattr(item, "callspec", None)
    params = params.params if params is not None else {}
    if "project" in params:
        return {"-".join(params["project"])}
    if "threading" in params and "executor" in params:
        return {f"{params['threading']}-{params['executor']}"}
    return {"-".join(params[name]) for name in ("before", "after") if name in params}  # a switch: both ends


#: A variant's test of its generated quick loop, and that of the rest of its generated suite.
QUICK_LOOP, SLOW_TESTS = "test_the_generated_quick_loop_passes", "test_the_generated_slow_tests_pass"


def deselect(config: pytest.Config, items: list[pytest.Item], left_out: list[pytest.Item]) -> None:
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]


#: Tests a worker of pytest-xdist must have, at least, for a run to take each generated suite in one
#: process: in a run of fewer, as CI's pass on Python 3.13 (7 tests on 3 workers), the two slow-tests
#: tests of `both` came to one worker, which xdist gives two tests in a row, and ran one after the
#: other: 2 min 50 s against 1 min 52 s with the quick-loop tests beside them.
TESTS_PER_WORKER_TO_RUN_EACH_SUITE_ONCE = 10


def one_run_of_each_generated_suite(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Where a variant's quick-loop test and slow-tests test both run, its slow-tests test runs it all.

    A generated pytest costs 3 to 4 core-seconds before its first test (Panel, Bokeh and Dask
    imported, the tests collected): the quick-loop test is deselected, and the other runs the
    whole suite in one process. Under ``-m "not slow"``, and in a run too short to keep its
    workers busy otherwise, the quick-loop test runs on its own.
    """
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    if len(items) < TESTS_PER_WORKER_TO_RUN_EACH_SUITE_ONCE * workers:
        return
    quick_loops = {item.callspec.id: item for item in items if item.originalname == QUICK_LOOP}
    slow_tests = {item.callspec.id: item for item in items if item.originalname == SLOW_TESTS}
    merged = quick_loops.keys() & slow_tests.keys()
    for variant in merged:
        slow_tests[variant].stash[RUNS_THE_QUICK_LOOP] = True
    deselect(config, items, [quick_loops[variant] for variant in merged])


@pytest.hookimpl(trylast=True)  # after -m and -k have chosen
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the variants that ``--variant`` names; run each generated suite once; longest files first.

    A stable sort keeps each file's variants together.
    """
    if chosen := set(config.getoption("variant")):
        if unknown := chosen - set(VARIANT_IDS):
            unknown_list = ", ".join(sorted(unknown))
            raise pytest.UsageError(
                f"--variant {unknown_list}: no such variant; there are {', '.join(VARIANT_IDS)}"
            )
        deselect(config, items, [item for item in items if (v := variants_of(item)) and not v & chosen])
    one_run_of_each_generated_suite(config, items)

    def rank(item: pytest.Item) -> int:
        if getattr(item, "originalname", item.name) in LONGEST_TESTS:
            return -1
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the working tree's template, outside git."""
    return copy_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session", params=VARIANTS, ids=VARIANT_IDS)
def project(request: pytest.FixtureRequest, template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project rendered for each variant (threading and executor), once per test session."""
    threading, executor = request.param
    destination = tmp_path_factory.mktemp(f"project-{threading}-{executor}")
    return render(template, destination, threading=threading, executor=executor)


#: Expectations wait up to 30 s: with the tests in parallel, a Dask cluster that starts with the
#: first task takes seconds. They pass as soon as they hold, so a longer wait costs nothing.
expect.set_options(timeout=30_000)

#: Headless flags that keep Chromium off the network it has no business with.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium driven by Playwright, skipped without it, except in CI.

    One per test module in a test process: the module's tests that run in a row in that
    process share it, each in browser contexts of its own (``new_page``), and it closes
    once the process moves to another module's tests. While it runs, Playwright's sync API
    keeps an event loop running in the main thread, where other modules' tests would find it
    (``asyncio.run`` refuses to start there): no browser outlives its module. The tests'
    sessions of Bokeh's protocol open on a loop in a thread of their own (support.open_sessions).
    """
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium-headless-shell, or set CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Open pages, each in a browser context of its own, closed after the test.

    Two pages of one context share a window, and the one behind is throttled
    like a background tab: its clicks would lag.
    """
    contexts: list[BrowserContext] = []

    def open_page() -> Page:
        context = browser.new_context()
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


FIGURES: list[str] = []


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Keep a measured figure for the summary at the end of the run.

    Figures travel with the test's report, so that pytest-xdist's workers hand
    them to the process that prints the summary.
    """
    return lambda line: request.node.user_properties.append(("figure", line))


#: Core-seconds each test took, its own process's and those of the processes it started and waited
#: for (servers, browsers, generated suites): by file, by variant, by test (its variants together).
CORE_SECONDS: dict[str, Counter[str]] = {"file": Counter(), "variant": Counter(), "test": Counter()}
#: When the run started, for the share of the cores the tests kept busy.
STARTED = time.monotonic()
#: The core-seconds count when a test's setup began.
CORE_SECONDS_KEY = pytest.StashKey[float]()


def core_seconds() -> float:
    """CPU seconds of this process and of its ended children, user and system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def machine_core_seconds() -> float | None:
    """CPU seconds every process of the machine spent since it booted (Linux's /proc/stat), or None.

    The tests' own count misses the processes that their parents never wait for, as Chromium's
    page processes end: about a fifth of a full run's core-seconds.
    """
    try:
        user, nice, system, _idle, _iowait, irq, softirq = map(
            int, Path("/proc/stat").read_text().split(maxsplit=8)[1:8]
        )
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


#: The machine's count when the run started.
MACHINE_STARTED = machine_core_seconds()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item.stash[CORE_SECONDS_KEY] = core_seconds()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    try:
        return (yield)
    finally:
        spent = core_seconds() - item.stash.get(CORE_SECONDS_KEY, core_seconds())
        variant = " ".join(sorted(variants_of(item))) or "(none)"
        item.user_properties.append(("core-seconds", (spent, variant)))


#: Each test's seconds, setup to teardown, and the tests in the order they ended, with the second
#: of the run when they did: the last ones show what kept the run going once the cores idled.
SECONDS: Counter[str] = Counter()
ENDED: list[tuple[float, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    SECONDS[report.nodeid] += report.duration
    if report.when == "call":
        FIGURES.extend(value for name, value in report.user_properties if name == "figure")
    if report.when == "teardown":
        ENDED.append((time.monotonic() - STARTED, report.nodeid))
        for name, value in report.user_properties:
            if name == "core-seconds":
                spent, variant = value
                CORE_SECONDS["file"][report.nodeid.split("::")[0].removeprefix("tests/")] += spent
                CORE_SECONDS["variant"][variant] += spent
                CORE_SECONDS["test"][report.nodeid.split("::")[-1].split("[")[0]] += spent


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("measured figures")
        for line in sorted(FIGURES):
            terminalreporter.write_line(line)
    if total := CORE_SECONDS["file"].total():
        wall = time.monotonic() - STARTED
        terminalreporter.section("where the time goes: core-seconds of each test and what it started")
        terminalreporter.write_line(
            f"{total:.0f} core-seconds counted by test in {wall:.0f} s, "
            f"{total / wall:.1f} of {os.cpu_count()} cores"
        )
        if MACHINE_STARTED is not None and (now := machine_core_seconds()) is not None:
            machine = now - MACHINE_STARTED
            terminalreporter.write_line(
                f"the machine's processes, Chromium's pages among them: {machine:.0f} core-seconds, "
                f"{machine / wall:.1f} of {os.cpu_count()} cores busy"
            )
        for kind, spent in CORE_SECONDS.items():
            most = spent.most_common(10 if kind == "test" else None)  # a test's variants together
            figures = ", ".join(f"{name} {value:.0f}" for name, value in most)
            terminalreporter.write_line(f"by {kind}: {figures}")
        last = [
            f"{name.split('::')[-1]} ({SECONDS[name]:.0f} s, ended at {ended:.0f} s)"
            for ended, name in ENDED[-4:]
        ]
        terminalreporter.write_line(f"the last to end: {', '.join(last)}")
