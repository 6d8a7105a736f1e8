"""What a worker may raise or return, for the runners' fault-injection tests.

Each fault is a task name; ``faulty(task)`` raises or returns that fault, and
returns any other task as it is. A module of its own, so that Dask workers, in
processes too, can import the worker by name (and ``server_libraries`` tells what
such a process has loaded).
"""

import importlib
import sys
import threading
from pathlib import Path


class UnprintableError(Exception):
    """An exception whose message cannot be shown: its ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")


class Opaque:
    """A result that cannot be compared, hashed, printed or tested for truth."""

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        raise TypeError("an Opaque cannot be compared")

    def __repr__(self) -> str:
        raise TypeError("an Opaque cannot be printed")

    __str__ = __repr__

    def __bool__(self) -> bool:
        raise TypeError("an Opaque is neither true nor false")


#: Exceptions a worker may raise, by task name, and the class the runner reports.
RAISED: dict[str, tuple[type[BaseException], ...]] = {
    "ValueError": (ValueError,),
    "SystemExit": (SystemExit,),
    "KeyboardInterrupt": (KeyboardInterrupt,),
    "GeneratorExit": (GeneratorExit,),
    "unprintable exception": (UnprintableError,),
    "exception of a reloaded module": (Exception,),
}
#: Results a worker may return that are no ordinary values.
RETURNED = ("opaque result",)
FAULTS = (*RAISED, *RETURNED)

#: The module that ``reload_module_of_stale_error`` writes, imports and re-imports.
STALE_MODULE = "reloaded_errors"


def reload_module_of_stale_error(folder: Path) -> None:
    """Write a module with an exception class, import it, keep the class, re-import the module.

    Afterwards ``faulty("exception of a reloaded module")`` raises an instance of
    the class of the module's first import, as a worker does after ``panel serve
    --dev`` re-imported its module.
    """
    (folder / f"{STALE_MODULE}.py").write_text("class WorkerError(Exception):\n    pass\n")
    sys.path.insert(0, str(folder))
    try:
        importlib.invalidate_caches()
        module = importlib.import_module(STALE_MODULE)
        _STALE.append(module.WorkerError)
        importlib.reload(module)
    finally:
        sys.path.remove(str(folder))


_STALE: list[type[Exception]] = []


def faulty(task: str) -> object:
    """Raise or return the fault named ``task``; return any other task as it is."""
    if task == "ValueError":
        raise ValueError("a bad task")
    if task == "SystemExit":
        sys.exit(2)  # as argparse or click do on bad arguments
    if task == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if task == "GeneratorExit":
        raise GeneratorExit
    if task == "unprintable exception":
        raise UnprintableError
    if task == "exception of a reloaded module":
        raise _STALE[-1]("raised with the class of the module's first import")
    if task == "opaque result":
        return Opaque()
    if task == "unpicklable result":  # a Dask worker process cannot send it back
        return threading.Lock()
    return task


def server_libraries(task: object, control: object) -> list[str]:
    """The libraries of the server, Panel's and Bokeh's, that the calling process has loaded."""
    return sorted(name for name in ("panel", "bokeh") if name in sys.modules)


_FAULTED: set[str] = set()


def fault_once(fault: str) -> object:
    """A global worker: meets ``fault`` on its first call in this process, returns "next" after."""
    if fault in _FAULTED:
        return "next"
    _FAULTED.add(fault)
    return faulty(fault)
