#!/usr/bin/env bash
# Shared by the step scripts: runs one project script with .venv's Python and says clearly when
# it failed. Usage: scripts/step.sh SCRIPT.py [ARGS...]
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$root/.venv/bin/python"
if [ ! -x "$py" ]; then
    echo "[ERROR] The Python environment .venv is missing. Run ./setup.sh first." >&2
    exit 1
fi
cd "$root" || exit 1
"$py" "$@"
rc=$?
if [ "$rc" -ne 0 ]; then
    echo "[ERROR] $1 stopped with exit code $rc. Read the message above." >&2
fi
exit "$rc"
