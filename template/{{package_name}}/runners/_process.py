"""All that the runners do to the server process: its shared objects, their exit hooks, ``prepare_server``.

``prepare_server`` makes Ctrl+C and SIGTERM (``docker stop``) run the exit hooks, then stop the server.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import signal
import sys
import threading
import types
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from .event_loop import EventLoopThread
from .settings import SWITCH_INTERVAL

logger = logging.getLogger(__name__)

_State = TypeVar("_State")

# A module of no file: Panel's --dev reload deletes only modules loaded from files, so STATE outlives
# re-imports of this package; and clearing pn.state.cache (the user's) leaves it alone.
_HOLDER_NAME = f"{__name__.replace('.', '_')}_state"
_holder = sys.modules.setdefault(_HOLDER_NAME, types.ModuleType(_HOLDER_NAME))
STATE: dict[str, Any] = _holder.__dict__.setdefault("STATE", {})
_lock: threading.Lock = _holder.__dict__.setdefault("lock", threading.Lock())

EXIT_HOOKS_KEY = "exit_hooks"
EXITING_KEY = "exiting"
CTRL_C_KEY = "ctrl_c"
OBSERVERS_KEY = "observers"


def process_state(
    key: str,
    make: Callable[[], _State],
    at_exit: Callable[[_State], object] | None = None,
    *,
    kind: type | None = None,
    last: bool = False,
) -> _State:
    """The process's object under ``key``, made on first use.

    An object that is not a ``kind`` (a class of a previous import) is replaced, and left to end with
    its users. The ``at_exit`` hooks run once, in the reverse order of making, ``last=True`` ones (the
    Dask client, which the runners' last calls use) after every other.
    """
    with _lock:
        state = STATE.get(key)
        if state is None or (kind is not None and not isinstance(state, kind)):
            state = STATE[key] = make()
            hooks = STATE.get(EXIT_HOOKS_KEY)
            if hooks is None:
                hooks = STATE[EXIT_HOOKS_KEY] = {}
                atexit.register(run_exit_hooks)
            hooks.pop(key, None)  # a replaced object's hook goes with it: its users end it
            if at_exit is not None:
                hooks[key] = (last, partial(at_exit, state))
    return state


def observers() -> dict[str, Callable[[str, str, str, float, float], object]]:
    """Who hears of every task's and global call's end, by name: a re-imported module replaces its own.

    Each is called as ``observe(kind, name, outcome, waited, ran)``: ``kind`` is ``"task"`` (``name``:
    the worker's) or ``"global"`` (``name``: the key), ``waited`` and ``ran`` are seconds. It runs in
    the worker's thread, or on the runners' event loop: it must be quick.
    """
    return process_state(OBSERVERS_KEY, dict)


def tell_observers(kind: str, name: str, outcome: str, waited: float, ran: float) -> None:
    for observer, observe in list(observers().items()):
        try:
            observe(kind, name, outcome, waited, ran)
        except Exception:  # an observer must not end a worker
            logger.exception("The runners' observer %s failed", observer)


def runners_loop() -> EventLoopThread:
    """The process's event loop for ``async def`` workers, started on first use, stopped at exit."""
    return process_state(f"{__name__}.runners_loop", EventLoopThread, EventLoopThread.stop)


def exiting() -> bool:
    """True once the exit hooks have begun: what starts anew (a Dask cluster) must not start."""
    return bool(STATE.get(EXITING_KEY))


def run_exit_hooks() -> None:
    """Run the ``process_state`` exit hooks, each once.

    Ctrl+C runs them early: by the time atexit runs, Python has shut down its thread pools, and a Dask
    scheduler still handling a call fails with "cannot schedule new futures after shutdown".
    """
    with _lock:
        STATE[EXITING_KEY] = True
        hooks = STATE.get(EXIT_HOOKS_KEY) or {}
        ordered = sorted(reversed(hooks.values()), key=lambda item: item[0])  # stable: last=True at the end
        hooks.clear()
    for _, hook in ordered:
        try:
            hook()
        except Exception:
            logger.exception("An exit hook failed")


def prepare_server() -> None:
    """Set up the serving process once (DESIGN.md says how); call it while a session renders."""
    if SWITCH_INTERVAL is not None and sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)
        logger.debug("Python's switch interval lowered to %g s", SWITCH_INTERVAL)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if not isinstance(loop.get_exception_handler(), _ClosedPageWrites):
        loop.set_exception_handler(_ClosedPageWrites(loop.get_exception_handler()))
    if (
        threading.current_thread() is threading.main_thread()
        and "ipykernel" not in sys.modules
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        process_state(CTRL_C_KEY, lambda: _stop_on_sigint(loop))


class _ClosedPageWrites:
    """An exception handler that logs failed writes to closed pages at debug (holoviz/panel#3341)."""

    def __init__(
        self, previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None
    ) -> None:
        self.previous = previous

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        from tornado.websocket import WebSocketClosedError

        if isinstance(context.get("exception"), WebSocketClosedError):
            logger.debug("A write to a page that has gone failed: %s", context.get("message"))
        elif self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


def _stop_on_sigint(loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    def stop(signal_name: str = "Ctrl+C") -> None:
        logger.info("%s: stopping the server", signal_name)
        run_exit_hooks()
        loop.stop()

    def interrupted(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next Ctrl+C interrupts
        loop.call_soon_threadsafe(stop)

    def terminated() -> None:
        loop.remove_signal_handler(signal.SIGTERM)  # the next SIGTERM ends the process at once
        stop("SIGTERM")

    signal.signal(signal.SIGINT, interrupted)
    if sys.platform != "win32":  # in place of Bokeh's handler, which only stops the loop
        loop.add_signal_handler(signal.SIGTERM, terminated)
    return loop
