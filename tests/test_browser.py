"""The generated app in Chromium, served by `panel serve`: what a user sees.

Every variant's page and its Ctrl+C while a task runs; the runners' other behaviour on the `both`
page only (``support.only_with_both``). Each variant's runners in sessions are tested by its own
generated suite as well.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from pages import add_task, open_app, progress_percent, queue_four_experiments, queued, reload, results
from support import (
    LOG_RUNNERS_STOPS,
    PACKAGE,
    alive,
    descendants,
    executor_of,
    only_with_both,
    panel_serve,
    poll,
    restored,
    run_generated_tests,
    session_project_edited,
    slow_experiments,
    stopped_by_ctrl_c,
    threading_of,
    tracebacks,
)

pytestmark = pytest.mark.slow

#: The default answer to max_tasks.
MAX_TASKS = 20
RESULT = re.compile(r"^(\d+) samples: mean [+-]\d\.\d{3}$")


def price(page: Page, ticker: str = "ACME") -> str:
    return page.get_by_role("row", name=re.compile(f"^{ticker} ")).inner_text()


def check_session_queue(page: Page) -> None:
    """Tasks queue up, the page keeps reacting, results arrive in order, a failure is shown and passed."""
    add_task(page, 100)
    # Three clicks in one action: the queue grows faster than the tasks run, however slowly a
    # busy machine lets Chromium click (three clicks 0.5 s apart, a task's time, queued nothing).
    page.get_by_role("button", name="Run experiment").click(click_count=3)
    expect(queued(page, "[123]")).to_be_visible()
    # The queue's length shows once, in the runner's status line: the page repeats none of it.
    assert page.get_by_text(re.compile("queued", re.IGNORECASE)).count() == 1

    page.get_by_role("slider").press("ArrowRight")  # another widget, while tasks run
    expect(page.get_by_text("Slider at 51")).to_be_visible()
    assert len(results(page)) < 4, "the slider answered only after the tasks"

    # Panel holds a typed value for 50 ms before it applies it, and a value typed meanwhile
    # replaces the held one. A click applies the held value first, but if the next value arrives
    # before the click is handled, the click reads that one: [200, 300] ran as [300, 300] on
    # Panel 1.10. Type each value once the task before it has shown its result.
    expect(page.get_by_role("listitem")).to_have_count(4)
    for shown, samples in enumerate((200, 300), start=5):
        add_task(page, samples)
        expect(page.get_by_role("listitem")).to_have_count(shown)
    assert [RESULT.match(text).group(1) for text in results(page)] == ["100"] * 4 + ["200", "300"]
    expect(page.get_by_text("Idle")).to_be_visible()

    add_task(page, -1)
    failure = "failed: samples must be a positive number, not -1"
    expect(page.get_by_role("listitem").nth(6)).to_have_text(failure)
    expect(page.get_by_text("Last task failed: ValueError")).to_be_visible()
    add_task(page, 50)
    expect(page.get_by_role("listitem").nth(7)).to_have_text(RESULT)
    expect(page.get_by_text("Last task failed: ValueError")).to_be_hidden()


def check_shared_prices(first: Page, second: Page) -> None:
    """Two pages show the same price, and it moves on the interval."""
    expect(first.get_by_role("row", name=re.compile("^ACME "))).to_be_visible()
    expect(second.get_by_role("row", name=re.compile("^ACME "))).to_be_visible()
    before = price(first)
    poll(lambda: price(first) != before and price(first) == price(second), timeout=20,
         message="both pages show the same new price")  # fmt: skip


#: The line a ``--setup`` script of ``watched_changes_logged`` makes Panel's --dev watcher log
#: for each change it acts on (panel/io/reload.py, at debug level).
CHANGE_SEEN = "Changes detected by autoreload watcher"
#: Seconds within which the watcher logs a save it sees: on an idle machine it acts within a fraction of one.
SEEN_WITHIN = 5


def watched_changes_logged(directory: Path) -> Path:
    """Write a `panel serve --setup` script that logs each change Panel's --dev watcher acts on.

    It adds a handler to Panel's reload logger only, to stderr, which is not buffered.
    The app and its other logs are left as users see them.
    """
    script = directory / "log_watched_changes.py"
    script.write_text(
        "import logging\n"
        "\n"
        "handler = logging.StreamHandler()\n"
        "handler.setLevel(logging.DEBUG)\n"
        'logging.getLogger("panel.io.reload").addHandler(handler)\n' + LOG_RUNNERS_STOPS
    )
    return script


def save_until_seen(
    path: Path, text: str, script: Path, log: Callable[[], str], timeout: float = 90
) -> tuple[float, int]:
    """Save ``path`` until Panel's --dev watcher acts on the save; return when, and how many saves it took.

    The watcher rests a second after each reload, then watches the files of the modules
    imported at that moment (panel/io/reload.py). A save in the rest goes unseen, and so does
    every save of a module that the reloaded page had not imported again within the second:
    a page slow to come back (a starved machine) leaves the app's modules unwatched until
    the served ``script`` changes. Saving the script reloads the page with the modules it
    holds (the old code) and gets them watched again after the rest: after two unseen
    saves, the third is one of the script.

    Each save waits for the watcher's line in ``log``, the server's output (see
    ``watched_changes_logged``): no save is made while the watcher may still act on
    another, and the page reloads once for the change.
    """
    deadline = time.monotonic() + timeout
    saves = 0
    while True:
        saves += 1
        of_script = saves % 3 == 0
        seen = log().count(CHANGE_SEEN)
        saved = time.monotonic()
        if of_script:
            script.write_text(script.read_text())
        else:
            path.write_text(text)
        while not (acted := log().count(CHANGE_SEEN) > seen) and time.monotonic() < saved + SEEN_WITHIN:
            time.sleep(0.05)
        if acted and not of_script:
            return saved, saves
        if time.monotonic() > deadline:
            pytest.fail(f"Panel's watcher saw no save of {path.name} within {timeout} s:\n{log()[-5000:]}")


def test_the_page_works_as_the_variant_promises(project, tmp_path, new_page):
    threading = threading_of(project)
    with panel_serve(project, tmp_path / "serve.log") as server:
        page = new_page()
        frames: list[str] = []
        page.on("websocket", lambda socket: socket.on("framereceived", lambda data: frames.append(str(data))))
        open_app(page, server.url)
        if threading in ("session", "both"):
            check_session_queue(page)
        if threading in ("global", "both"):
            other = new_page()  # a second page, to see the same prices
            open_app(other, server.url)
            check_shared_prices(page, other)
            assert any("ColumnsStreamed" in frame for frame in frames), "new prices are streamed to the chart"
        # The one traceback is the failing task's, logged on purpose.
        assert len(tracebacks(server.output())) == server.output().count("task -1 failed")


def test_sessions_never_see_each_others_results(project, tmp_path, new_page):
    only_with_both(project)
    with panel_serve(project, tmp_path / "serve.log") as server:
        first, second = new_page(), new_page()
        open_app(first, server.url)
        open_app(second, server.url)
        for round_, (samples_first, samples_second) in enumerate(((111, 222), (333, 444)), 1):
            add_task(first, samples_first)
            add_task(second, samples_second)
            # A value typed while a busy server (a Dask cluster starting) still handles the last click
            # can overtake it: type the next ones once this round's results are in.
            expect(first.get_by_role("listitem")).to_have_count(round_)
            expect(second.get_by_role("listitem")).to_have_count(round_)
        expect(first.get_by_role("listitem")).to_have_count(2)
        expect(second.get_by_role("listitem")).to_have_count(2)
        assert [RESULT.match(text).group(1) for text in results(first)] == ["111", "333"]
        assert [RESULT.match(text).group(1) for text in results(second)] == ["222", "444"]
        with pytest.raises(urllib.error.HTTPError) as refused:  # no --admin: no admin page, no Tasks tab
            urllib.request.urlopen(server.url.replace("/app", "/admin"), timeout=10)
        assert refused.value.code == 404


def test_the_admin_page_lists_the_sessions_work_and_cancels_a_task(project, tmp_path, new_page):
    only_with_both(project)
    if executor_of(project) != "thread":
        pytest.skip("the tab and its buttons are the same with either executor")
    with slow_experiments(project, 10), panel_serve(project, tmp_path / "serve.log", "--admin") as server:
        first, second = new_page(), new_page()
        open_app(first, server.url)
        open_app(second, server.url)
        add_task(first, -1)  # fails at once
        expect(first.get_by_role("listitem")).to_have_count(1)
        add_task(first, 111)
        add_task(second, 222)
        expect(queued(second, 0)).to_be_visible()
        add_task(second, 333)
        expect(queued(second, 1)).to_be_visible()

        admin = new_page()
        admin.goto(server.url.replace("/app", "/admin"))
        admin.get_by_text("Tasks", exact=True).click()
        rows = admin.locator(".tabulator-row").filter(has_text=re.compile(r"Processing \d+%"))
        expect(rows).to_have_count(2)  # one task runs in each session
        owners = {re.search(r"session [\w-]+", text).group() for text in rows.all_inner_texts()}
        assert len(owners) == 2, rows.all_inner_texts()
        expect(
            admin.get_by_text(re.compile(r"Traceback(.|\n)*samples must be a positive number"))
        ).to_be_visible()

        # Cancel the first page's task, the one with none queued behind it.
        rows.filter(has_text="(0 queued)").get_by_text("Cancel", exact=True).click()
        expect(first.get_by_role("listitem").nth(1)).to_have_text("cancelled")
        expect(queued(second, 1)).to_be_visible()  # the other session's work goes on


def async_example(project: Path) -> str:
    """The runners' README example of an ``async def`` worker wired into a page."""
    readme = next(project.glob("*/runners/README.md")).read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    return next(code for code in blocks if "async def" in code)


