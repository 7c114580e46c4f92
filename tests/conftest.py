"""Shared test helpers: the repository root and a way to run the CLIs as a user would."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A shell that starts the tests in the background (`./test.sh &`) leaves SIGINT ignored, and an
# ignored signal stays ignored in every child: the Ctrl-C tests would wait on scripts that cannot
# be interrupted. A handler here makes the children start with Python's usual Ctrl-C.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _script_env(env: dict | None) -> dict:
    full_env = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    return full_env


def run_script(
    script: str,
    *args: str,
    cwd: Path | None = None,
    env: dict | None = None,
    timeout: float = 300,
    stdin: int | None = None,
) -> subprocess.CompletedProcess:
    """Run one of the top-level scripts in a subprocess, the way the batch files do; `stdin` a
    file descriptor to read from (a terminal's, say) instead of the tests' own."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd or ROOT,
        env=_script_env(env),
        stdin=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def start_script(
    script: str, *args: str, cwd: Path | None = None, env: dict | None = None
) -> subprocess.Popen:
    """Start a top-level script without waiting for it (to kill it mid-run, say); read its
    output with communicate()."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd or ROOT,
        env=_script_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


@pytest.fixture
def script_runner():
    return run_script


def plain_checkout(copy: Path) -> Path:
    """The repository's files as a fresh clone has them (the tracked ones, and new ones not yet
    committed), copied into `copy`: no .venv, no installed project, no data."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


def fake_venv(project: Path) -> None:
    """A `.venv/bin/python` in `project` that runs this interpreter with its packages (a symlink
    would lose them: Python finds its environment from where the link lies)."""
    python = project / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
