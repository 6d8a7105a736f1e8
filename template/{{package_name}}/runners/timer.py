"""Call functions at deadlines, from one thread that lives while a deadline is pending.

Template-owned: ``copier update`` brings fixes to this file.

Plain Python, no Panel. The session runners' pool times out tasks with it, and
the store of kept runners stops each one when its time is up.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class Deadline:
    """A call waiting for its time; ``cancel()`` drops it, and the timer forgets the function."""

    def __init__(self, function: Callable[[], object], wake: threading.Condition) -> None:
        self.function: Callable[[], object] | None = function
        self._wake = wake

    def cancel(self) -> None:
        """Drop the call if it has not run yet."""
        with self._wake:
            self.function = None
            self._wake.notify()  # a timer left with nothing to wait for ends now


class Timer:
    """Calls each function at its deadline (``time.monotonic()`` seconds), in its own thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._wake = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def call_at(self, when: float, function: Callable[[], object]) -> Deadline:
        """Call ``function()`` at ``when``; it must be quick, and never raise."""
        deadline = Deadline(function, self._wake)
        with self._wake:
            heapq.heappush(self._heap, (when, next(self._order), deadline))
            self._wake.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        return deadline

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0][2].function is None:
                    heapq.heappop(self._heap)  # cancelled
                if not self._heap:
                    self._thread = None
                    return
                when, _, deadline = self._heap[0]
                if when > time.monotonic():
                    self._wake.wait(when - time.monotonic())
                    continue
                heapq.heappop(self._heap)
                function, deadline.function = deadline.function, None
            if function is not None:
                function()
