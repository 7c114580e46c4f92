"""The batch files and their shell twins: thin, consistent, and calling real scripts and flags."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, fake_venv, run_script

# What the original design says each step runs (docs/ARCHITECTURE.md, The original design).
SPEC_COMMANDS = {
    "1_prepare_anime": "prepare_dataset.py --count 3000",
    "2_load_users": "load_users.py --min-anime 20",
    "3_train_model": "train_model.py --epochs 200 --batch-size 64",
    "3_train_model_gpu": "train_model.py --epochs 200 --batch-size 64 --gpu",
}
# What a launcher adds to the original design's command: training carries on after an interruption.
ADDED = {"3_train_model": "--resume auto", "3_train_model_gpu": "--resume auto"}
STEP_CALL = re.compile(r"scripts[\\/]step\.(?:bat|sh)\"?\s+(\S+\.py)((?:\s+[^%\"$\s]\S*)*)")


def launcher_names() -> list[str]:
    return sorted(p.stem for p in ROOT.glob("*.bat"))


def python_calls(path: Path) -> list[tuple[str, list[str]]]:
    """(script, fixed arguments) of every project script a launcher runs."""
    calls = []
    for line in path.read_text(encoding="utf-8").splitlines():
        for match in STEP_CALL.finditer(line):
            calls.append((match.group(1), shlex.split(match.group(2))))
    return calls


def test_every_bat_has_a_sh_twin_running_the_same_scripts():
    names = launcher_names()
    assert {"setup", "run_all", "demo", *SPEC_COMMANDS} <= set(names)
    for name in names:
        sh = ROOT / f"{name}.sh"
        assert sh.is_file(), f"{name}.bat has no {name}.sh twin"
        assert os.access(sh, os.X_OK), f"{sh.name} is not executable"
        assert python_calls(ROOT / f"{name}.bat") == python_calls(sh)


def test_bat_files_use_crlf_and_stop_on_errors():
    for name in launcher_names():
        raw = (ROOT / f"{name}.bat").read_bytes()
        assert raw.count(b"\n") == raw.count(b"\r\n"), f"{name}.bat must use CRLF line ends"
        text = raw.decode("utf-8")
        assert text.startswith("@echo off")
        assert "exit /b" in text, f"{name}.bat must hand its exit code back"


@pytest.mark.parametrize("name", sorted(SPEC_COMMANDS))
def test_steps_run_the_spec_command(name):
    expected = SPEC_COMMANDS[name].split() + ADDED.get(name, "").split()
    for ext in ("bat", "sh"):
        (script, args), *_ = python_calls(ROOT / f"{name}.{ext}")
        assert [script, *args] == expected, f"{name}.{ext}"


def test_every_called_script_exists_and_accepts_its_flags():
    seen = set()
    for launcher in [*ROOT.glob("*.bat"), *ROOT.glob("*.sh")]:
        for script, args in python_calls(launcher):
            assert (ROOT / script).is_file(), f"{launcher.name} calls missing {script}"
            seen.add((script, tuple(args)))
    helps = {}
    for script, args in sorted(seen):
        if script not in helps:
            result = run_script(script, "--help", timeout=120)
            assert result.returncode == 0, result.stderr
            helps[script] = result.stdout
        for flag in (a for a in args if a.startswith("--")):
            assert re.search(rf"{re.escape(flag)}\b", helps[script]), f"{script} lacks {flag}"


@pytest.fixture
def fake_project(tmp_path):
    """A copy of the launchers with a .venv whose python is this interpreter."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    for sh in ROOT.glob("*.sh"):
        shutil.copy2(sh, tmp_path / sh.name)
    fake_venv(tmp_path)
    return tmp_path


def test_step_sh_passes_extra_arguments_and_exit_code(fake_project):
    (fake_project / "prepare_dataset.py").write_text(
        "import sys\nprint('ARGS', sys.argv[1:])\nsys.exit(3)\n"
    )
    out = subprocess.run(
        [str(fake_project / "1_prepare_anime.sh"), "--api-url", "http://x"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert "ARGS ['--count', '3000', '--api-url', 'http://x']" in out.stdout
    assert out.returncode == 3
    assert "prepare_dataset.py stopped with exit code 3" in out.stderr


def test_step_sh_without_venv_says_run_setup(fake_project):
    shutil.rmtree(fake_project / ".venv")
    out = subprocess.run([str(fake_project / "2_load_users.sh")], capture_output=True, text=True)
    assert out.returncode == 1
    assert "Run ./setup.sh first" in out.stderr


def test_demo_and_run_all_demo_pass_the_demo_options_on(fake_project):
    (fake_project / "demo.py").write_text("import sys\nprint('DEMO', sys.argv[1:])\n")
    for command in (["demo.sh"], ["run_all.sh", "--demo"]):
        out = subprocess.run(
            [str(fake_project / command[0]), *command[1:], "--epochs", "5", "--users", "90"],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        assert "DEMO ['--epochs', '5', '--users', '90']" in out.stdout, command


def test_run_all_bat_hands_what_follows_demo_to_demo_py():
    """cmd cannot run here: read how run_all.bat collects the options after --demo (a loop
    of `shift /1`, which keeps %0, appending %1) and hands them to demo.py."""
    text = (ROOT / "run_all.bat").read_text(encoding="utf-8")
    loop = re.search(
        r":next_demo_arg\r?\n(?:rem .*\r?\n)*shift /1\r?\nif \"%~1\"==\"\" goto :run_demo\r?\n"
        r"set DEMO_ARGS=%DEMO_ARGS% %1\r?\ngoto :next_demo_arg",
        text,
    )
    assert loop, "run_all.bat lost its loop over the options after --demo"
    assert re.search(r"step\.bat\"? demo\.py %DEMO_ARGS%", text)


def test_run_all_refuses_options_it_would_drop(fake_project):
    (fake_project / "prepare_dataset.py").write_text("print('stage 1 ran')\n")
    out = subprocess.run(
        [str(fake_project / "run_all.sh"), "--epochs", "5"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "stage 1 ran" not in out.stdout
    assert "run_all takes no options but --demo" in out.stderr
    bat = (ROOT / "run_all.bat").read_text(encoding="utf-8")
    assert 'if not "%~1"=="" goto :usage' in bat and "run_all takes no options" in bat


def test_run_all_sh_stops_at_the_first_failed_stage(fake_project):
    (fake_project / "prepare_dataset.py").write_text("print('stage 1 ran')\n")
    (fake_project / "load_users.py").write_text("import sys\nsys.exit(2)\n")
    (fake_project / "train_model.py").write_text("print('stage 3 ran')\n")
    out = subprocess.run([str(fake_project / "run_all.sh")], capture_output=True, text=True)
    assert out.returncode == 1
    assert "stage 1 ran" in out.stdout and "stage 3 ran" not in out.stdout
    assert "run_all stopped" in out.stderr
