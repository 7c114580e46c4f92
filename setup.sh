#!/usr/bin/env bash
# Stage 0: find Python 3.9+, create .venv, install PyTorch (CUDA build when an NVIDIA GPU is
# found) and requirements.txt, create data/ and output/, report whether a GPU is usable.
# Safe to run again. Options are passed on to setup_env.py (see: ./setup.sh --help).
cd "$(dirname "$0")" || exit 1
for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
        exec "$candidate" setup_env.py "$@"
    fi
done
echo "[ERROR] Python 3.9 or newer was not found. Install it (Debian/Ubuntu:" >&2
echo "        sudo apt install python3 python3-venv; macOS: python.org or Homebrew)," >&2
echo "        then run ./setup.sh again." >&2
exit 1
