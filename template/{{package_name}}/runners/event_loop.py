"""The runners' own event loop, where ``async def`` workers run: plain Python, no Panel."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from .executors import Raised, TaskCancelled, TaskControl, unwrap

logger = logging.getLogger(__name__)


async def await_worker(coroutine: Coroutine[Any, Any, Any], control: TaskControl) -> Any:
    """Await a worker's ``coroutine`` in a task of its own, which ``control.cancel()`` cancels.

    Raises what the worker raises, ``SystemExit`` and the like too (wrap the call in ``caught``);
    ``TaskCancelled`` once cancelled; a ``RuntimeError`` for a ``CancelledError`` nobody asked for.
    """
    loop = asyncio.get_running_loop()
    task = loop.create_task(caught(coroutine))
    control.add_cancel_callback(partial(_cancel_soon, loop, task))
    try:
        result = await task
    except asyncio.CancelledError as error:
        current = asyncio.current_task()
        if current is not None and current.cancelling():  # the loop is stopping: let it
            raise
        control.raise_if_cancelled()
        raise RuntimeError("The worker raised CancelledError, though nothing cancelled it") from error
    return unwrap(result)


def _cancel_soon(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed, and the task with it
        loop.call_soon_threadsafe(task.cancel)


async def caught(awaitable: Awaitable[Any]) -> Any:
    """``await awaitable``; return a ``SystemExit``, ``KeyboardInterrupt`` or ``GeneratorExit`` as ``Raised``.

    Out of a task, the first two stop the loop, and the third silently closes the awaiting coroutine.
    """
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt, GeneratorExit) as exception:
        return Raised(exception)


class Deadline:
    """A call waiting on a loop for its time; ``cancel()`` drops it, and lets go of the function, at once."""

    def __init__(self, function: Callable[[], object], loop: asyncio.AbstractEventLoop) -> None:
        self.function: Callable[[], object] | None = function
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None  # on the loop, once it has the call

    def cancel(self) -> None:
        """Drop the call if it has not run yet; from any thread."""
        self.function = None
        with contextlib.suppress(RuntimeError):  # the loop has closed, and its calls with it
            self._loop.call_soon_threadsafe(self._unschedule)

    def _schedule(self, delay: float) -> None:
        self._handle = self._loop.call_later(delay, self._run)

    def _unschedule(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def _run(self) -> None:
        function, self.function = self.function, None
        if function is not None:
            try:
                function()
            except Exception:  # the loop's next calls still come
                logger.exception("A call at its deadline failed")


class EventLoopThread:
    """An asyncio event loop in a daemon thread, started on first use; the executor of async workers."""

    interrupts = True

    def __init__(self, name: str = "RunnersEventLoop") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The loop's thread while it runs; None before the first use and after ``stop()``."""
        return self._thread

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, started now if it is not running."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._run, args=(loop,), name=self.name, daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    def call_at(self, when: float, function: Callable[[], object]) -> Deadline:
        """Call ``function()`` on the loop at ``when`` (``time.monotonic()``); it must be quick."""
        loop = self.loop()
        deadline = Deadline(function, loop)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the process is exiting
            loop.call_soon_threadsafe(deadline._schedule, max(0.0, when - time.monotonic()))
        return deadline

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop())

    def call(self, function: Callable[..., Any], *args: Any, control: TaskControl, pass_control: bool) -> Any:
        """``Executor.call``: run ``await function(*args)`` on the loop and wait for it."""
        coroutine = function(*args, control=control) if pass_control else function(*args)
        try:
            result = self.submit(caught(await_worker(coroutine, control))).result()
        except concurrent.futures.CancelledError:  # the loop stopped under the call
            raise TaskCancelled from None
        return unwrap(result)

    def stop(self, timeout: float | None = 1.0) -> bool:
        """Cancel the loop's tasks, give them ``timeout`` seconds, stop the loop; True once it has."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return True
        asyncio.run_coroutine_threadsafe(_cancel_all_then_stop(timeout), loop)
        thread.join(None if timeout is None else timeout + 1.0)
        return not thread.is_alive()

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        logger.info("%s started", self.name)
        try:
            loop.run_forever()
        finally:
            with self._lock:
                if self._loop is loop:  # it ended by itself: the next use starts a new one
                    self._loop = self._thread = None
            loop.close()
            logger.info("%s stopped", self.name)


async def _other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def _cancel_all_then_stop(timeout: float | None) -> None:
    tasks = await _other_tasks()
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    asyncio.get_running_loop().stop()
