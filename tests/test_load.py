"""Sessions come and go: after a warm-up round, 100 more leave no threads and little memory."""

from __future__ import annotations

import pytest

from support import close_sessions, open_sessions, panel_serve, poll, threading_of

pytestmark = pytest.mark.slow

SESSIONS = 100
#: Sessions that warm the server up: imports, and thread pools grown to their size. Fewer (30, or
#: rounds of 20 until the thread count held) left Panel 1.10's pools growing in the measured round.
WARM_UP_SESSIONS = 100
AT_ONCE = 10
#: Memory a warmed-up server may keep after 100 more sessions are gone, in MiB.
MAX_GROWTH_MIB = 20


def test_a_hundred_sessions_leave_no_threads_and_little_memory(project, tmp_path, report):
    threading = threading_of(project)
    with panel_serve(project, tmp_path / "serve.log") as server:

        def round_of_sessions(first_runner: int, count: int) -> int:
            """Open and close ``count`` sessions, AT_ONCE at a time; return the peak thread count."""
            peak = 0
            for _ in range(count // AT_ONCE):
                sessions = open_sessions(server.url, AT_ONCE)
                peak = max(peak, server.status("Threads"))
                close_sessions(sessions)
            if threading != "global":
                last = f"SessionTaskRunner-{first_runner + count - 1} stopped"
                poll(lambda: last in server.output(), timeout=60, message=f"{last}; log:\n{server.output()}")
            return peak

        # The warm-up: imports, the global runner, and the thread pools of Bokeh and asyncio,
        # which grow to a fixed size under concurrent sessions (more of them on Panel 1.10).
        round_of_sessions(first_runner=1, count=WARM_UP_SESSIONS)
        warmed = WARM_UP_SESSIONS
        baseline_threads, baseline_kib = server.status("Threads"), server.status("VmRSS")
        peak = round_of_sessions(first_runner=warmed + 1, count=SESSIONS)
        if threading != "global":
            assert server.output().count(" stopped") >= warmed + SESSIONS
        poll(lambda: server.status("Threads") <= baseline_threads, timeout=60,
             message=f"threads back to {baseline_threads}, now {server.status('Threads')}")  # fmt: skip
        growth_mib = (server.status("VmRSS") - baseline_kib) / 1024
        report(
            f"{SESSIONS} more sessions after {warmed}, {threading}: threads {baseline_threads} before, "
            f"{peak} at peak, {server.status('Threads')} after; memory {baseline_kib / 1024:.0f} MiB before, "
            f"{growth_mib:+.1f} MiB after"
        )
        assert growth_mib < MAX_GROWTH_MIB
        assert server.output().count("GlobalTaskRunner[prices] started") == (threading != "session")
