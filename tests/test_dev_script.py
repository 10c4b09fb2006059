"""scripts/dev installs what running the stack needs, not the test and development tools
scripts/bootstrap adds, and hands its arguments to ``reprise dev``. Run against a copy of
the script whose .venv records what it is asked to do."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _recorder(path: Path, log: Path) -> None:
    path.write_text(f'#!/bin/sh\necho "$(basename "$0") $*" >> {log}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _checkout(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "dev", tmp_path / "scripts" / "dev")
    (tmp_path / "server").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "server" / "pyproject.toml").write_text("")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    log = tmp_path / "calls.log"
    _recorder(tmp_path / ".venv" / "bin" / "python", log)
    _recorder(tmp_path / ".venv" / "bin" / "reprise", log)
    return log


def _run(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    subprocess.run([str(tmp_path / "scripts" / "dev"), "--port", "8123"], check=True,
                   capture_output=True, text=True, timeout=30, env=dict(os.environ))
    return log.read_text().splitlines()


def test_scripts_dev_installs_the_server_without_its_dev_extra(tmp_path: Path) -> None:
    _checkout(tmp_path)
    calls = _run(tmp_path)
    assert len(calls) == 2, calls
    assert calls[0].startswith("python -m pip install")
    assert calls[0].split()[-4:] == ["-e", ".", "-e", "./server"]
    assert "[dev]" not in calls[0]
    assert calls[1] == "reprise dev --port 8123"
    # Nothing to install the second time.
    assert _run(tmp_path) == ["reprise dev --port 8123"]


def test_scripts_dev_installs_nothing_after_scripts_bootstrap(tmp_path: Path) -> None:
    _checkout(tmp_path)
    time.sleep(0.01)
    (tmp_path / ".venv" / ".reprise-installed").touch()  # bootstrap's: a superset
    assert _run(tmp_path) == ["reprise dev --port 8123"]


def test_scripts_dev_reinstalls_when_a_pyproject_changes(tmp_path: Path) -> None:
    _checkout(tmp_path)
    _run(tmp_path)
    later = time.time() + 5
    os.utime(tmp_path / "server" / "pyproject.toml", (later, later))
    assert _run(tmp_path)[0].startswith("python -m pip install")
