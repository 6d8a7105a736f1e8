"""Where a runner's worker runs (an ``Executor``, ``InThread`` by default), and its ``TaskControl``."""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)

#: The log of every failed task and global call, and every time-out, each once with its traceback:
#: ``<package>.runners.tasks``.
TASK_LOG = logging.getLogger(f"{__name__.rpartition('.')[0]}.tasks")

#: The runners' modules: a kept failure's traceback leaves their frames out.
_RUNNERS = __name__.rpartition(".")[0] + "."
_RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


class TaskCancelled(Exception):
    """Raised in a worker by ``TaskControl.raise_if_cancelled()``: the task ends as cancelled."""


class TaskTimedOut(TaskCancelled):
    """A task ran past its time limit; a worker that checks its control gets it as a ``TaskCancelled``."""


class TaskControl:
    """Progress reports and cancellation, passed to a worker that has a parameter named ``control``.

    A worker checks between steps whether the user asked it to stop::

        def fit(task, control: TaskControl) -> Model:
            for step in range(10):
                control.raise_if_cancelled()
                ...
                control.report(step + 1, 10, "fitting")
    """

    def __init__(self, on_report: Callable[[], object] | None = None) -> None:
        self._cancelled = False  # set once, with the lock held, after ``_timed_out``
        self._timed_out = False
        self._on_report = on_report
        self._on_cancel: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self.fraction: float | None = None
        self.message = ""
        self.started = time.monotonic()  # the task's start: its control is made as it is taken

    @property
    def cancelled(self) -> bool:
        """True once the user asked the task to stop."""
        return self._cancelled

    @property
    def timed_out(self) -> bool:
        """True once the task ran past its time limit (it is then cancelled too)."""
        return self._timed_out

    def cancel(self) -> None:
        """Ask the task to stop; the worker notices when it next checks."""
        self._request_stop(timed_out=False)

    def time_out(self) -> None:
        self._request_stop(timed_out=True)

    def _request_stop(self, timed_out: bool) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._timed_out = timed_out
            self._cancelled = True
            callbacks, self._on_cancel = self._on_cancel, []
        for callback in callbacks:
            _call_back(callback)

    def add_cancel_callback(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` when the task is cancelled, or now if it is already; it must be quick.

        At a time limit it runs on the runners' event loop, among every other deadline.
        """
        with self._lock:
            if not self._cancelled:
                self._on_cancel.append(callback)
                return
        _call_back(callback)

    def report(self, done: float, total: float | None = None, message: str = "") -> None:
        """Report progress: ``report(0.4)``, ``report(4, 10)`` or ``report(4, 10, "reading files")``."""
        self.fraction, self.message = progress_fraction(done, total), message
        if self._on_report is not None:
            self._on_report()

    def raise_if_cancelled(self) -> None:
        """Raise ``TaskCancelled`` if the user asked the task to stop (``TaskTimedOut`` past its time)."""
        if self.cancelled:
            raise TaskTimedOut if self._timed_out else TaskCancelled


class Raised:
    """What a worker raised, returned where raising it would stop the wrong thing (a loop, a Dask worker)."""

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception


def unwrap(result: Any) -> Any:
    """A worker's ``result``; if it is a ``Raised``, raise its exception here, in the runner."""
    if isinstance(result, Raised):
        raise result.exception
    return result


def _call_back(callback: Callable[[], object]) -> None:
    try:
        callback()
    except Exception:  # the other callbacks still run, and cancel() returns
        logger.exception("A cancel callback failed")


class Executor(Protocol):
    """What a runner needs of an executor."""

    #: True if cancelling abandons a running call even when the worker does not check
    #: its ``TaskControl``; the runner then moves on without waiting for the worker.
    interrupts: bool

    def call(self, function: Callable[..., Any], *args: Any, control: TaskControl, pass_control: bool) -> Any:
        """``function(*args)``, with ``control=`` if ``pass_control``; ``TaskCancelled`` if abandoned."""
        ...


class SharedFeed(Protocol):
    """One global runner key's results, shared by the server processes on one executor (a Dask scheduler).

    An executor's optional ``shared_feed(key)`` returns one, or None when its calls reach no other
    process. No method raises: a failure to coordinate is logged, and ``latest()`` returns it.
    """

    #: True while this process calls the worker for every process.
    leading: bool

    def lead(self) -> bool:
        """True if this process calls the worker this interval."""
        ...

    def publish(self, outcome: dict[str, Any]) -> None:
        """Share the outcome (``value`` and ``exception``) of this process's call."""
        ...

    def latest(self) -> dict[str, Any] | None:
        """The producer's outcome not taken yet, or this interval's failure to coordinate; else None."""
        ...

    def close(self) -> None:
        """Stop producing here, so that another process takes over at once."""
        ...


class InThread:
    """The default executor: call the worker in the runner's own thread."""

    interrupts = False

    def call(self, function: Callable[..., Any], *args: Any, control: TaskControl, pass_control: bool) -> Any:
        """Call ``function(*args)`` here; refuse a coroutine result (an async worker in a wrapper)."""
        result = function(*args, control=control) if pass_control else function(*args)
        if inspect.iscoroutine(result):
            result.close()
            raise TypeError(
                f"{function!r} returned a coroutine: declare the worker itself with async def, "
                "and the runner awaits it on its event loop"
            )
        return result


def executor_or_default(executor: Executor | None, worker: Callable[..., Any]) -> Executor:
    """Return ``executor``, or ``InThread()`` for None; refuse one that cannot run ``worker``."""
    if executor is None:
        return InThread()
    if is_async(worker):
        raise ValueError(
            f"{worker!r} is async def: it runs on the runners' event loop, never in an executor. "
            "Leave executor out, or make the worker a plain function for the executor to run."
        )
    if not callable(getattr(executor, "call", None)) or not hasattr(executor, "interrupts"):
        raise TypeError(
            f"{executor!r} is not an executor: it needs a call() method and an interrupts attribute "
            "(see executors.py); leave executor out to run the worker in the runner's thread"
        )
    return executor


def qualified_name(obj: object) -> str:
    """``module.name`` of a function or a callable object; the served script's module is ``<script>``."""
    module = getattr(obj, "__module__", None) or type(obj).__module__
    module = "<script>" if module.startswith("bokeh_app_") else module  # one per session
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}"


def describe_exception(exception: BaseException) -> str:
    """``"ValueError: the message"``, for the page; never fails, whatever the exception's ``__str__`` does."""
    name = type(exception).__name__
    try:
        message = str(exception)
    except Exception:  # an exception class whose __str__ is broken
        return f"{name} (its message cannot be shown)"
    return f"{name}: {message}" if message else name


def progress_fraction(done: float, total: float | None = None) -> float:
    """Turn ``done`` (a fraction) or ``done`` of ``total`` into a fraction; refuse nonsense."""
    if total is not None:
        if total <= 0:
            raise ValueError(f"total must be more than 0, not {total}")
        done = done / total
    if not 0 <= done <= 1:
        raise ValueError(f"progress must be between 0 and 1 (or done <= total), not {done}")
    return done


def is_async(function: Callable[..., Any]) -> bool:
    """True for an ``async def`` function, method or ``functools.partial`` of one, or such a ``__call__``."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(type(function).__call__)


def takes_control(function: Callable[..., Any]) -> bool:
    """True if ``function`` has a parameter named ``control``; refuse a ``TaskControl`` named otherwise."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    for name, parameter in parameters.items():
        annotation = parameter.annotation
        if name != "control" and (annotation is TaskControl or str(annotation).endswith("TaskControl")):
            raise TypeError(
                f"{function!r} takes a TaskControl as {name!r}: the runners pass it as control=, "
                "so name that parameter control"
            )
    return "control" in parameters


def without_locals(exception: BaseException) -> BaseException:
    """Return ``exception`` holding no local variables: a kept failure keeps no worker's data alive.

    Its traceback starts at the worker's frame, and the frames it went through are cleared;
    those of chained exceptions too, but a generator's or a coroutine's, which may run on.
    The traceback still prints.
    """
    tb = exception.__traceback__
    while tb is not None and getattr(tb.tb_frame, "f_globals", {}).get("__name__", "").startswith(_RUNNERS):
        tb = tb.tb_next
    pending, seen = [(exception.with_traceback(tb), True)], set()
    while pending:
        error, went_through = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        tb = error.__traceback__
        while tb is not None:
            if went_through or not getattr(tb.tb_frame.f_code, "co_flags", 0) & _RESUMABLE:
                with contextlib.suppress(RuntimeError):  # a frame still running
                    tb.tb_frame.clear()
            tb = tb.tb_next
        pending += [(chained, False) for chained in (error.__cause__, error.__context__)]
        pending += [(grouped, False) for grouped in getattr(error, "exceptions", ())]
    return exception
