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
from bert4rec.simulator import FakeAniList
from bert4rec.synthetic import generate_world
from bert4rec.world import World


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


# --- relations and covers --------------------------------------------------------------------


def world_edges(world: World, ids) -> dict[int, tuple[db.Relation, ...]]:
    """The world's edges between anime, as the store holds them (titles with edges only)."""
    found = {}
    for media in world.media:
        if media["id"] not in ids:
            continue
        edges = sorted(
            (e["relationType"], e["node"]["id"])
            for e in media["relations"]["edges"]
            if e["node"]["type"] == "ANIME"
        )
        if edges:
            found[media["id"]] = tuple(db.Relation(media["id"], r, k) for k, r in edges)
    return found


def test_stores_the_synthetic_franchises_relations_and_covers_with_the_pages(tmp_path):
    world = generate_world(150, 5, seed=3)
    db_path = tmp_path / "bert.db"
    with FakeAniList(world) as api:
        done = prepare(api.url, db_path, "--count", "150")
        url = api.url
        queries = [r["query"] for r in api.log]
    assert done.returncode == 0, done.stderr
    assert len(queries) == 3 and all("relations" in q for q in queries)  # nothing extra
    conn = db.connect(db_path, create=False)
    assert db.load_relations(conn) == world_edges(world, world.media_by_id)
    assert db.anime_ids_without_relations(conn) == []
    for anime in db.load_catalogue(conn):
        assert anime.cover_large == f"{url}covers/large/{anime.anime_id}.png"
        assert anime.cover_medium == f"{url}covers/medium/{anime.anime_id}.png"
        assert anime.site_url == f"https://anilist.co/anime/{anime.anime_id}/"
    assert f"Relations and covers: {db.relation_count(conn)} edges" in done.stdout
    assert "150 of 150 titles with a cover" in done.stdout
    assert "fetched with the 3 catalogue pages (no extra requests)" in done.stdout


