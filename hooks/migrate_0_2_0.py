"""Migration to v0.2.0: the runners' modules moved into the ``<package>.runners`` package.

Copier runs this after an update that crosses v0.2.0 (``_migrations`` in copier.yml),
in the project's folder, with the package name as argument. Until v0.2.0 the
runners' modules stood beside the user's code (``<package>/executors.py``,
``<package>/_sessions.py``, ...); now they are ``<package>/runners/executors.py``
and so on. ``from <package>.runners import ...`` works before and after, but code
that imported one of the moved modules itself would fail with ImportError: this
rewrites those imports, and only those, in the project's own Python files, and
prints each line it changed. Nothing else in a file is touched.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger("copier-panel-threading")

#: The modules that moved from ``<package>/`` into ``<package>/runners/``.
MOVED = ("_sessions", "dask_executor", "executors", "global_runner", "session_runner")


def python_files(package: str) -> list[Path]:
    """The project's Python files that git tracks, less the template's runners and their tests."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.py"], capture_output=True, text=True, check=False
    )
    if listed.returncode == 0:
        paths = [Path(name) for name in listed.stdout.split("\0") if name]
    else:  # not in git: every Python file but those of tools' folders
        paths = [path for path in Path().rglob("*.py") if not {".git", ".venv", "venv"} & set(path.parts)]
    template_owned = (Path(package, "runners"), Path("tests", "runners"))
    return [
        path
        for path in paths
        if path.is_file() and not any(path.is_relative_to(folder) for folder in template_owned)
    ]


def rewriters(package: str, path: Path) -> list[tuple[re.Pattern[str], str]]:
    """The substitutions that turn an import of a moved module into one of its new place."""
    moved = "|".join(MOVED)
    only_moved_names = rf"(\s+import\s+(?:{moved})(?:\s*,\s*(?:{moved}))*\s*)$"
    name = re.escape(package)
    rules = [
        # from package.executors import X; import package.executors; "package.executors.X" in a mock
        (re.compile(rf"(?<![\w.])({name})\.({moved})\b"), r"\1.runners.\2"),
        # from package import executors, _sessions: only when every name imported is a moved module
        (re.compile(rf"^(\s*from\s+){name}{only_moved_names}"), rf"\1{package}.runners\2"),
    ]
    if path.parts[0] == package:  # relative imports, from the file's place in the package
        dots = "." * (len(path.parts) - 1)
        rules += [
            (re.compile(rf"^(\s*from\s+){re.escape(dots)}({moved})\b"), rf"\1{dots}runners.\2"),
            (re.compile(rf"^(\s*from\s+){re.escape(dots)}{only_moved_names}"), rf"\1{dots}runners\2"),
        ]
    return rules


def migrate(package: str) -> int:
    """Rewrite the imports of moved modules; return how many lines changed.

    A line that imports a moved module beside other names (``from . import
    workers, executors``) is left as it is, with a warning that says what to change.
    """
    changed = 0
    mixed = re.compile(rf"^\s*from\s+(\.+|{re.escape(package)})\s+import\s.*\b({'|'.join(MOVED)})\b")
    for path in python_files(package):
        text = path.read_text(encoding="utf-8")
        rules = rewriters(package, path)
        lines = text.splitlines(keepends=True)
        for number, line in enumerate(lines):
            new = line
            for pattern, replacement in rules:
                new = pattern.sub(replacement, new)
            if new == line and (found := mixed.match(line)):
                logger.warning(
                    "%s:%d: %s  <-  import %s from %s.runners yourself",
                    path, number + 1, line.strip(), found.group(2), package,
                )  # fmt: skip
            if new != line:
                logger.info("%s:%d: %s  ->  %s", path, number + 1, line.strip(), new.strip())
                lines[number] = new
                changed += 1
        new_text = "".join(lines)
        if new_text != text:
            path.write_text(new_text, encoding="utf-8")
    return changed


def main(package: str) -> int:
    changed = migrate(package)
    if changed:
        logger.info(
            "v0.2.0 moved the runners' modules into %s/runners/: %d import line(s) above now point there.",
            package,
            changed,
        )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) != 2:
        sys.exit("usage: migrate_0_2_0.py PACKAGE_NAME")
    sys.exit(main(sys.argv[1]))
