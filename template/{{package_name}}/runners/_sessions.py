"""Tie background threads to the Panel session that created them.

Template-owned: ``copier update`` brings fixes to this file.

A runner is built while Panel renders a session, on the server's event loop, but
it changes its parameters from a thread of its own, where ``pn.state.curdoc`` is
None. The helpers below capture the session's document while it is known, use it
later to run code back on the session's event loop, set constant parameters
safely from any thread, and keep the process's runner state across ``--dev``
reloads. ``scope_watchers_to_sessions`` ties what a session binds to an object
shared by all sessions to that session. Two more let Ctrl+C stop ``panel
serve`` cleanly and keep failed writes to pages that have gone out of the errors.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import panel as pn
import param
from param.parameterized import Watcher

if TYPE_CHECKING:
    from bokeh.document import Document

logger = logging.getLogger(__name__)

_State = TypeVar("_State")

_process_state_creation = threading.Lock()

#: Where ``stop_loop_on_ctrl_c`` notes, in ``pn.state.cache``, the loop it stops.
CTRL_C_KEY = f"{__name__}.ctrl_c"

#: Where ``process_state`` keeps, in ``pn.state.cache``, the hooks to run as the process exits.
EXIT_HOOKS_KEY = f"{__name__}.exit_hooks"

# param.edit_constant makes the parameters of the object's whole class editable,
# then constant again on exit: two threads doing it at once undo each other.
_constant_edits = threading.RLock()

#: Per class: the parameters whose value may be stored without an update, when nothing watches them.
_plain_parameters: weakref.WeakKeyDictionary[type, dict[str, param.Parameter]] = weakref.WeakKeyDictionary()
_MISSING = object()


def process_state(
    key: str,
    make: Callable[[], _State],
    at_exit: Callable[[_State], object] | None = None,
    *,
    last: bool = False,
) -> _State:
    """Return the process's object under ``key`` in ``pn.state.cache``, made on first use.

    ``pn.state.cache`` outlives the re-import of the package under ``panel serve
    --dev``, so a reloaded module finds the threads its previous version started.
    When the object is made, ``at_exit(state)``, if given, is registered to run
    once as the process exits, by ``run_exit_hooks()``: the last registered first,
    but a hook registered with ``last=True`` after every other (the Dask client,
    which the runners' last calls still use).
    """
    with _process_state_creation:
        state = pn.state.cache.get(key)
        if state is None:
            state = pn.state.cache[key] = make()
            if at_exit is not None:
                hooks, hook = _exit_hooks(), partial(at_exit, state)
                if last:
                    hooks.insert(0, hook)
                else:
                    hooks.append(hook)
    return state


def _exit_hooks() -> list[Callable[[], object]]:
    """The process's exit hooks; the first call registers ``run_exit_hooks`` with atexit."""
    hooks = pn.state.cache.get(EXIT_HOOKS_KEY)
    if hooks is None:
        hooks = pn.state.cache[EXIT_HOOKS_KEY] = []
        atexit.register(run_exit_hooks)
    return hooks


def run_exit_hooks() -> None:
    """Run the exit hooks registered by ``process_state``, in its order, each once.

    Runs at exit, or earlier on Ctrl+C (``stop_loop_on_ctrl_c``): by the time
    atexit runs, Python has shut down its thread pools, and a Dask scheduler that
    still handles a call fails with "cannot schedule new futures after shutdown".
    """
    while True:
        with _process_state_creation:
            hooks = pn.state.cache.get(EXIT_HOOKS_KEY) or []
            if not hooks:
                return
            hook = hooks.pop()
        try:
            hook()
        except Exception:  # the other hooks still run
            logger.exception("An exit hook failed")


def stop_loop_on_ctrl_c() -> None:
    """Make Ctrl+C stop the server's event loop between two of its callbacks.

    Call it while a session renders. By default Ctrl+C raises KeyboardInterrupt
    wherever the main thread is: inside a request handler, Bokeh's shutdown raises
    it once more, and ``panel serve`` exits with a traceback and no clean stop.
    ``pn.serve`` already stops its loop on SIGINT; this does the same for ``panel
    serve``, once per process, and first stops the runners and what they use
    (``run_exit_hooks``) while Python is still whole. A second Ctrl+C interrupts
    at once, as usual.

    Nothing is changed unless this runs in the main thread, on a running event
    loop, with Python's own SIGINT handler in place, outside a notebook kernel: a
    kernel, a server in a thread and ``pn.serve`` keep their handling.
    """
    if threading.current_thread() is not threading.main_thread() or "ipykernel" in sys.modules:
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    process_state(CTRL_C_KEY, lambda: _stop_on_sigint(loop))


def quiet_writes_to_closed_pages() -> None:
    """Log Panel's failed writes to a page that has gone at debug level, not as errors.

    Call it while a session renders. When a page reloads or closes while Panel
    sends it an update, Panel may leave the failed write unawaited, and asyncio
    then logs "Task exception was never retrieved" with Tornado's
    ``WebSocketClosedError`` and its traceback (holoviz/panel#3341). Nothing is
    lost: the page is gone. Every other error goes to the event loop's own
    handler, as before. Done once per event loop.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    previous = loop.get_exception_handler()
    if getattr(previous, "quiets_closed_pages", False):
        return
    loop.set_exception_handler(_ClosedPageWrites(previous))


#: An asyncio event loop's exception handler, as ``loop.set_exception_handler`` takes it.
_ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


class _ClosedPageWrites:
    """An event loop's exception handler that drops failed writes to closed websockets."""

    quiets_closed_pages = True

    def __init__(self, previous: _ExceptionHandler | None) -> None:
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
    def stop() -> None:
        logger.info("Ctrl+C: stopping the server")
        run_exit_hooks()
        loop.stop()

    def interrupted(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next Ctrl+C interrupts
        loop.call_soon_threadsafe(stop)

    signal.signal(signal.SIGINT, interrupted)
    return loop


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
    set. The server's loop adds it to the document: Bokeh's documents are not
    safe to change from another thread while a session is being created. Without
    a session (``doc`` is None) the callback runs at once, in the calling thread.
    Once the session is gone the call is dropped.
    """
    if doc is None:
        callback(*args)
        return
    loop = server_loop(doc)
    if loop is None:  # no server to hand it to (a notebook, pyodide): the document takes it
        next_tick_in_session(doc, callback, *args)
    else:
        loop.add_callback(next_tick_in_session, doc, callback, *args)


def server_loop(doc: Document) -> Any:
    """The event loop of the server that serves ``doc`` (a Tornado IOLoop), or None."""
    try:
        return doc.session_context.server_context.application_context.io_loop  # type: ignore[union-attr]
    except AttributeError:  # no session any more, or not a Bokeh server's
        return None


def next_tick_in_session(doc: Document, callback: Callable[..., object], *args: Any) -> None:
    """Run ``callback(*args)`` on the session's next tick, or drop it if the session ended.

    Call it on the event loop that serves ``doc``; ``call_in_session`` hands it there from any thread.
    """
    try:
        doc.add_next_tick_callback(partial(callback, *args))
    except Exception:  # the session was destroyed under us: nobody is left to update
        logger.debug("Dropped an update for a destroyed session", exc_info=True)


class _SessionWatchers:
    """The watchers that sessions added to one shared object, and the calls on their way."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: id(added) -> (the watcher added, the one registered in its place, id(its document))
        self.scoped: dict[int, tuple[Watcher, Watcher, int]] = {}
        #: id(document) -> ids of the watchers its session added
        self.by_session: dict[int, set[int]] = {}
        #: id(document) -> the latest call of each of its watchers, while a delivery is scheduled
        self.pending: dict[int, dict[int, tuple[Watcher, tuple[Any, ...], dict[str, Any]]]] = {}


class _SessionScopedParameters(param.parameterized.Parameters):
    """``obj.param`` of a shared object: a watcher added in a session belongs to that session.

    Every binding goes through here: ``obj.param.watch``, ``pn.bind``,
    ``pn.depends``, ``.rx`` and the widgets of a pane that shows ``obj``. A
    watcher added while a session is current runs on that session's event loop,
    never in the thread that changed the parameter, and it is removed when the
    session is destroyed: no callback of a destroyed session ever runs.
    """

    def __init__(self_, cls: type[param.Parameterized], self: param.Parameterized, owner: str | None) -> None:
        super().__init__(cls, self=self)
        self_._owner = owner

    def _register_watcher(self_, action: str, watcher: Watcher, what: str = "value") -> None:
        if self_.self is not None:
            watcher = _scoped_watcher(self_.self, self_._owner, action, watcher)
        super()._register_watcher(action, watcher, what)


class _SessionScopedNamespace:
    """The ``param`` attribute of a class whose instances' watchers are scoped to sessions."""

    def __init__(self, owner: str | None) -> None:
        self.owner = owner

    def __get__(self, obj: param.Parameterized | None, objtype: type[param.Parameterized]) -> Any:
        if obj is None:
            return objtype._param__parameters
        return _SessionScopedParameters(objtype, obj, self.owner)


def scope_watchers_to_sessions(cls: type[param.Parameterized], owner: str | None = None) -> None:
    """Tie what each session binds to an instance of ``cls`` to that session.

    For objects that sessions share (a global runner, or a session's runner that
    user code hands to other sessions). A watcher that a session adds, however it
    is added, runs on that session's event loop and is removed when the session
    ends. Left as they are: watchers added outside any session; those added in the
    session whose document the instance's attribute ``owner`` names (they go with
    the instance); and those whose function is a method of an object with
    ``_session_safe = True``, which hands each change to its session itself.
    """
    cls.param = _SessionScopedNamespace(owner)  # type: ignore[assignment]


def _scoped_watcher(obj: param.Parameterized, owner: str | None, action: str, watcher: Watcher) -> Watcher:
    """The watcher to register in place of ``watcher``, or to unregister for it."""
    with _process_state_creation:
        state = obj.__dict__.setdefault("_session_watchers", _SessionWatchers())
    with state.lock:
        if action != "append":
            if (found := state.scoped.pop(id(watcher), None)) is None:
                return watcher
            _, registered, doc_id = found
            state.by_session.get(doc_id, set()).discard(id(watcher))
            return registered
        doc = current_session_document()
        if (
            doc is None
            or (owner is not None and doc is getattr(obj, owner, None))
            or getattr(getattr(watcher.fn, "__self__", None), "_session_safe", False)
        ):
            return watcher
        registered = watcher._replace(fn=partial(_deliver, obj, state, doc, watcher))
        state.scoped[id(watcher)] = (watcher, registered, id(doc))
        added = state.by_session.get(id(doc))
        if added is None:
            added = state.by_session[id(doc)] = set()
            on_session_end(doc, partial(_end_session, obj, state, doc))
        added.add(id(watcher))
    return registered


def _deliver(
    obj: param.Parameterized,
    state: _SessionWatchers,
    doc: Document,
    watcher: Watcher,
    *args: Any,
    **kwargs: Any,
) -> None:
    """Hand a call of a session's watcher to the session's event loop, from any thread.

    Calls wait for the session's next tick together, one delivery at a time per
    session, and a watcher called again before then gets only its latest call:
    however often the object changes, a session is never sent more than it can
    take, and its queue never keeps it from ending.
    """
    with state.lock:
        if id(watcher) not in state.scoped:
            return
        calls = state.pending.get(id(doc))
        scheduled = calls is not None
        if not scheduled:
            calls = state.pending[id(doc)] = {}
        calls[id(watcher)] = (watcher, args, kwargs)
    if not scheduled:
        call_in_session(doc, _run_delivery, obj, state, id(doc))


def _run_delivery(obj: param.Parameterized, state: _SessionWatchers, doc_id: int) -> None:
    """On the session's event loop: run the calls waiting for it, of watchers still registered."""
    with state.lock:
        calls = state.pending.pop(doc_id, {})
    for key, (watcher, args, kwargs) in calls.items():
        with state.lock:
            registered = key in state.scoped
        if not registered:
            continue
        try:
            watcher.fn(*args, **kwargs)
        except Exception:  # one binding's error must not keep the others from their update
            logger.exception("A callback bound to %s failed", type(obj).__name__)


def _end_session(obj: param.Parameterized, state: _SessionWatchers, doc: Document) -> None:
    with state.lock:
        added = [state.scoped[key][0] for key in state.by_session.pop(id(doc), ()) if key in state.scoped]
        state.pending.pop(id(doc), None)
    for watcher in added:
        obj.param.unwatch(watcher)


def set_constant(obj: param.Parameterized, **values: Any) -> None:
    """Set constant parameters of ``obj`` from any thread.

    The edit is serialised with every other one made through this function; the
    watchers of the change run after it, outside the lock. Only the parameters
    being set are made editable for the while (``param.edit_constant`` would
    toggle every parameter of the class, which costs more than the update).
    """
    _set(obj, values, validate=True)


def show(obj: param.Parameterized, values: dict[str, Any]) -> None:
    """Set constant parameters of ``obj`` to values its own code computed, from any thread.

    As ``set_constant``, but a parameter that nothing watches takes its value as
    it is, unvalidated and without the machinery of an update: with no watcher,
    no method depending on it and no reference, there is no event to send, and a
    runner's bookkeeping for a task costs a fraction of what updates would.
    """
    _set(obj, values, validate=False)


def _set(obj: param.Parameterized, values: dict[str, Any], validate: bool) -> None:
    values = _store_unwatched(obj, values, validate)
    if not values:
        return
    with param.parameterized.batch_call_watchers(obj), _constant_edits:
        own = obj._param__private.params  # the instance's copies of parameters, if any
        cls_params = type(obj).param
        editable = [
            parameter
            for name in values
            for parameter in (cls_params[name], own.get(name))
            if parameter is not None and parameter.constant
        ]
        for parameter in editable:
            parameter.constant = False
        try:
            for name, value in values.items():  # param.update would read every value first
                setattr(obj, name, value)
        finally:
            for parameter in editable:
                parameter.constant = True
            for name in values:  # an update may have copied a parameter to the instance meanwhile
                if (copied := own.get(name)) is not None and cls_params[name].constant is not copied.constant:
                    copied.constant = cls_params[name].constant


def _store_unwatched(obj: param.Parameterized, values: dict[str, Any], validate: bool) -> dict[str, Any]:
    """Store the values of parameters that nothing watches; return the others, to be set as usual.

    A value stored here has the effect an update would have: nothing watches the
    parameter (no watcher of it, no reference, and the class has no method that
    watches), so no event is due. Values are taken in order: from the first one
    to be set as usual, the rest are too, so that a thread reading the last
    value (a count) finds the values before it in place.
    """
    cls = type(obj)
    plain = _plain_parameters.get(cls)
    if plain is None:
        plain = _plain_parameters[cls] = _parameters_set_plainly(cls)
    private = obj._param__private
    watched, copies, stored = private.watchers, private.params, private.values
    if not (watched or copies) and values.keys() <= plain.keys():  # the usual case, in one step
        if validate:
            for name, value in values.items():
                plain[name]._validate(value)
        stored.update(values)
        return {}
    others = {}
    for name, value in values.items():
        parameter = plain.get(name)
        if parameter is not None:
            parameter = copies.get(name, parameter)  # an instance's copy may have its own bounds
        if others or parameter is None or (name in watched and _watched(watched[name], parameter)):
            others[name] = value
        elif stored.get(name, _MISSING) is not value:
            if validate:
                parameter._validate(value)
            stored[name] = value
    return others


def _watched(watchers: dict[str, list[Watcher]], parameter: param.Parameter) -> bool:
    """Whether an update of ``parameter`` would call a watcher, given its instance's ``watchers`` of it."""
    # As param does: the parameter's own watchers of the value count unless the instance has a list.
    return any(watchers.values()) or ("value" not in watchers and bool(parameter.watchers.get("value")))


def _parameters_set_plainly(cls: type[param.Parameterized]) -> dict[str, param.Parameter]:
    """The parameters of ``cls`` whose update does no more than store the value, when nothing watches."""
    if cls._param__parameters._depends["watch"]:  # a method that watches may depend on any of them
        return {}
    return {
        name: parameter
        for name, parameter in cls._param__private.params.items()
        if not (parameter.readonly or parameter.allow_refs)
        and type(parameter)._post_setter is param.Parameter._post_setter
    }