def test_async_tasks_queue_and_show_their_results_without_a_thread_each(project, tmp_path, new_page):
    only_with_both(project)
    app = tmp_path / "app.py"  # the README's example, served as a script of its own
    app.write_text(f"{async_example(project)}\n\nlookup_panel().servable()\n")
    with panel_serve(project, tmp_path / "serve.log", app=str(app)) as server:
        page = new_page()
        open_app(page, server.url)
        page.get_by_role("button", name="Look up").click()
        expect(page.get_by_text("panel: 5 letters")).to_be_visible()
        box = page.get_by_role("textbox", name="Word")
        box.fill("async")
        box.press("Enter")
        expect(box).to_have_value("async")
        page.get_by_role("button", name="Look up").click(click_count=3)
        expect(page.get_by_text(re.compile(r"^Processing \([12] queued\)$"))).to_be_visible()
        expect(page.get_by_text("async: 5 letters")).to_be_visible()
        expect(page.get_by_text("Idle")).to_be_visible()
        assert tracebacks(server.output()) == [], server.output()[-5000:]


def test_progress_cancel_clear_and_a_full_queue(project, tmp_path, new_page):
    with slow_experiments(project, 10):  # the clicks below always land while one runs
        check_progress_cancel_clear_and_a_full_queue(project, tmp_path, new_page)


