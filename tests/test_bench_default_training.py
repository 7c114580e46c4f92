"""bench_default_training.py on a small synthetic store: it trains through the project's
trainer and writes the times and the figures (validation and held-out test) it promises.
CI never runs the benchmark itself (20 minutes or more)."""

from __future__ import annotations

import json

from conftest import run_script


def test_bench_default_training_reports_times_and_test_figures(tmp_path):
    results = tmp_path / "default_training.json"
    done = run_script(
        "bench/bench_default_training.py",
        *("--users", "80", "--titles", "400", "--epochs", "2", "--threads", "1"),
        *("--work", str(tmp_path / "work"), "--json", str(results)),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(results.read_text(encoding="utf-8"))
    assert record["epochs"] == 2 and 1 <= record["best_epoch"] <= 2
    assert 0 < record["minutes_to_best_epoch"] <= record["minutes_in_all"]
    assert record["config"]["epochs"] == 2 and record["config"]["split"] == "user"
    assert record["config"]["db"].startswith(str(tmp_path / "work"))  # the bench's own store
    # test users are held out and reported; nothing is chosen on them
    assert record["data"]["test_users"] > 0
    assert set(record["test_at_best"]) >= {"HR@10", "NDCG@10"}
    baselines = record["baselines"]
    assert {"popularity", "ItemKNN", "EASE", "EASE-recent"} <= set(baselines)
    assert all("test" in entry for entry in baselines.values() if "skipped" not in entry)
    assert set(record["blend"]["test"]) >= {"HR@10", "NDCG@10"}
