"""Say, file by file, what an update left to resolve: unmerged files, conflict markers, .rej files.

Copier runs this at the end of every ``copier update`` (a ``_migrations`` entry without a
version, in copier.yml), in the project's folder. Copier merges the template's new version
into each of its files; where you had edited the same lines, it leaves the file unmerged in
git's index with both versions between conflict markers, or the change it could not apply in
a ``.rej`` file beside it, and exits with status 0 either way. This script finds them and
prints them, with what to do, as warnings on standard error. It never changes a file, and it
exits with status 0, so that a script that updates and then lists the conflicts (the
project's template-update workflow) runs on.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger("copier-panel-threading")

#: A line that opens or closes a conflict: seven of the sign, alone or before a label.
OPENING = re.compile(rb"^<{7}(?: |$)", re.MULTILINE)
CLOSING = re.compile(rb"^>{7}(?: |$)", re.MULTILINE)


def git_files(*args: str) -> list[str]:
    """The paths a ``git`` command lists, NUL-separated; none if git fails (no repository)."""
    result = subprocess.run(["git", *args, "-z"], capture_output=True, check=False)
    if result.returncode != 0:
        return []
    return sorted({name for name in result.stdout.decode().split("\0") if name})


def unmerged() -> list[str]:
    return git_files("diff", "--name-only", "--diff-filter=U")


def with_markers() -> list[str]:
    """The project's files, tracked or not (but not ignored), that hold a conflict."""
    found = []
    for name in git_files("ls-files", "--cached", "--others", "--exclude-standard"):
        path = Path(name)
        if not path.is_file():
            continue
        content = path.read_bytes()
        if b"\0" not in content[:8000] and OPENING.search(content) and CLOSING.search(content):
            found.append(name)
    return found


def rejected() -> list[str]:
    """The .rej files, ignored ones included: a project may ignore ``*.rej``."""
    untracked = git_files("ls-files", "--others", "--exclude-standard")
    ignored = git_files("ls-files", "--others", "--ignored", "--exclude-standard")
    return sorted(name for name in {*untracked, *ignored} if name.endswith(".rej"))


def report() -> int:
    """Log what is left to resolve; return how many files need a look."""
    problems: dict[str, list[str]] = {}
    for name in unmerged():
        problems.setdefault(name, []).append("unmerged in git's index")
    for name in with_markers():
        problems.setdefault(name, []).append("conflict markers <<<<<<< ... >>>>>>> inside")
    for name in rejected():
        problems.setdefault(name, []).append(f"changes the update could not apply to {name[:-4]}")
    if not problems:
        return 0
    lines = [f"  {name}: {'; '.join(why)}" for name, why in sorted(problems.items())]
    logger.warning(
        "\n".join(
            [
                "",
                "!" * 78,
                f"copier update left CONFLICTS in {len(problems)} file(s): the update is not finished.",
                *lines,
                "",
                "You had changed lines that the new release changes too: in a template file, or in",
                "pyproject.toml, which you share with the template.",
                "In each file, keep what you need between <<<<<<< before updating (yours) and",
                ">>>>>>> after updating (the template's) and delete the marker lines; apply a .rej",
                "file's changes by hand, then delete it. Then `git add` the files, run the tests,",
                "and commit. `git diff` shows the rest of the update.",
                "!" * 78,
            ]
        )
    )
    return len(problems)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report()
    sys.exit(0)
