"""prepare_dataset.py run as a user runs it, against the fake AniList."""

from __future__ import annotations

import json
import socket
import sqlite3

import pytest
from conftest import run_script
from fakes import FAST, catalogue, expected_order, stop_when_it_hangs

from bert4rec import catalogue as stage
from bert4rec import db
from bert4rec.simulator import FakeAniList, World


def prepare(api_url: str, db_path, *args: str, env: dict | None = None):
    return run_script(
        "prepare_dataset.py", "--api-url", api_url, "--db", str(db_path), *FAST, *args, env=env
    )


def ranked_ids(db_path) -> list[int]:
    conn = sqlite3.connect(db_path)
    rows = conn.execute(
        "SELECT anime_id FROM bert_anime WHERE popularity_rank IS NOT NULL ORDER BY popularity_rank"
    ).fetchall()
    conn.close()
    return [r[0] for r in rows]


def test_fetches_ranks_and_reruns_without_duplicates(tmp_path):
    media = catalogue(260)
    db_path = tmp_path / "data" / "bert.db"
    with FakeAniList(World(media)) as api:
        first = prepare(api.url, db_path, "--count", "120")
        assert first.returncode == 0, first.stderr
        assert "Catalogue: 120 anime" in first.stdout and "3 pages" in first.stdout
        assert ranked_ids(db_path) == expected_order(media)[:120]
        again = prepare(api.url, db_path, "--count", "120")
        assert again.returncode == 0, again.stderr
        fewer = prepare(api.url, db_path, "--count", "30")
    conn = db.connect(db_path, create=False)
    assert db.anime_count(conn) == 120  # updated in place, never duplicated
    assert "90 older titles left the top 30" in fewer.stdout
    assert ranked_ids(db_path) == expected_order(media)[:30]
    top = db.load_catalogue(conn)[0]
    assert top.title_english == "English 1" and top.genres == ("Action", "Drama")
    assert top.tags == ("Tag",) and top.popularity == 100_000 and top.popularity_rank == 1


def test_counts_past_the_page_depth_cap_and_fewer_titles_than_asked(tmp_path):
    media = catalogue(240, ties=4)
    with FakeAniList(World(media), page_depth_cap=100) as api:
        done = prepare(api.url, tmp_path / "bert.db", "--count", "500")
    assert done.returncode == 0, done.stderr
    assert "AniList has only 240 titles" in done.stdout
    assert ranked_ids(tmp_path / "bert.db") == expected_order(media)


def test_resumes_after_being_killed_mid_run(tmp_path):
    media = catalogue(400)
    db_path = tmp_path / "bert.db"
    with FakeAniList(World(media)) as api:
        api.fail("hang", times=None, seconds=60, when=lambda s: s.answered["Page"] >= 3)
        stop_when_it_hangs(api, "prepare_dataset.py", "--db", str(db_path), "--count", "330")
        assert ranked_ids(db_path) == expected_order(media)[:150]
        api.clear_faults()
        first_new_request = len(api.log)
        resumed = prepare(api.url, db_path, "--count", "330")
        pages_asked = [r["variables"]["page"] for r in api.log[first_new_request:]]
    assert resumed.returncode == 0, resumed.stderr
    assert "150 of 330 titles stored" in resumed.stderr
    assert pages_asked == [4, 5, 6, 7]
    assert ranked_ids(db_path) == expected_order(media)[:330]
    progress = json.loads(db.get_meta(db.connect(db_path), stage.PROGRESS_KEY))
    assert progress["finished"] and progress["ranked"] == 330


def test_rate_limit_and_server_errors_are_waited_out(tmp_path):
    with FakeAniList(World(catalogue(100))) as api:
        api.fail("rate_limit", retry_after="1")
        api.fail("http500", when=lambda s: s.answered["Page"] >= 1)
        done = prepare(api.url, tmp_path / "bert.db", "--count", "100", "--timeout", "5")
    assert done.returncode == 0, done.stderr
    assert "rate limit reached" in done.stderr and "retrying in" in done.stderr
    assert "1 rate-limited" in done.stdout
    assert len(ranked_ids(tmp_path / "bert.db")) == 100


@pytest.mark.parametrize(
    "fault, message",
    [
        ("disabled", "temporarily disabled"),
        ("http500", "gave up after 1 attempt)"),
        ("garbage", "not JSON"),
    ],
)
def test_failures_stop_with_a_message_keeping_what_was_stored(tmp_path, fault, message):
    with FakeAniList(World(catalogue(200))) as api:
        api.fail(fault, times=None, when=lambda s: s.answered["Page"] >= 2)
        failed = prepare(api.url, tmp_path / "bert.db", "--count", "200", "--max-retries", "0")
    assert failed.returncode == 1
    assert message in failed.stderr and "Traceback" not in failed.stderr
    assert "run the same command again" in failed.stderr
    assert len(ranked_ids(tmp_path / "bert.db")) == 100


def test_unreachable_api_names_the_url(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    failed = prepare(url, tmp_path / "bert.db", "--max-retries", "0")
    assert failed.returncode == 1
    assert f"cannot reach the AniList API at {url}" in failed.stderr
    assert "internet connection" in failed.stderr and "Traceback" not in failed.stderr


def test_api_url_comes_from_the_environment(tmp_path):
    with FakeAniList(World(catalogue(10))) as api:
        done = run_script(
            "prepare_dataset.py", "--db", str(tmp_path / "bert.db"), *FAST,
            env={"ANILIST_API_URL": api.url},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert api.stats.answered["Page"] == 1


def test_bad_input_is_refused_clearly(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 200)
    bad_db = prepare("http://127.0.0.1:9/", garbage)
    assert bad_db.returncode == 2 and "cannot use" in bad_db.stderr
    assert "Traceback" not in bad_db.stderr
    bad_count = prepare("http://127.0.0.1:9/", tmp_path / "x.db", "--count", "0")
    assert bad_count.returncode == 2 and "--count" in bad_count.stderr
    bad_url = prepare("localhost-without-scheme", tmp_path / "x.db")
    assert bad_url.returncode == 2 and "--api-url" in bad_url.stderr


def test_help_explains_every_flag():
    shown = run_script("prepare_dataset.py", "--help").stdout
    for flag in ("--count", "--db", "--api-url", "--rate-limit", "--timeout", "--max-retries"):
        assert flag in shown
    assert "3000" in shown and "data/bert.db" in shown.replace("\\", "/")
