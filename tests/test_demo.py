"""The synthetic world, the standalone simulator, and the offline pipeline (run_all --demo)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, fake_venv, plain_checkout
from fakes import FAST

from bert4rec import commands
from bert4rec.anilist import AniListClient
from bert4rec.simulator import FakeAniList
from bert4rec.synthetic import generate_world


def watched_count(user) -> int:
    return sum(1 for e in user.entries if e["status"] != "PLANNING")


def test_world_is_seeded_and_lifelike():
    world = generate_world(300, 200, seed=7)
    again = generate_world(300, 200, seed=7)
    assert [m["id"] for m in world.media] == [m["id"] for m in again.media]
    assert [u.entries for u in world.users] == [u.entries for u in again.users]
    assert len(world.media) == 300 and len(world.users) == 200
    assert len({m["id"] for m in world.media}) == 300
    assert len({u.name.lower() for u in world.users}) == 200
    popularity = sorted((m["popularity"] for m in world.media), reverse=True)
    median = popularity[len(popularity) // 2]
    assert popularity[0] > 4 * median and popularity[-1] < median / 10  # a long tail
    sizes = sorted(watched_count(u) for u in world.users)
    assert sizes[0] < 20 < sizes[-1]  # some users too small to keep, some large
    assert any(u.private for u in world.users)
    statuses = {e["status"] for u in world.users for e in u.entries}
    assert {"COMPLETED", "PLANNING", "DROPPED"} <= statuses
    titles = [m["title"] for m in world.media]
    assert all(t["romaji"] and t["native"] for t in titles)
    assert any(t["english"] is None for t in titles)


def test_client_reads_the_synthetic_world():
    world = generate_world(120, 30, seed=3)
    public = next(u for u in world.users if not u.private and len(u.entries) > 5)
    with FakeAniList(world, rate_limit=60000) as api:
        client = AniListClient(api.url, rate_limit=60000)
        pages = list(client.walk_catalogue(120))
        anime = [a for page in pages for a in page.animes]
        assert [a.anime_id for a in anime] == [m["id"] for m in world.by_popularity]
        user_list = client.fetch_user_list(user_name=public.name)
        assert sorted(e.anime_id for e in user_list.entries) == sorted(
            e["mediaId"] for e in public.entries
        )


def test_simulator_command_serves_and_says_it_is_synthetic(tmp_path):
    users_file = tmp_path / "users.txt"
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "bert4rec.simulator", "--port", "0", "--media", "60",
         "--users", "10", "--write-users", str(users_file)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, encoding="utf-8",
    )  # fmt: skip
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Listening on" in line:
                break
        text = "".join(lines)
        assert "SYNTHETIC DATA" in text and "60 titles, 10 users" in text
        names = [n for n in users_file.read_text(encoding="utf-8").splitlines() if n[:1] != "#"]
        assert len(names) == 10
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def clean_copy(tmp_path):
    """The tracked files of the repository, as a fresh clone has them, with a .venv whose
    python is this interpreter (setup's job, which needs the network)."""
    copy = plain_checkout(tmp_path / "clone")
    fake_venv(copy)
    return copy


@pytest.mark.slow
def test_stage_scripts_chain_against_the_simulator(clean_copy):
    world = generate_world(150, 40, seed=5)
    (clean_copy / "datas_user.txt").write_text(
        "# test users\n" + "\n".join(u.name for u in world.users) + "\n", encoding="utf-8"
    )
    with FakeAniList(world, rate_limit=60000) as api:
        env = {**os.environ, "ANILIST_API_URL": api.url}
        for step in ("1_prepare_anime.sh", "2_load_users.sh"):
            out = subprocess.run(
                [str(clean_copy / step), *FAST], env=env, capture_output=True, text=True
            )
            assert out.returncode == 0, out.stdout + out.stderr
    conn = sqlite3.connect(clean_copy / "data" / "bert.db")
    assert conn.execute("SELECT COUNT(*) FROM bert_anime").fetchone()[0] == 150
    loaded = conn.execute("SELECT COUNT(*) FROM bert_users WHERE state = 'loaded'").fetchone()[0]
    assert loaded == sum(1 for u in world.users if not u.private and watched_count(u) >= 20)


@pytest.mark.slow
def test_run_all_demo_leaves_every_spec_output(clean_copy):
    out = subprocess.run(
        [str(clean_copy / "run_all.sh"), "--demo", "--media", "150", "--users", "150",
         "--epochs", "2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "SYNTHETIC DATA" in out.stdout and "Demo finished" in out.stdout
    output = clean_copy / "output"
    for name in (
        "models/best_model.pth", "models/final_model.pth", "models/item_mappings.pkl",
        "models/training_config.json", "plots/loss_curve.png", "plots/accuracy_curve.png",
        "plots/combined_metrics.png", "plots/learning_curve.png", "plots/training_metrics.json",
        "logs/training.log",
    ):  # fmt: skip
        assert (output / name).is_file(), name
    metrics = json.loads((output / "plots" / "training_metrics.json").read_text())
    assert len(metrics["train_losses"]) == 2
    assert not (clean_copy / "data" / "bert.db").exists()  # the demo keeps its own database
    settings = json.loads((output / "models" / "training_config.json").read_text())
    assert settings["world"] == "simulator"  # recommend.py refuses real lists with this model
    assert f"Recommendations: {commands.launcher('4_recommend', '--user')} " in out.stdout


def test_demo_keeps_away_from_a_real_model(tmp_path):
    import demo

    models = tmp_path / "output" / "models"
    models.mkdir(parents=True)
    (models / "training_config.json").write_text(json.dumps({"db": "data/bert.db"}))
    assert demo.holds_real_model(str(tmp_path / "output"), "data/demo.db")
    (models / "training_config.json").write_text(json.dumps({"db": "data/demo.db"}))
    assert not demo.holds_real_model(str(tmp_path / "output"), "data/demo.db")
    assert not demo.holds_real_model(str(Path(tmp_path) / "nothing"), "data/demo.db")
    # The world training recorded decides, whatever database it was.
    config = models / "training_config.json"
    config.write_text(json.dumps({"db": "data/demo.db", "world": "anilist"}))
    assert demo.holds_real_model(str(tmp_path / "output"), "data/demo.db")
    config.write_text(json.dumps({"db": "elsewhere.db", "world": "simulator"}))
    assert not demo.holds_real_model(str(tmp_path / "output"), "data/demo.db")