def check_progress_cancel_clear_and_a_full_queue(project: Path, tmp_path: Path, new_page) -> None:
    with panel_serve(project, tmp_path / "serve.log") as server:
        page = new_page()
        open_app(page, server.url)
        run = page.get_by_role("button", name="Run experiment")
        run.click()
        # The first report comes a step (2 s) into the task; on Dask, once the local cluster has started.
        progress = page.get_by_text(re.compile(r"^Processing \d+% step \d of 5"))
        expect(progress).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Cancel running").click()
        expect(page.get_by_role("listitem").first).to_have_text("cancelled")

        for _ in range(MAX_TASKS + 5):  # more clicks than the queue takes
            run.click()
        expect(
            page.get_by_text(re.compile(f"Not queued: {MAX_TASKS} tasks are waiting already"))
        ).to_be_visible()
        page.get_by_role("button", name="Clear queue").click()
        expect(queued(page, 0)).to_be_visible()
        page.get_by_role("button", name="Cancel running").click()
        expect(page.get_by_text("Idle")).to_be_visible()
        expect(page.get_by_role("listitem")).to_have_count(2)  # the two cancelled; the cleared ones never ran
        run.click()
        expect(page.get_by_text(re.compile("Not queued"))).to_be_hidden()


#: How long each experiment of the Ctrl+C test takes: far longer than any exit may.
LONG_EXPERIMENT_SECONDS = 60
#: Ctrl+C must end the server well before a running experiment could end; a loaded machine
#: (a parallel test run) takes seconds to stop a server, a server that waits takes a minute.
EXIT_SECONDS = 15


