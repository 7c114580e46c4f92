"""Worlds do not mix: a store knows where its data came from, training records it with the
model, and a stage that would bring another world's data into a store is refused."""

from __future__ import annotations

import os

import pytest
from conftest import run_script
from planted import make_store

from bert4rec import data, db, paths, worlds


@pytest.mark.parametrize(
    ("url", "world"),
    [
        (paths.ANILIST_API_URL, worlds.ANILIST),
        ("https://proxy.example.org/graphql", worlds.ANILIST),
        ("http://127.0.0.1:8686/", worlds.SIMULATOR),
        ("http://localhost:8686", worlds.SIMULATOR),
        ("http://[::1]:8686/", worlds.SIMULATOR),
        ("127.0.0.1:8686", worlds.SIMULATOR),
    ],
)
def test_the_world_of_an_endpoint(url, world):
    assert worlds.of_api_url(url) == world


def test_a_store_is_claimed_by_its_first_world_and_refuses_another(tmp_path):
    path = tmp_path / "bert.db"
    conn = db.connect(path)
    assert worlds.of_store(conn) is None
    worlds.claim_store(conn, worlds.SIMULATOR, str(path))
    worlds.claim_store(conn, worlds.SIMULATOR, str(path))  # its own world again: fine
    assert worlds.of_store(conn) == worlds.SIMULATOR
    with pytest.raises(worlds.WorldError, match="holds the AniList simulator's synthetic data"):
        worlds.claim_store(conn, worlds.ANILIST, str(path))


@pytest.mark.parametrize("script", ["prepare_dataset.py", "load_users.py"])
def test_the_data_stages_refuse_to_mix_worlds_before_fetching(tmp_path, script):
    path = tmp_path / "bert.db"
    conn = db.connect(path)
    worlds.claim_store(conn, worlds.ANILIST, str(path))
    conn.close()
    users = tmp_path / "users.txt"
    users.write_text("alice\n", encoding="utf-8")
    extra = ["--users", str(users)] if script == "load_users.py" else []
    # Nothing listens on port 9: a stage that got as far as fetching would fail with status 1.
    result = run_script(script, "--db", str(path), "--api-url", "http://127.0.0.1:9", *extra)
    assert result.returncode == 2, result.stderr
    assert f"{path} holds real AniList data, and this run would add the AniList simulator's" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_training_data_carries_the_store_world(tmp_path):
    path = make_store(tmp_path / "bert.db", users=20)
    options = {"min_items": 3, "val_fraction": 0.2, "seed": 1}
    assert data.prepare_training_data(path, **options).world is None  # recorded before worlds
    conn = db.connect(path)
    worlds.claim_store(conn, worlds.SIMULATOR, str(path))
    conn.close()
    training = data.prepare_training_data(path, **options)
    assert training.world == worlds.SIMULATOR
    assert training.summary()[worlds.SETTINGS_FIELD] == worlds.SIMULATOR


def test_the_world_a_model_was_trained_on():
    assert worlds.of_settings({worlds.SETTINGS_FIELD: worlds.ANILIST, "db": "x.db"}) == "anilist"
    # A model from before worlds were recorded: the demo's database says simulator.
    demo_db = os.path.join("data", "demo.db")
    assert worlds.of_settings({"db": demo_db}) == worlds.SIMULATOR
    assert worlds.of_settings({"db": paths.DEFAULT_DB_PATH}) is None
    assert worlds.of_settings(None) is None
