"""bench/bench_fetch.py runs and reports (its figures depend on the machine, so only the
absence of 429s at an advertised limit is checked here)."""

from __future__ import annotations

import re

from conftest import run_script


def test_bench_reports_rate_and_429s():
    done = run_script("bench/bench_fetch.py", "--limit", "3000", "--requests", "40", timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"achieved +: [\d.]+ requests/min = [\d.]+% of the limit", done.stdout)
    assert "429 answers      : 0" in done.stdout
