"""What the runners do to the whole server process, in one place.

Template-owned: ``copier update`` brings fixes to this file.

- ``process_state``: objects that live once per process (the session runners'
  pools, the global runners' registry, the event loop of ``async def`` workers
  (``runners_loop``), the Dask client) and the hooks that stop them as the
  process exits. They are kept in ``STATE``, a dictionary held by a module of no
  file in ``sys.modules``: Panel's ``--dev`` reload deletes only modules loaded
  from files, so it outlives the re-import of this package, and clearing
  ``pn.state.cache`` (the user's own cache) leaves it alone.
- ``prepare_server``: called by every runner built in a served session, it acts
  once. It lowers Python's switch interval (``SWITCH_INTERVAL`` in settings.py;
  ``None`` leaves it alone), makes Ctrl+C and SIGTERM stop ``panel serve``
  cleanly, and keeps failed writes to pages that have gone out of the error log.

Nothing else in the runners changes the process's state.
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

_HOLDER_NAME = f"{__name__.replace('.', '_')}_state"  # outside the package: no reload deletes it
_holder = sys.modules.setdefault(_HOLDER_NAME, types.ModuleType(_HOLDER_NAME))
#: The process's objects by key, and the lock that guards it, whatever imports this module.
STATE: dict[str, Any] = _holder.__dict__.setdefault("STATE", {})
_lock: threading.Lock = _holder.__dict__.setdefault("lock", threading.Lock())

#: Where ``process_state`` keeps the hooks to run as the process exits.
EXIT_HOOKS_KEY = "exit_hooks"

#: Where ``prepare_server`` notes the loop that Ctrl+C stops.
CTRL_C_KEY = "ctrl_c"


def process_state(
    key: str,
    make: Callable[[], _State],
    at_exit: Callable[[_State], object] | None = None,
    *,
    kind: type | None = None,
    last: bool = False,
) -> _State:
    """Return the process's object under ``key`` in ``STATE``, made on first use.

    A reloaded module finds what its previous version made, unless ``kind`` is
    given and the object is not an instance of it (a class of the previous
    import): then a new object takes the key, and the old one is left to end
    with its users. ``at_exit(state)``, if given, runs once as the process exits,
    from ``run_exit_hooks()``: the hooks run in the reverse order of their
    objects' making, but those with ``last=True`` (the Dask client, which the
    runners' last calls still use) after every other.
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


def runners_loop() -> EventLoopThread:
    """The process's event loop for ``async def`` workers, in a thread of its own, started on first use.

    It stops as the process exits, after the runners that use it.
    """
    return process_state(f"{__name__}.runners_loop", EventLoopThread, EventLoopThread.stop)


def run_exit_hooks() -> None:
    """Run the exit hooks registered by ``process_state``, each once.

    Runs at exit, or earlier on Ctrl+C: by the time atexit runs, Python has shut
    down its thread pools, and a Dask scheduler that still handles a call fails
    with "cannot schedule new futures after shutdown".
    """
    with _lock:
        hooks = STATE.get(EXIT_HOOKS_KEY) or {}
        ordered = sorted(reversed(hooks.values()), key=lambda item: item[0])  # stable: last=True at the end
        hooks.clear()
    for _, hook in ordered:
        try:
            hook()
        except Exception:  # the other hooks still run
            logger.exception("An exit hook failed")


def prepare_server() -> None:
    """Set up the serving process for the runners; call it while a session renders.

    - Ctrl+C, and SIGTERM (``docker stop``), stop the server's event loop between
      two of its callbacks, as ``pn.serve`` does, after the runners and what they
      use have stopped (``run_exit_hooks``). By default Ctrl+C raises KeyboardInterrupt wherever
      the main thread is, and ``panel serve`` may exit with a traceback. A second
      Ctrl+C interrupts at once. Only where Python's own SIGINT handler is in
      place, in the main thread, outside a notebook kernel.
    - A write to a page that has gone (``WebSocketClosedError``, holoviz/panel#3341)
      is logged at debug level rather than as "Task exception was never retrieved".
    - Python's switch interval is lowered to ``SWITCH_INTERVAL``: a thread that
      computes then hands the GIL to the server's thread sooner.

    Each is done once per process (the handler once per event loop, where one runs).
    """
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
    """An event loop's exception handler that drops failed writes to closed websockets."""

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
