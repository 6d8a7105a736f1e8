"""The generated README's set-up commands work as written, in a fresh virtual environment."""

from __future__ import annotations

import subprocess

import pytest

from support import render

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("executor", ["thread", "dask"])
def test_install_and_test_commands_work_as_written(template, tmp_path, executor):
    project = render(template, tmp_path / "app", threading="both", executor=executor)
    readme = (project / "README.md").read_text()
    block = readme.split("## Install, serve, test", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("  #")[0].strip() for line in block.splitlines()]
    assert "panel serve app.py --dev" in commands  # a server runs until stopped: checked by test_serve.py
    script = " && ".join(command for command in commands if not command.startswith("panel serve"))
    result = subprocess.run(["bash", "-c", script], cwd=project, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert " passed" in result.stdout
