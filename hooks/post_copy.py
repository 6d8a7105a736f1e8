"""Give a newly copied project a git repository and a first commit.

Copier runs this script after ``copier copy`` (``_tasks`` in copier.yml; never on an
update), in the project's folder, with the author's name and e-mail as arguments.
``copier update`` needs a committed project, so a new project outside any git repository
gets ``git init`` and a first commit. Inside an existing work tree (a project copied into
a monorepo) it does nothing: that repository's history is not the template's to touch.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

logger = logging.getLogger("copier-panel-threading")

FIRST_COMMIT_MESSAGE = "Start from the copier-panel-threading template"


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)


def main(author_name: str, author_email: str) -> int:
    if shutil.which("git") is None:
        logger.warning("git is not installed: run `git init` and commit before `copier update`.")
        return 0
    if git("rev-parse", "--is-inside-work-tree").stdout.strip() == "true":
        return 0
    # Use the answers as the committer only where git has no identity of its own.
    identity = []
    if not git("config", "user.name").stdout.strip():
        identity += ["-c", f"user.name={author_name}"]
    if not git("config", "user.email").stdout.strip():
        identity += ["-c", f"user.email={author_email}"]
    commit = [*identity, "commit", "--quiet", "-m", FIRST_COMMIT_MESSAGE]
    for args in (["init", "--quiet"], ["add", "--all"], commit):
        result = git(*args)
        if result.returncode != 0:
            logger.error("git %s failed: %s", " ".join(args), result.stderr.strip())
            return result.returncode
    logger.info("Made a git repository with a first commit: `copier update` can pull template fixes.")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) != 3:
        sys.exit("usage: post_copy.py AUTHOR_NAME AUTHOR_EMAIL")
    sys.exit(main(*sys.argv[1:]))
