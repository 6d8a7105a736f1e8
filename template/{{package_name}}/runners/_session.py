"""Tie a runner's updates to the session that built it: its document is captured while it renders
(worker threads have no ``pn.state.curdoc``), and changes apply on the session's next tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import panel as pn
import param

if TYPE_CHECKING:
    from bokeh.document import Document

logger = logging.getLogger(__name__)


def session_document() -> Document | None:
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return None
    return doc


def on_session_end(doc: Document, callback: Callable[[], object]) -> None:
    doc.on_session_destroyed(lambda session_context: callback())


def server_loop(doc: Document) -> Any:
    """The event loop (a Tornado IOLoop) of the server that serves ``doc``, or None."""
    try:
        return doc.session_context.server_context.application_context.io_loop  # type: ignore[union-attr]
    except AttributeError:  # its session has ended, or it is not a Bokeh server's
        return None


def call_in_session(doc: Document, callback: Callable[..., object], *args: Any) -> None:
    """Run ``callback(*args)`` on the session's next tick, from any thread; dropped once it has ended.

    The server's loop adds it: a Bokeh document is not safe to change from another thread while a
    session is being created.
    """
    loop = server_loop(doc)
    if loop is None:  # no server (a notebook): the document takes it
        _next_tick(doc, partial(callback, *args))
    else:
        loop.add_callback(_next_tick, doc, partial(callback, *args))


def _next_tick(doc: Document, callback: Callable[[], object]) -> None:
    try:
        doc.add_next_tick_callback(callback)
    except Exception:  # the session was destroyed meanwhile: nobody is left to update
        logger.debug("Dropped an update for a destroyed session", exc_info=True)


def set_outputs(obj: param.Parameterized, *updates: dict[str, Any]) -> None:
    """Set ``obj``'s constant parameters, one ``obj.param.update`` per dict, in order.

    ``obj`` must hold instance copies of its parameters (``obj.param.objects()`` in its ``__init__``),
    or ``param.edit_constant`` would touch its class's. A watcher's error is logged; param then calls
    no other watcher of that update, though the values are set.
    """
    with param.edit_constant(obj):
        for values in updates:
            try:
                obj.param.update(values)
            except Exception:
                logger.exception("%s: a watcher of its parameters failed", obj.name)


class Updates:
    """A runner's page updates: requested from any thread, applied one batch at a time.

    In a session, ``apply(items)`` runs on its next tick, at most once per ``interval``; if it returns
    seconds, another update follows after that long (for what changes unasked, a place in a line).
    Outside a session it runs in the requesting thread, or another that is applying; either way the
    parameters are up to date when ``request`` returns (except for a request from the applier itself).
    """

    def __init__(
        self, doc: Document | None, apply: Callable[[list[Any]], float | None], interval: float = 0.0
    ) -> None:
        self.doc = doc
        self._apply = apply
        self._interval = interval
        self._lock = threading.Condition()
        self._items: list[Any] = []
        self._due = False  # a batch waits to be applied
        self._busy = False  # an update is scheduled, or a thread is applying
        self._asked = self._applied = 0  # requests made, and how many of them are applied
        self._applier: int | None = None  # outside a session: the thread that applies, while one does
        self._last = 0.0
        self._refreshing = False  # on the session's loop: a follow-up update is scheduled

    def request(self, item: Any = None) -> None:
        """Gather ``item`` (an outcome, or None: the state changed) and have the batch applied."""
        with self._lock:
            if item is not None:
                self._items.append(item)
            self._due = True
            self._asked = asked = self._asked + 1
            if self._busy:
                if self.doc is None and self._applier != threading.get_ident():
                    self._lock.wait_for(lambda: self._applied >= asked)
                return
            self._busy = True
        if self.doc is None:
            self._drain()
        else:
            call_in_session(self.doc, self._on_tick)

    def _take(self, done: bool) -> tuple[list[Any], int] | None:
        """The batch and the requests it answers, or None; ``done``: a later request schedules anew."""
        with self._lock:
            if not self._due:  # every request so far is applied
                self._busy = False
                if self._applier == threading.get_ident():
                    self._applier = None
                self._applied = self._asked
                self._lock.notify_all()
                return None
            items, self._items, self._due = self._items, [], False
            self._busy = not done
            return items, self._asked

    def _drain(self) -> None:
        with self._lock:
            self._applier = threading.get_ident()
        try:
            while (batch := self._take(done=False)) is not None:
                items, asked = batch
                self._apply(items)
                with self._lock:
                    self._applied = asked
                    self._lock.notify_all()
        except BaseException:
            with self._lock:  # the next request applies again; nobody waits for this batch
                self._applier, self._busy, self._applied = None, False, self._asked
                self._lock.notify_all()
            raise

    def _on_tick(self) -> None:
        wait = self._last + self._interval - time.monotonic()
        if wait > 0:
            self.doc.add_timeout_callback(self._on_tick, int(wait * 1000) + 1)
            return
        batch = self._take(done=True)
        if batch is None:
            return
        self._last = time.monotonic()
        with pn.io.hold(self.doc):  # one message to the browser for the whole batch
            again = self._apply(batch[0])
        if again is not None and not self._refreshing:
            self._refreshing = True
            self.doc.add_timeout_callback(self._refresh, int(again * 1000))

    def _refresh(self) -> None:
        self._refreshing = False
        self.request()
