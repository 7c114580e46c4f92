"""Commands as a message prints them: each one must work when typed on the user's system.

Every message that tells the user to run something renders it here, never by hand: on Windows
`.\\4_recommend.bat --user NAME` (the leading `.\\` makes it work in PowerShell as in cmd) or
`.venv\\Scripts\\python train_model.py --resume PATH`; elsewhere `./4_recommend.sh --user NAME` or
`.venv/bin/python train_model.py --resume PATH`. A plain `python ...` would be the system's
Python, without the packages. tests/test_commands.py checks that every command rendered in the
code names a file that exists and flags that file accepts.

Standard library only: setup_env.py (run by the system's Python before .venv exists) uses it too.
"""

from __future__ import annotations

import os
import re
import shlex

# The launchers in the project folder (NAME.bat with its NAME.sh twin) a message may name.
LAUNCHERS = (
    "setup",
    "1_prepare_anime",
    "2_load_users",
    "3_train_model",
    "3_train_model_gpu",
    "4_recommend",
    "run_all",
    "demo",
    "test",
)
# What cmd and PowerShell read as one plain word; anything else is quoted.
_PLAIN_ON_WINDOWS = re.compile(r"[A-Za-z0-9_\-.:/\\]+")


def on_windows() -> bool:
    return os.name == "nt"


def launcher(name: str, *args: str, windows: bool | None = None) -> str:
    """`.\\NAME.bat ARGS` on Windows, `./NAME.sh ARGS` elsewhere; run from the project folder."""
    if name not in LAUNCHERS:
        raise ValueError(f"no launcher named {name!r} (one of {', '.join(LAUNCHERS)})")
    windows = on_windows() if windows is None else windows
    program = f".\\{name}.bat" if windows else f"./{name}.sh"
    return join(program, *args, windows=windows)


def python(*args: str, windows: bool | None = None) -> str:
    """The project environment's Python with ARGS (a script and its flags, or -m MODULE)."""
    windows = on_windows() if windows is None else windows
    program = ".venv\\Scripts\\python" if windows else ".venv/bin/python"
    return join(program, *args, windows=windows)


def join(*words: str, windows: bool | None = None) -> str:
    windows = on_windows() if windows is None else windows
    return " ".join(quote(str(w), windows=windows) for w in words)


def quote(word: str, *, windows: bool) -> str:
    """`word` as one argument of cmd and PowerShell (double quotes), or of a POSIX shell."""
    if not windows:
        return shlex.quote(word)
    if word and _PLAIN_ON_WINDOWS.fullmatch(word):
        return word
    return '"' + word.replace('"', '""') + '"'