def version_2_store(path, world: World, count: int, *, walked: int | None = None) -> None:
    """A store as the previous version left it: the top `count` of `world` ranked (or the
    first `walked` of them, by a walk that was interrupted), and the world's users' lists."""
    old = sqlite3.connect(path)
    old.executescript("".join(db.MIGRATIONS[:2]) + "PRAGMA user_version = 2;")
    ranked = world.by_popularity[: walked or count]
    old.executemany(
        "INSERT INTO bert_anime (anime_id, title_romaji, popularity, popularity_rank) "
        "VALUES (?, ?, ?, ?)",
        [(m["id"], m["title"]["romaji"], m["popularity"], i + 1) for i, m in enumerate(ranked)],
    )
    for user in world.users:
        old.execute(
            "INSERT INTO bert_users (user_name, user_id, state, entry_count, source) "
            "VALUES (?, ?, 'loaded', ?, 'file')",
            (user.name, user.id, len(user.entries)),
        )
        old.executemany(
            "INSERT OR IGNORE INTO bert_user_anime_list (user_id, anime_id, status, score) "
            "VALUES (?, ?, ?, ?)",
            [(user.id, e["mediaId"], e["status"], e["score"] or None) for e in user.entries],
        )
    position = {"ranked": len(ranked), "page": len(ranked) // 50 + 1, "finished": not walked}
    old.execute(
        "INSERT INTO bert_meta (key, value) VALUES (?, ?)",
        (stage.PROGRESS_KEY, json.dumps({"count": count, **position})),
    )
    old.commit()
    old.close()


def user_rows(db_path) -> list[tuple]:
    conn = sqlite3.connect(db_path)
    rows = conn.execute("SELECT * FROM bert_users ORDER BY user_name").fetchall()
    rows += conn.execute("SELECT * FROM bert_user_anime_list ORDER BY user_id, anime_id").fetchall()
    conn.close()
    return rows


def test_a_version_2_store_gets_relations_and_covers_by_id_keeping_every_user_row(tmp_path):
    world = generate_world(200, 40, seed=5)
    db_path = tmp_path / "bert.db"
    version_2_store(db_path, world, 120)
    users_before = user_rows(db_path)
    with FakeAniList(world) as api:
        filled = prepare(api.url, db_path, "--count", "120")
        fill_log = list(api.log)
        refreshed = prepare(api.url, db_path, "--count", "120")
        refresh_log = api.log[len(fill_log) :]
    assert filled.returncode == 0, filled.stderr
    # No walk and no user: three requests by id, 50 titles each at most.
    assert [len(r["variables"]["ids"]) for r in fill_log] == [50, 50, 20]
    assert all("id_in" in r["query"] and "MediaList" not in r["query"] for r in fill_log)
    assert "fetching the relations and covers of the 120 titles" in filled.stderr
    assert "fetched by id for 120 titles stored without them (3 requests)" in filled.stdout
    assert "its walk was complete and is not repeated" in filled.stdout
    assert user_rows(db_path) == users_before  # every user and list row, unchanged
    conn = db.connect(db_path, create=False)
    assert db.schema_version(conn) == db.SCHEMA_VERSION
    ranked = db.ranked_anime_ids(conn, 120)
    assert db.load_relations(conn) == world_edges(world, ranked)
    assert all(a.cover_large and a.site_url for a in db.load_catalogue(conn))
    assert [a.title_romaji for a in db.load_catalogue(conn)] == [
        m["title"]["romaji"] for m in world.by_popularity[:120]
    ]  # the old columns are left as they were
    # Nothing missing any more: the next run is an ordinary walk, relations in its pages.
    assert refreshed.returncode == 0, refreshed.stderr
    assert [r["variables"].get("page") for r in refresh_log] == [1, 2, 3]
    assert user_rows(db_path) == users_before


def test_an_interrupted_version_2_walk_carries_on_and_asks_by_id_only_for_the_old_pages(tmp_path):
    world = generate_world(200, 10, seed=5)
    db_path = tmp_path / "bert.db"
    version_2_store(db_path, world, 150, walked=50)
    with FakeAniList(world) as api:
        done = prepare(api.url, db_path, "--count", "150")
        log = list(api.log)
    assert done.returncode == 0, done.stderr
    assert [r["variables"].get("page") for r in log[:2]] == [2, 3]
    assert [len(r["variables"]["ids"]) for r in log[2:]] == [50]  # page 1's titles, by id
    conn = db.connect(db_path, create=False)
    assert db.load_relations(conn) == world_edges(world, db.ranked_anime_ids(conn, 150))
    assert db.anime_ids_without_relations(conn) == []


def test_bad_relation_and_cover_answers_are_survived_and_asked_again(tmp_path):
    media = catalogue(60)
    media[4]["relations"] = None  # title 5: no relations list at all
    media[5]["coverImage"] = None  # title 6: no cover
    media[6]["relations"] = {"edges": [None, {"relationType": "SEQUEL", "node": None}]}
    media[7]["siteUrl"] = None
    db_path = tmp_path / "bert.db"
    with FakeAniList(World(media)) as api:
        first = prepare(api.url, db_path, "--count", "60")
        again = prepare(api.url, db_path, "--count", "60")
        asked = [r["variables"].get("ids") for r in api.log]
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    # The walk's 2 pages, then title 5 by id; the next run asks for title 5 only.
    assert asked == [None, None, [5], [5]]
    assert "1 titles came back without relations" in first.stdout
    assert "1 titles came back without relations" in again.stdout
    conn = db.connect(db_path, create=False)
    assert db.anime_ids_without_relations(conn) == [5]
    assert db.load_relations(conn) == {}
    catalogue_rows = {a.anime_id: a for a in db.load_catalogue(conn)}
    assert catalogue_rows[6].cover_large is None and catalogue_rows[6].cover_medium is None
    assert catalogue_rows[8].site_url is None and catalogue_rows[8].cover_large
    assert "59 of 60 titles with a cover" in first.stdout
