"""A tiny run of bench/bench_anime.py on the shared anime lists (skipped when they are absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import ROOT, run_script
from matplotlib.image import imread

from bert4rec import db

DATASETS = Path(os.environ.get("BERT4REC_DATASETS") or ROOT.parent / "shared" / "datasets")


@pytest.mark.skipif(
    not (DATASETS / "anime-cooperunion-5k" / "anime_history.dat.gz").is_file(),
    reason=f"the shared anime data is not at {DATASETS} (set BERT4REC_DATASETS to its folder)",
)
def test_bench_anime_reports_model_blend_and_baselines_on_the_same_targets(tmp_path):
    results, plot = tmp_path / "anime.json", tmp_path / "anime.png"
    done = run_script(
        "bench/bench_anime.py",
        *("--sizes", "80", "--epochs", "2", "--hidden", "32", "--heads", "2", "--layers", "1"),
        *("--max-seq-len", "30", "--threads", "1", "--work", str(tmp_path / "work")),
        *("--json", str(results), "--plot", str(plot)),
        env={"BERT4REC_DATASETS": str(DATASETS)},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(results.read_text(encoding="utf-8"))
    assert record["eligible_users"] == 4567  # users with at least 5 titles
    assert "random order" in record["protocol"] and "leave-one-out" in record["protocol"]
    (row,) = record["rows"]
    assert row["users"] == 80 and row["config"]["split"] == "leave-one-out"
    assert set(row["baselines"]) == {"popularity", "ItemKNN", "EASE", "EASE-recent"}
    assert row["baselines"]["EASE"]["lambda"] > 0
    assert "decay" in row["baselines"]["EASE-recent"]  # None: no decay chosen
    assert {"neighbours", "shrinkage"} <= set(row["baselines"]["ItemKNN"])
    assert 0 <= row["blend"]["ease_weight"] <= 1
    for figures in (row["model"]["test"], row["blend"]["test"], row["baselines"]["EASE"]["test"]):
        assert 0 <= figures["NDCG@10"] <= figures["HR@10"] <= 1
    lead = row["blend"]["lead_over_ease"]["test"]["HR@10"]
    ease_hr = row["baselines"]["EASE"]["test"]["HR@10"]
    assert lead["lead"] == pytest.approx(row["blend"]["test"]["HR@10"] - ease_hr, abs=1e-4)
    # Classic collaborative filtering beats popularity on real lists: a broken baseline would not.
    assert (
        row["baselines"]["EASE"]["test"]["HR@10"] > row["baselines"]["popularity"]["test"]["HR@10"]
    )
    assert imread(plot).ndim == 3
    assert "HR@10" in done.stdout and "EASE-recent (lambda" in done.stdout


def _row(size: str, draw: int, model: float, ease: float, weight: float) -> dict:
    figures = lambda hr: {"HR@10": hr, "NDCG@10": hr / 2}  # noqa: E731
    return {
        "size": size,
        "draw": draw,
        "users": int(size),
        "titles": 100 + draw,
        "model": {"test": figures(model), "best_epoch": 3, "epochs": 5},
        "blend": {"test": figures(ease + 0.01), "ease_weight": weight, "ease_lambda": 10.0},
        "baselines": {
            "popularity": {"test": figures(0.1)},
            "ItemKNN": {"test": figures(0.2)},
            "EASE": {"test": figures(ease), "lambda": 10.0 * draw},
            "EASE-recent": {"test": figures(ease + 0.1), "lambda": 10.0, "decay": 2.0},
        },
        "seconds": 60.0 * draw,
    }


def test_means_over_draws_average_each_figure_of_sizes_run_more_than_once():
    from bench.bench_anime import mean_rows, table
    from bert4rec.baselines import BASELINE_NAMES

    rows = [
        _row("50", 1, 0.1, 0.2, 0.8),
        _row("50", 2, 0.3, 0.4, 0.6),
        _row("200", 1, 0.2, 0.3, 0.5),
    ]
    (mean,) = mean_rows(rows)  # 200 ran once: nothing to average
    assert mean["size"] == "50" and mean["draws"] == 2 and mean["titles"] == 102
    assert mean["model"]["test"] == {"HR@10": 0.2, "NDCG@10": 0.1}
    assert mean["baselines"]["EASE"]["test"]["HR@10"] == 0.3
    assert mean["baselines"]["EASE-recent"]["test"]["HR@10"] == 0.4
    assert mean["blend"]["test"]["HR@10"] == 0.31 and mean["blend"]["ease_weight"] == 0.7
    assert mean["seconds"] == 90.0
    (line,) = table([mean], "HR@10")[1:]
    assert "mean of 2 draws" in line and "(-)" in line  # each draw chose its own lambda
    header, first = table(rows[:1], "HR@10")
    assert [part.strip() for part in header.split("|")[2:6]] == list(BASELINE_NAMES)
    assert "0.2000 (lambda 10) | 0.3000 (lambda 10, decay 2)" in first


def test_the_catalogue_is_ranked_by_training_titles_alone(tmp_path):
    """Title 3 is held by every user, but always as a held-out target (the last two titles of
    a list); title 2 by two users as a training title. Ranked by every title, 3 would come
    first and MostPopular would break its ties by that held-out count."""
    from bench.bench_anime import AnimeLists, import_subset

    lists = AnimeLists.__new__(AnimeLists)  # the shared files are not needed for this
    lists.lists = {1: [1, 2, 4, 3], 2: [2, 5, 3], 3: [1, 3, 5]}
    lists.info = {
        i: {"name": f"Title {i}", "genre": "", "type": "TV", "members": str(members)}
        for i, members in ((1, 10), (2, 20), (3, 90), (4, 50), (5, 40))
    }
    lists.mal_of = {i: 100 + i for i in lists.info}
    lists.anilist_of = {i: 1000 + i for i in lists.info}
    import_subset(lists, [1, 2, 3], tmp_path / "anime.db")
    conn = db.connect(tmp_path / "anime.db", create=False)
    ranked = [a.anime_id - 1000 for a in db.load_catalogue(conn)]
    conn.close()
    # training titles: [1, 2], [2], [1]: 1 and 2 twice (2 first, by MAL members), then the
    # titles never trained on by MAL members: 3 (90), 4 (50), 5 (40)
    assert ranked == [2, 1, 3, 4, 5]


def test_top_titles_keeps_the_best_known_titles_whatever_the_lists_hold_out():
    """Title 3 is on every list, always as a held-out target; counting the lists would keep it.
    MyAnimeList members decide instead."""
    from bench.bench_anime import best_known_only

    lists = {1: [1, 2, 4, 3], 2: [2, 5, 3], 3: [1, 3, 5]}
    members = {1: 10, 2: 20, 3: 5, 4: 50, 5: 40}
    kept = best_known_only(lists, members.__getitem__, 3)
    assert kept == {1: [2, 4], 2: [2, 5], 3: [5]}


def test_bench_anime_runs_the_simulator_in_watch_order(tmp_path):
    """--dataset simulator: a world of each size, stored as the data stages store it; the lists'
    order carries the signal, so the order-aware baseline is reported beside the others. With
    --first-draw 2 only the second world is built and trained (seed 43, not 42)."""
    results, plot = tmp_path / "sim.json", tmp_path / "sim.png"
    done = run_script(
        "bench/bench_anime.py",
        *("--dataset", "simulator", "--sizes", "40", "--draws", "2", "--first-draw", "2"),
        *("--epochs", "1", "--hidden", "32"),
        *("--heads", "2", "--layers", "1", "--max-seq-len", "30", "--threads", "1"),
        *("--work", str(tmp_path / "work"), "--json", str(results), "--plot", str(plot)),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(results.read_text(encoding="utf-8"))
    assert record["dataset"] == "simulator" and "order watched" in record["protocol"]
    assert "(seed 43)" in record["protocol"]
    (row,) = record["rows"]
    assert row["draw"] == 2 and "users_40_draw_2" in row["config"]["db"]
    assert 0 < row["users"] <= 40 and row["titles"] == 3000
    assert row["interactions"] >= 20 * row["users"]  # lists under 20 titles are left out
    assert set(row["baselines"]) == {"popularity", "ItemKNN", "EASE", "EASE-recent"}
    assert imread(plot).ndim == 3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--sizes", "all"), "no 'all'"),
        (("--sizes", "40", "--draws", "2", "--first-draw", "3"), "must be 1..--draws (2); got 3"),
    ],
)
def test_bench_anime_refuses_sizes_and_draws_it_cannot_run(tmp_path, flags, message):
    done = run_script(
        "bench/bench_anime.py",
        *("--dataset", "simulator", *flags, "--json", str(tmp_path / "x.json")),
        timeout=120,
    )
    assert done.returncode == 1 and message in done.stderr
    assert not (tmp_path / "x.json").exists()