def test_ctrl_c_while_a_task_runs_exits_at_once(project, tmp_path, new_page, report):
    workers = next(project.glob("*/workers.py"))
    with restored(workers):
        long = f"EXPERIMENT_SECONDS = {LONG_EXPERIMENT_SECONDS}"
        workers.write_text(workers.read_text().replace("EXPERIMENT_SECONDS = 0.5", long))
        check_ctrl_c_while_a_task_runs(project, tmp_path, new_page, report)


def check_ctrl_c_while_a_task_runs(project: Path, tmp_path: Path, new_page, report) -> None:
    threading = threading_of(project)
    with panel_serve(project, tmp_path / "serve.log") as server:
        page = new_page()
        open_app(page, server.url)
        if threading in ("session", "both"):
            for samples in range(1, 6):
                add_task(page, samples)
            expect(page.get_by_text(re.compile(r"^Processing"))).to_be_visible()
            # Every click reached the server: a click still on its way as the server stops meets
            # Bokeh's shutdown, which detaches sessions before it closes their websockets (Bokeh 3.10).
            expect(queued(page, 4)).to_be_visible()
        else:
            expect(page.get_by_role("row", name=re.compile("^ACME "))).to_be_visible()
        on_dask = executor_of(project) == "dask"
        if on_dask:  # the first call starts the local cluster
            poll(lambda: "Dask: started a local cluster of" in server.output(), timeout=30,
                 message=f"the local cluster started; log:\n{server.output()}")  # fmt: skip
        children = descendants(server.process.pid)
        code, seconds = server.interrupt(timeout=LONG_EXPERIMENT_SECONDS)
        report(f"Ctrl+C, {threading}-{executor_of(project)}: exit code {code} after {seconds:.2f} s")
        assert code == 0
        assert seconds < EXIT_SECONDS, "the server waited for the running experiment"
        assert stopped_by_ctrl_c(server.output())
        assert tracebacks(server.output()) == [], server.output()[-8000:]
        poll(lambda: not any(alive(pid) for pid in children), timeout=10,
             message=f"the server's {len(children)} child processes end with it")  # fmt: skip
        if on_dask:
            assert "Dask: local cluster closed" in server.output()


def test_dev_reloads_run_the_edited_worker_in_one_thread(project, tmp_path, new_page, report):
    only_with_both(project)
    threading = threading_of(project)
    workers = next(project.glob("*/workers.py"))
    original = workers.read_text()
    setup = str(watched_changes_logged(tmp_path))
    with panel_serve(project, tmp_path / "serve.log", "--dev", "--setup", setup) as server, restored(workers):
        page = new_page()
        open_app(page, server.url)
        expect(page.get_by_role("link", name="Panel Threading App")).to_be_visible()  # the title bar
        for edit in range(1, 4):
            text = original.replace('TICKERS = ("ACME", "GLOBEX", "INITECH")', f'TICKERS = ("EDIT{edit}",)')
            text = text.replace('return f"{samples} samples:', f'return f"edit {edit}: {{samples}} samples:')
            assert text != original
            saved, saves = save_until_seen(workers, text, project / "app.py", server.output)
            new_row = page.get_by_role("row", name=re.compile(f"^EDIT{edit} "))
            expect(new_row).to_be_visible(timeout=30_000)
            started = server.output().count("GlobalTaskRunner[prices] started")
            stopped = server.output().count("GlobalTaskRunner[prices] stopped")
            assert (started, stopped) == (edit + 1, edit), "one thread per key, running the new code"
            add_task(page, 10)
            first_result = page.get_by_role("listitem").first
            expect(first_result).to_have_text(re.compile(f"^edit {edit}: 10 samples"))
            seconds = time.monotonic() - saved  # from the save Panel saw
            report(f"--dev reload {edit}, {threading}: the new code ran {seconds:.1f} s after save {saves}")
        code, seconds = server.interrupt()
        report(f"Ctrl+C under --dev, {threading}: exit code {code} after {seconds:.2f} s")
    assert code == 0
    assert stopped_by_ctrl_c(server.output())
    assert tracebacks(server.output()) == [], server.output()[-8000:]


