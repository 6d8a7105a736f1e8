"""Helpers for the template's own tests: copy and render the template, poll, find a free port."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import copier
import pytest

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("session", "global", "both")
#: What a copy of the template needs: copier reads the rest from these.
TEMPLATE_PARTS = ("copier.yml", "includes", "template", "hooks")
#: The interpreter that runs generated projects (another Python line, say); this one by default.
GENERATED_PYTHON = os.environ.get("GENERATED_PYTHON", sys.executable)


def copy_template(dst: Path) -> Path:
    """Copy the template as it is in the working tree, committed or not, to ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for part in TEMPLATE_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, dst / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, dst / part)
    return dst


def render(template: Path, dst: Path, **data: object) -> Path:
    """Render the template into ``dst`` with ``data``, taking defaults for the rest."""
    copier.run_copy(str(template), str(dst), data=data, defaults=True, quiet=True, unsafe=True)
    return dst


def poll(condition: Callable[[], object], timeout: float, message: str) -> None:
    """Return once ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"Not true within {timeout} s: {message}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
