"""Tie background threads to the Panel session that created them.

Template-owned: ``copier update`` brings fixes to this file.

A runner is built while Panel renders a session, on the server's event loop, but
it changes its parameters from a thread of its own, where ``pn.state.curdoc`` is
None. The helpers below capture the session's document while it is known, use it
later to run code back on the session's event loop, and set constant parameters
safely from any thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import panel as pn
import param

if TYPE_CHECKING:
    from bokeh.document import Document

logger = logging.getLogger(__name__)

# param.edit_constant makes the parameters of the object's whole class editable,
# then constant again on exit: two threads doing it at once undo each other.
_constant_edits = threading.RLock()


def current_session_document() -> Document | None:
    """Return the document of the session being rendered, or None outside a session.

    Tests, notebooks and import-time code have no session: they get None.
    """
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return None
    return doc


def on_session_end(doc: Document, callback: Callable[[], object]) -> None:
    """Call ``callback()`` when the session that owns ``doc`` is destroyed.

    Registers on this one document. ``pn.state.on_session_destroyed``, called
    outside a session, would register the callback for every future session.
    """

    def session_destroyed(session_context: object) -> None:
        callback()

    doc.on_session_destroyed(session_destroyed)


def call_in_session(doc: Document | None, callback: Callable[..., object], *args: Any) -> None:
    """Run ``callback(*args)`` on the session's event loop, from any thread.

    The call is queued for the document's next tick, so parameter watchers, and
    the widgets that follow them, run on the event loop with ``pn.state.curdoc``
    set. Without a session (``doc`` is None) the callback runs at once, in the
    calling thread. Once the session is gone the call is dropped.
    """
    if doc is None:
        callback(*args)
        return
    try:
        doc.add_next_tick_callback(lambda: callback(*args))
    except Exception:  # the session was destroyed under us: nobody is left to update
        logger.debug("Dropped an update for a destroyed session", exc_info=True)


def set_constant(obj: param.Parameterized, **values: Any) -> None:
    """Set constant parameters of ``obj`` from any thread.

    The edit is serialised with every other one made through this function; the
    watchers of the change run after it, outside the lock.
    """
    with param.parameterized.batch_call_watchers(obj), _constant_edits, param.edit_constant(obj):
        obj.param.update(**values)
