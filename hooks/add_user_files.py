"""Give a project the files of yours that a release adds, once: those it does not have.

Copier runs this after an update that crosses the release that added the files
(``_migrations`` in copier.yml, keyed by that release's version), in the project's folder,
with the template's folder and the files' paths as arguments. A file of yours is written by
``copier copy`` and never by an update (copier.yml's ``_exclude``), so without this an
existing project would never get one that a later release adds. This renders the template
with the project's answers, in a temporary folder, and copies each listed file the project
lacks. A file the project has is left as it is; a file deleted after this ran stays deleted,
as Copier runs a migration once, when an update crosses its version.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

import copier
import yaml

logger = logging.getLogger("copier-panel-threading")

ANSWERS_FILE = ".copier-answers.yml"


def answers() -> dict[str, object]:
    """The project's answers, without Copier's own entries (``_commit``, ``_src_path``)."""
    recorded = yaml.safe_load(Path(ANSWERS_FILE).read_text(encoding="utf-8")) or {}
    return {name: value for name, value in recorded.items() if not name.startswith("_")}


def add_missing(template: str, names: list[str]) -> list[str]:
    """Copy the files of ``names`` that the project lacks from a render of ``template``; return them."""
    missing = [name for name in names if not Path(name).exists()]
    if not missing:
        return []
    with tempfile.TemporaryDirectory(prefix="copier-panel-threading.") as folder:
        rendered = Path(folder, "project")
        copier.run_copy(
            template, str(rendered), data=answers(), vcs_ref="HEAD",
            defaults=True, quiet=True, skip_tasks=True, unsafe=True,
        )  # fmt: skip
        added = []
        for name in missing:
            source = rendered / name
            if not source.is_file():  # not part of this project's variant
                continue
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, name)
            added.append(name)
    return added


def main(template: str, names: list[str]) -> int:
    added = add_missing(template, names)
    for name in added:
        logger.info(
            "Added %s: new in this release, and yours from now on (the template's CHANGELOG.md).", name
        )
    if added:
        logger.info("Review them with `git status`, then commit them, or delete those you do not want.")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) < 3:
        sys.exit("usage: add_user_files.py TEMPLATE_FOLDER FILE...")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
