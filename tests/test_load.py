"""100 sessions come and go: the server's threads return to their baseline and its memory stays put."""

from __future__ import annotations

import panel.models  # noqa: F401  (a client must know Panel's models to read the document)
import pytest
from bokeh.client import pull_session

from support import panel_serve, poll, threading_of

pytestmark = pytest.mark.slow

SESSIONS = 100
AT_ONCE = 10
#: Memory a server may keep after 100 sessions are gone (caches, fragmentation), in MiB.
MAX_GROWTH_MIB = 40


def test_a_hundred_sessions_leave_no_threads_and_little_memory(project, tmp_path, report):
    threading = threading_of(project)
    with panel_serve(project, tmp_path / "serve.log") as server:
        # A first session warms the server up: imports, Panel's own threads, the global runner.
        pull_session(url=server.url).close()
        if threading != "global":
            poll(lambda: "SessionTaskRunner-1 stopped" in server.output(), timeout=30, message="warm-up ends")
        baseline_threads, baseline_kib = server.status("Threads"), server.status("VmRSS")

        peak = 0
        for _ in range(SESSIONS // AT_ONCE):
            sessions = [pull_session(url=server.url) for _ in range(AT_ONCE)]
            peak = max(peak, server.status("Threads"))
            for session in sessions:
                session.close()
        if threading != "global":
            last = f"SessionTaskRunner-{SESSIONS + 1} stopped"
            poll(lambda: last in server.output(), timeout=60, message=f"{last}; log:\n{server.output()}")
            assert server.output().count(" stopped") >= SESSIONS + 1
        poll(lambda: server.status("Threads") <= baseline_threads, timeout=60,
             message=f"threads back to {baseline_threads}, now {server.status('Threads')}")  # fmt: skip
        growth_mib = (server.status("VmRSS") - baseline_kib) / 1024
        report(
            f"{SESSIONS} sessions, {threading}: threads {baseline_threads} before, {peak} at peak, "
            f"{server.status('Threads')} after; memory {baseline_kib / 1024:.0f} MiB before, "
            f"{growth_mib:+.1f} MiB after"
        )
        assert growth_mib < MAX_GROWTH_MIB
        assert server.output().count("GlobalTaskRunner[prices] started") == (threading != "session")
