"""Sessions come and go: after a warm-up round, 100 more leave no threads and little memory."""

from __future__ import annotations

import panel.models  # noqa: F401  (a client must know Panel's models to read the document)
import pytest
from bokeh.client import pull_session

from support import panel_serve, poll, threading_of

pytestmark = pytest.mark.slow

SESSIONS = 100
AT_ONCE = 10
#: Memory a warmed-up server may keep after 100 more sessions are gone, in MiB.
MAX_GROWTH_MIB = 20


def test_a_hundred_sessions_leave_no_threads_and_little_memory(project, tmp_path, report):
    threading = threading_of(project)
    with panel_serve(project, tmp_path / "serve.log") as server:

        def round_of_sessions(first_runner: int) -> int:
            """Open and close SESSIONS sessions, AT_ONCE at a time; return the peak thread count."""
            peak = 0
            for _ in range(SESSIONS // AT_ONCE):
                sessions = [pull_session(url=server.url) for _ in range(AT_ONCE)]
                peak = max(peak, server.status("Threads"))
                for session in sessions:
                    session.close()
            if threading != "global":
                last = f"SessionTaskRunner-{first_runner + SESSIONS - 1} stopped"
                poll(lambda: last in server.output(), timeout=60, message=f"{last}; log:\n{server.output()}")
            return peak

        # A first round warms the server up: imports, the global runner, and the thread pools
        # of Bokeh and asyncio, which grow to a fixed size under concurrent sessions (Bokeh 3.10).
        round_of_sessions(first_runner=1)
        baseline_threads, baseline_kib = server.status("Threads"), server.status("VmRSS")
        peak = round_of_sessions(first_runner=SESSIONS + 1)
        if threading != "global":
            assert server.output().count(" stopped") >= 2 * SESSIONS
        poll(lambda: server.status("Threads") <= baseline_threads, timeout=60,
             message=f"threads back to {baseline_threads}, now {server.status('Threads')}")  # fmt: skip
        growth_mib = (server.status("VmRSS") - baseline_kib) / 1024
        report(
            f"{SESSIONS} more sessions, {threading}: threads {baseline_threads} before, {peak} at peak, "
            f"{server.status('Threads')} after; memory {baseline_kib / 1024:.0f} MiB before, "
            f"{growth_mib:+.1f} MiB after"
        )
        assert growth_mib < MAX_GROWTH_MIB
        assert server.output().count("GlobalTaskRunner[prices] started") == (threading != "session")
