"""Stage 0: make the environment (called by setup.bat / setup.sh; standard library only).

Creates the virtual environment `.venv`, installs PyTorch (the CUDA build when an NVIDIA GPU is
found, else the CPU build), then requirements.txt and the project itself (editable, so every
script and benchmark imports `bert4rec` from this folder), with --dev the test and lint tools,
creates data/ and output/, and reports whether a GPU is usable. Safe to run again: what is
already in place is kept.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import venv

# Standard library only, like this file: it renders the commands the messages print.
from bert4rec import commands

ROOT = os.path.dirname(os.path.abspath(__file__))
MIN_PYTHON = (3, 9)
# PyTorch's own package indexes: PyPI's Linux wheels are CUDA builds of several GB, and its
# Windows wheels are CPU-only, so the build is chosen by index.
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CUDA_INDEX = "https://download.pytorch.org/whl/cu126"
# Taken from PyPI (or a local wheel folder pip is configured with) when PyTorch's index is out of
# reach; a known-good release.
FALLBACK_TORCH = "torch==2.13.0"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Create .venv, install PyTorch and requirements.txt, create data/ and "
        "output/, and report whether a GPU is usable. Safe to run twice."
    )
    parser.add_argument(
        "--venv",
        default=os.path.join(ROOT, ".venv"),
        help="where to create the virtual environment (default: .venv)",
    )
    build = parser.add_mutually_exclusive_group()
    build.add_argument(
        "--cpu",
        action="store_true",
        help="install the CPU build of PyTorch even when an NVIDIA GPU is present",
    )
    build.add_argument(
        "--cuda",
        action="store_true",
        help="install the CUDA build of PyTorch even when no NVIDIA GPU is found",
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="also install the test and lint tools (requirements-dev.txt), to run the tests",
    )
    parser.add_argument(
        "--reinstall-torch",
        action="store_true",
        help="install PyTorch again even when the environment already has it",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def venv_python(venv_dir: str) -> str:
    sub = ("Scripts", "python.exe") if os.name == "nt" else ("bin", "python")
    return os.path.join(venv_dir, *sub)


def run(cmd: list[str], **kwargs) -> int:
    print("  $ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, **kwargs)


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver answers `nvidia-smi -L` with at least one GPU."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def torch_installed(python: str) -> str | None:
    """The installed torch version in that interpreter, or None."""
    out = subprocess.run(
        [python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 else None


def install_torch(python: str, want_cuda: bool) -> bool:
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    if want_cuda:
        print("Installing the CUDA build of PyTorch (about 2.5 GB; this takes a while) ...")
        if run(pip + ["torch", "--index-url", CUDA_INDEX]) == 0:
            return True
        print("PyTorch's CUDA index could not be used; trying PyPI.")
        return run(pip + ["torch"]) == 0
    print("Installing the CPU build of PyTorch ...")
    if platform.system() in ("Windows", "Darwin"):
        return run(pip + ["torch"]) == 0  # PyPI's wheels for these are CPU (and MPS) builds
    if run(pip + ["torch", "--index-url", CPU_INDEX]) == 0:
        return True
    print(f"PyTorch's CPU index could not be reached; trying {FALLBACK_TORCH} from PyPI.")
    return run(pip + [FALLBACK_TORCH]) == 0


def report_device(python: str) -> None:
    probe = (  # the launchers to name come as arguments: a Windows path's \ is no escape then
        "import sys, torch\n"
        "if torch.cuda.is_available():\n"
        "    print('GPU usable: ' + torch.cuda.get_device_name(0) + ' (CUDA ' "
        "+ str(torch.version.cuda) + '). Train with ' + sys.argv[1] + '.')\n"
        "elif getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available():\n"
        "    print('Apple GPU (MPS) usable: train with --device mps.')\n"
        "else:\n"
        "    print('No usable GPU: training runs on the CPU (' + sys.argv[2] + ').')\n"
    )
    launchers = [commands.launcher("3_train_model_gpu"), commands.launcher("3_train_model")]
    subprocess.call([python, "-c", probe, *launchers])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if sys.version_info < MIN_PYTHON:
        print(
            f"Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed; this is "
            f"{platform.python_version()}. Install a newer Python from python.org."
        )
        return 1
    print(f"Python {platform.python_version()} at {sys.executable}")

    python = venv_python(args.venv)
    if os.path.isfile(python):
        print(f"Virtual environment already present: {args.venv}")
    else:
        print(f"Creating the virtual environment {args.venv} ...")
        try:
            venv.EnvBuilder(with_pip=True).create(args.venv)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(
                f"Creating {args.venv} failed ({exc}). On Debian/Ubuntu install the venv "
                "module (sudo apt install python3-venv), delete the half-made folder, and run "
                "setup again."
            )
            return 1

    gpu = has_nvidia_gpu()
    want_cuda = args.cuda or (gpu and not args.cpu)
    print("NVIDIA GPU found." if gpu else "No NVIDIA GPU found.")
    version = None if args.reinstall_torch else torch_installed(python)
    if version:
        print(f"PyTorch {version} already installed (use --reinstall-torch to change the build).")
    elif not install_torch(python, want_cuda):
        print(
            "Installing PyTorch failed. Check the network connection, then run setup again. "
            "See docs/USER_GUIDE.md, Troubles."
        )
        return 1

    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    print("Installing requirements.txt ...")
    if run(pip + ["-r", os.path.join(ROOT, "requirements.txt")]):
        print("Installing requirements.txt failed; see the messages above, then run setup again.")
        return 1
    # --no-deps: requirements.txt brought them, and nothing may swap the torch build chosen above.
    print("Installing this project into the environment (editable) ...")
    if run(pip + ["--no-deps", "--editable", ROOT]):
        print("Installing the project failed; see the messages above, then run setup again.")
        return 1
    if args.dev:
        print("Installing the test and lint tools (requirements-dev.txt) ...")
        if run(pip + ["-r", os.path.join(ROOT, "requirements-dev.txt")]):
            print("Installing requirements-dev.txt failed; see the messages above.")
            return 1

    for folder in ("data", "output"):
        os.makedirs(os.path.join(ROOT, folder), exist_ok=True)
    print("Folders data/ and output/ are ready.")
    report_device(python)
    print(
        f"Setup finished. Next: {commands.launcher('run_all')} (or the stages one by one: "
        f"{commands.launcher('1_prepare_anime')}, {commands.launcher('2_load_users')}, "
        f"{commands.launcher('3_train_model')}), or {commands.launcher('demo')} to try the "
        "whole pipeline offline on synthetic data."
    )
    if args.dev:
        print(f"Tests: {commands.launcher('test')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