def test_a_reload_finds_the_running_task_the_queue_and_the_results(project, tmp_path, new_page):
    # Experiments of 6 s: the reload lands while one runs, and the queue holds the others.
    with slow_experiments(project, 6), panel_serve(project, tmp_path / "serve.log") as server:
        page = new_page()
        open_app(page, server.url)
        queue_four_experiments(page)
        reload(page)
        expect(page.get_by_text(re.compile(r"^Processing \d+%"))).to_be_visible()
        before = progress_percent(page)
        poll(lambda: progress_percent(page) != before, timeout=30,
             message=f"the progress moves on from {before}% after the reload")  # fmt: skip

        # Another browser, given the same address, has a queue of its own.
        stranger = new_page()
        open_app(stranger, page.url)
        expect(stranger.get_by_text("No results yet.")).to_be_visible()
        expect(stranger.get_by_text("Idle")).to_be_visible()

        # The tab closed while the work goes on: with no session attached, it runs on.
        tab, kept = page.context, server.output().count("kept for 300 s with no session")
        page.close()
        poll(lambda: server.output().count("kept for 300 s with no session") > kept, timeout=30,
             message=f"the runner is kept once its page closed:\n{server.output()}")  # fmt: skip
        page = tab.new_page()
        open_app(page, server.url)
        expect(page.get_by_role("listitem")).to_have_count(4, timeout=60_000)
        assert [RESULT.match(text).group(1) for text in results(page)] == ["50", "111", "222", "333"]
        expect(stranger.get_by_text("No results yet.")).to_be_visible()
        # (Twice, at times: Bokeh drops the session a reload's request made if its websocket comes
        # later than the suite's 100 ms unused-session lifetime, and makes another for it.)
        assert "a new session of its browser attached to it" in server.output()
        assert tracebacks(server.output()) == [], server.output()[-8000:]


#: The grace period the test below gives a closed page's runner.
KEEP_SECONDS = 2
#: How many pages it opens and closes, one after the other: a thread left per round would end the
#: last round two threads above the first, where one is allowed.
ROUNDS = 3


def test_a_closed_page_s_runner_stops_once_its_time_is_up(project, tmp_path, new_page):
    short = session_project_edited(
        project, "*/runners/settings.py", '"KEEP_SECONDS", 300.0,', f'"KEEP_SECONDS", {KEEP_SECONDS},'
    )
    with short, panel_serve(project, tmp_path / "serve.log") as server:
        threads = []
        for round_ in range(1, ROUNDS + 1):
            page = new_page()
            open_app(page, server.url)
            add_task(page, 100)
            expect(page.get_by_role("listitem")).to_have_count(1)
            page.context.close()
            kept_and_stopped = (
                f"kept for {KEEP_SECONDS:g} s",
                f"no session came back within {KEEP_SECONDS:g} s",
            )
            for logged in kept_and_stopped:
                poll(lambda: server.output().count(logged) == round_, timeout=30,  # noqa: B023
                     message=f"round {round_}: {logged!r} in the log:\n{server.output()}")  # fmt: skip
            kept = re.findall(r"(SessionTaskRunner-\d+) kept for", server.output())[-1]
            poll(lambda: f"{kept} stopped" in server.output(), timeout=10, message=f"{kept} stopped")  # noqa: B023
            threads.append(server.status("Threads"))
        # The first round starts what lives on: the server's own threads, a Dask cluster. Pools
        # that grow as they are used (asyncio's, Dask's) may add a thread in a later round, once;
        # a kept runner that left a thread behind would add one in every round.
        poll(lambda: server.status("Threads") <= threads[0] + 1, timeout=30,
             message=f"no thread more each round: {threads}, now {server.status('Threads')}")  # fmt: skip
        assert tracebacks(server.output()) == [], server.output()[-8000:]


