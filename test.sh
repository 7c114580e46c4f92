#!/usr/bin/env bash
# The test suite with the project's own environment (after ./setup.sh --dev). Arguments go to
# pytest: ./test.sh tests/test_db.py -x
cd "$(dirname "$0")" || exit 1
py=.venv/bin/python
if ! "$py" -c 'import pytest, xdist' >/dev/null 2>&1; then
    echo "[ERROR] .venv has no test tools. Run ./setup.sh --dev first." >&2
    exit 1
fi
exec "$py" -m pytest -q "$@"
