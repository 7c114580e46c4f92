"""Every command a message prints works as typed: rendered by bert4rec/commands.py for the user's
system, naming a file that exists and flags that file accepts; none written by hand."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, run_script
from test_launchers import python_calls

from bert4rec import commands

# A command written into a string by hand: `python X.py`, `python -m X`, `./X.sh`, `X.bat`.
HAND_WRITTEN = re.compile(
    r"(?<![\w/.\\-])(?:python3?(?:\.exe)? +(?:-m +\S+|\S+\.py)|\.[/\\]\w+\.(?:sh|bat)|"
    r"\w+\.(?:sh|bat))\b"
)
EXTRA_FLAGS = {"run_all": {"--demo"}}  # what a launcher reads itself rather than passing on
# Calls whose script is computed: the demo prints each stage it runs as it runs it (the demo's
# own test runs them all).
COMPUTED = {("demo.py", "python")}


def source_files() -> list[Path]:
    """The code whose messages users read: the scripts, the package and the benchmarks."""
    return [*ROOT.glob("*.py"), *(ROOT / "bert4rec").glob("*.py"), *(ROOT / "bench").glob("*.py")]


def message_strings(tree: ast.AST) -> list[ast.Constant]:
    """The string constants of a module but its docstrings (which show usage to readers of the
    code, not messages)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    ]  # fmt: skip


def hand_written_commands(source: str) -> list[str]:
    return [
        match.group(0)
        for node in message_strings(ast.parse(source))
        for match in HAND_WRITTEN.finditer(node.value)
    ]


def rendered_commands(source: str) -> list[tuple[str, list[str | None]]]:
    """(helper, arguments) of every commands.launcher / commands.python call: each literal
    argument as written, None for one computed at run time."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "commands"
            and node.func.attr in ("launcher", "python")
        ):
            arguments = [
                a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None
                for a in node.args
            ]
            calls.append((node.func.attr, arguments))
    return calls


def all_rendered_commands() -> list[tuple[str, str, list[str | None]]]:
    return [
        (path.name, helper, arguments)
        for path in source_files()
        for helper, arguments in rendered_commands(path.read_text(encoding="utf-8"))
    ]


_helps: dict[str, str] = {}


def help_of(script: str) -> str:
    if script not in _helps:
        result = run_script(script, "--help", timeout=120)
        assert result.returncode == 0, f"{script} --help failed: {result.stderr[-2000:]}"
        _helps[script] = result.stdout
    return _helps[script]


def accepts(script: str, flag: str) -> bool:
    return re.search(rf"{re.escape(flag)}\b", help_of(script)) is not None


# --- rendering -----------------------------------------------------------------------------------


def test_launchers_and_the_environment_python_for_each_system():
    assert commands.launcher("4_recommend", "--user", "Alice", windows=True) == (
        ".\\4_recommend.bat --user Alice"
    )
    assert commands.launcher("4_recommend", "--user", "Alice", windows=False) == (
        "./4_recommend.sh --user Alice"
    )
    path = os.path.join("output", "checkpoints", "checkpoint_epoch_10.pth")
    assert commands.python("train_model.py", "--resume", path, windows=False) == (
        f".venv/bin/python train_model.py --resume {path}"
    )
    assert commands.python("-m", "bert4rec.simulator", windows=True) == (
        ".venv\\Scripts\\python -m bert4rec.simulator"
    )
    with pytest.raises(ValueError, match="no launcher named"):
        commands.launcher("5_nothing")


@pytest.mark.parametrize(
    ("word", "windows", "typed"),
    [
        ("My Models\\out", True, '"My Models\\out"'),
        ("@alice", True, '"@alice"'),  # PowerShell would splat an unquoted @name
        ("a&b", True, '"a&b"'),
        ("", True, '""'),
        ("C:\\data\\bert.db", True, "C:\\data\\bert.db"),
        ("my models/out", False, "'my models/out'"),
        ("output/checkpoint_epoch_2.pth", False, "output/checkpoint_epoch_2.pth"),
    ],
)  # fmt: skip
def test_arguments_are_quoted_for_the_shell_that_reads_them(word, windows, typed):
    assert commands.quote(word, windows=windows) == typed


def test_every_named_launcher_exists_with_its_twin():
    for name in commands.LAUNCHERS:
        assert (ROOT / f"{name}.bat").is_file(), f"{name}.bat"
        assert os.access(ROOT / f"{name}.sh", os.X_OK), f"{name}.sh"


@pytest.mark.skipif(os.name == "nt", reason="runs the POSIX form through sh")
def test_a_rendered_command_runs_as_typed_in_the_project_folder():
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv here (setup makes it)")
    for typed in (commands.python("recommend.py", "--help"), commands.launcher("demo", "--help")):
        result = subprocess.run(
            typed, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (typed, result.stderr[-2000:])
        assert "usage:" in result.stdout, typed


# --- what the code prints ------------------------------------------------------------------------


def test_the_scan_finds_a_hand_written_command():
    source = (
        'x = f"Resume with: python train_model.py --resume {p}"\n'
        'y = "run ./2_load_users.sh --discover 5"\n'
        'z = "or 3_train_model.bat"\n'
        'def f():\n    """python recommend.py --user NAME (usage in a docstring is fine)"""\n'
    )
    assert sorted(hand_written_commands(source)) == [
        "./2_load_users.sh",
        "3_train_model.bat",
        "python train_model.py",
    ]
    assert rendered_commands("commands.launcher('4_recommend', '--user', name)") == [
        ("launcher", ["4_recommend", "--user", None])
    ]


def test_no_message_writes_a_command_by_hand():
    found = {
        path.relative_to(ROOT).as_posix(): hand_written_commands(path.read_text(encoding="utf-8"))
        for path in source_files()
    }
    assert {path: hits for path, hits in found.items() if hits} == {}, (
        "render these with bert4rec/commands.py (launcher or python)"
    )


def test_every_rendered_command_names_a_file_and_flags_it_accepts():
    calls = all_rendered_commands()
    assert len(calls) >= 20, "the scan lost the calls of bert4rec/commands.py"
    for where, helper, arguments in calls:
        first, *rest = arguments
        if (where, helper) in COMPUTED:
            continue
        assert first is not None, f"{where}: {helper}() must name its launcher or script literally"
        flags = [a for a in rest if a and a.startswith("--")]
        if helper == "launcher":
            assert first in commands.LAUNCHERS, f"{where}: unknown launcher {first}"
            scripts = [s for s, _ in python_calls(ROOT / f"{first}.sh")]
            for flag in flags:
                assert flag in EXTRA_FLAGS.get(first, ()) or any(
                    accepts(s, flag) for s in scripts
                ), f"{where}: {first} passes {flag} to {scripts}, which do not accept it"
        elif first == "-m":
            module = rest[0]
            assert module and importlib.util.find_spec(module), f"{where}: no module {module}"
        else:
            assert (ROOT / first).is_file(), f"{where}: {first} does not exist"
            for flag in flags:
                assert accepts(first, flag), f"{where}: {first} does not accept {flag}"