def log_in(page: Page, url: str, user: str) -> None:
    """Open the app behind Panel's basic auth: the login form, then the app and its websocket."""
    page.goto(url)
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(f"{user}-password")
    with page.expect_websocket() as opened:
        page.locator("button[type=submit]").click()  # "Login" on Panel 1.9, "Log in" on 1.10
    opened.value.wait_for_event("framereceived")


def test_behind_basic_auth_a_browser_token_serves_only_its_user(project, tmp_path, new_page):
    only_with_both(project)
    credentials = tmp_path / "credentials.json"
    credentials.write_text('{"ada": "ada-password", "bob": "bob-password"}')
    options = ("--basic-auth", str(credentials), "--cookie-secret", "a-test-secret-of-32-characters!!")
    with panel_serve(project, tmp_path / "serve.log", *options) as server:
        ada = new_page()
        log_in(ada, server.url, "ada")
        add_task(ada, 111)
        expect(ada.get_by_role("listitem")).to_have_count(1)
        token = [cookie for cookie in ada.context.cookies() if cookie["name"] == "panel_runners_browser"]
        assert len(token) == 1, ada.context.cookies()

        # Bob, with Ada's browser token: his login makes it another identity.
        bob = new_page()
        bob.context.add_cookies(token)
        log_in(bob, server.url, "bob")
        expect(bob.get_by_text("No results yet.")).to_be_visible()

        # Ada again, in another browser given the same token: her work is there.
        ada_again = new_page()
        ada_again.context.add_cookies(token)
        log_in(ada_again, server.url, "ada")
        expect(ada_again.get_by_role("listitem")).to_have_count(1)
        assert RESULT.match(results(ada_again)[0]).group(1) == "111"
        expect(bob.get_by_text("No results yet.")).to_be_visible()


#: A test of the user's, in the generated project: the page, served as its tests serve it
#: (`serve(create_app)`, without the app.py that `panel serve` runs), in several sessions.
TABLE_IN_EACH_SESSION = f'''\
"""Each session of the page shows the table that arrives once the page has loaded."""

import os

from playwright.sync_api import expect, sync_playwright

from {PACKAGE}.app import create_app

SESSIONS = 3


def test_each_session_shows_the_table(serve):
    url = serve(create_app)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM_PATH"), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            for _ in range(SESSIONS):
                context = browser.new_context()
                page = context.new_page()
                page.goto(url)
                expect(page.get_by_role("gridcell", name="Row 3 of the CSV")).to_be_visible(timeout=20_000)
                context.close()
        finally:
            browser.close()
'''


def test_a_tabulator_loaded_where_the_readme_says_shows_in_every_session(project):
    """A DataFrame that a page shows in a Tabulator once it has loaded, as a worker's result comes.

    The README's place for extensions is the top of ``create_app``: Panel loads an extension
    it was not told of only while a session's page is built, and a table added later stays blank.
    """
    only_with_both(project)
    if executor_of(project) != "thread":
        pytest.skip("the page's extensions are the same with either executor")
    page_module = project / PACKAGE / "app.py"
    test = project / "tests" / "test_table_in_each_session.py"
    with restored(page_module):
        text = page_module.read_text().replace(
            "import panel as pn\n", "import pandas as pd\nimport panel as pn\n", 1
        )
        text = text.replace("    pn.extension()\n", '    pn.extension("tabulator")\n', 1)
        text = text.replace(
            "    return page\n",
            '    frame = pd.DataFrame({"line": [f"Row {number} of the CSV" for number in (1, 2, 3)]})\n'
            "    table = pn.Column()\n"
            "    page.main.append(table)\n"
            "    pn.state.onload(lambda: table.append(pn.widgets.Tabulator(frame)))\n"
            "    return page\n",
        )
        page_module.write_text(text)
        test.write_text(TABLE_IN_EACH_SESSION)
        try:
            run_generated_tests(project, str(test.relative_to(project)))
        finally:
            test.unlink()
