import sqlite3

import pytest

from bert4rec import db


def test_create_and_round_trip(tmp_path):
    conn = db.connect(tmp_path / "data" / "bert.db")
    assert db.schema_version(conn) == db.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.upsert_anime(conn, [db.Anime(1, "Romaji", genres=("Action",), popularity_rank=1)])
    db.upsert_anime(conn, [db.Anime(1, "Romaji 2", genres=("Drama",), popularity_rank=1)])
    (anime,) = db.load_catalogue(conn)
    assert anime.title_romaji == "Romaji 2" and anime.genres == ("Drama",)

    entries = [db.ListEntry(1, "COMPLETED", 80.0), db.ListEntry(2, "PLANNING")]
    assert db.store_user_list(conn, "Alice", 7, entries) == 2
    (hist,) = db.load_histories(conn)
    assert hist.user_name == "Alice" and [e.anime_id for e in hist.entries] == [1, 2]
    assert db.load_history(conn, "alice").user_id == 7
    # Storing again replaces the list, it never duplicates.
    db.store_user_list(conn, "Alice", 7, entries[:1])
    assert len(db.load_history(conn, "ALICE").entries) == 1


def test_renamed_user_keeps_one_row(tmp_path):
    conn = db.connect(tmp_path / "bert.db")
    db.store_user_list(conn, "OldName", 7, [db.ListEntry(1, "COMPLETED")])
    db.store_user_list(conn, "NewName", 7, [db.ListEntry(2, "COMPLETED")])
    assert list(db.load_users(conn)) == ["newname"]


def test_failed_write_leaves_nothing(tmp_path):
    conn = db.connect(tmp_path / "bert.db")
    bad = [db.ListEntry(1, "COMPLETED"), db.ListEntry(2, None)]  # NOT NULL status fails
    with pytest.raises(sqlite3.IntegrityError):
        db.store_user_list(conn, "Bob", 3, bad)
    assert db.load_users(conn) == {}
    assert conn.execute("SELECT COUNT(*) FROM bert_user_anime_list").fetchone()[0] == 0


def test_migrates_version_1_file_keeping_rows(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(db.MIGRATIONS[0] + "PRAGMA user_version = 1;")
    old.execute(
        "INSERT INTO bert_anime (anime_id, title_romaji, popularity_rank) VALUES (5, 'X', 1)"
    )
    old.commit()
    old.close()
    conn = db.connect(path)
    assert db.schema_version(conn) == db.SCHEMA_VERSION
    (anime,) = db.load_catalogue(conn)
    assert anime.anime_id == 5 and anime.tags == () and anime.is_adult is False


def test_clear_errors_for_missing_foreign_and_newer_files(tmp_path):
    with pytest.raises(db.DatabaseError, match="not found"):
        db.connect(tmp_path / "missing.db", create=False)
    foreign = tmp_path / "foreign.db"
    c = sqlite3.connect(foreign)
    c.execute("CREATE TABLE bert_anime (id INTEGER)")
    c.commit()
    c.close()
    with pytest.raises(db.DatabaseError, match="another tool"):
        db.connect(foreign)
    newer = tmp_path / "newer.db"
    c = sqlite3.connect(newer)
    c.execute("PRAGMA user_version = 99")
    c.close()
    with pytest.raises(db.DatabaseError, match="newer"):
        db.connect(newer)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(db.DatabaseError, match="cannot use"):
        db.connect(garbage)


def test_catalogue_ranks_stay_unique_while_a_walk_is_half_done(tmp_path):
    conn = db.connect(tmp_path / "bert.db")
    db.upsert_anime(conn, [db.Anime(i, popularity_rank=i) for i in (1, 2, 3)])  # an old walk
    new_page = [db.Anime(3, popularity_rank=1), db.Anime(4, popularity_rank=2)]
    db.store_catalogue_page(conn, new_page, "walk", '{"ranked": 2}')
    ranks = dict(conn.execute("SELECT anime_id, popularity_rank FROM bert_anime").fetchall())
    assert ranks == {1: None, 2: None, 3: 1, 4: 2}
    assert db.ranked_anime_ids(conn, 2) == {3, 4} and db.get_meta(conn, "walk") == '{"ranked": 2}'
    db.upsert_anime(conn, [db.Anime(5, popularity_rank=9)])
    assert db.finish_catalogue(conn, 2, "walk", "done") == 1  # rank 9 is past the walk's end
    assert [a.anime_id for a in db.load_catalogue(conn)][:2] == [3, 4]


def test_rescreen_moves_users_by_their_stored_watched_count(tmp_path):
    conn = db.connect(tmp_path / "bert.db")
    watched = [db.ListEntry(i, "COMPLETED") for i in range(3)]
    db.store_user_list(conn, "Few", 1, watched + [db.ListEntry(9, "PLANNING")], state="too_few")
    db.store_user_list(conn, "Many", 2, watched * 2 + [db.ListEntry(7, "DROPPED")])
    assert db.rescreen_users(conn, 3) == (1, 0)  # PLANNING does not count
    assert db.rescreen_users(conn, 5) == (0, 2)  # Many: 4 titles once duplicates collapse
    assert db.count_users_by_state(conn) == {"too_few": 2}


def test_migrates_version_2_file_keeping_every_row(tmp_path):
    path = tmp_path / "v2.db"
    old = sqlite3.connect(path)
    old.executescript(db.MIGRATIONS[0] + db.MIGRATIONS[1] + "PRAGMA user_version = 2;")
    old.execute(
        "INSERT INTO bert_anime (anime_id, title_romaji, popularity_rank) VALUES (5, 'X', 1)"
    )
    old.execute("INSERT INTO bert_users (user_name, user_id, state) VALUES ('A', 7, 'loaded')")
    old.execute(
        "INSERT INTO bert_user_anime_list (user_id, anime_id, status) VALUES (7, 5, 'COMPLETED')"
    )
    old.commit()
    old.close()
    conn = db.connect(path)
    assert db.schema_version(conn) == db.SCHEMA_VERSION
    (anime,) = db.load_catalogue(conn)
    assert (anime.anime_id, anime.title_romaji, anime.cover_large, anime.site_url) == (
        5,
        "X",
        None,
        None,
    )
    assert [e.anime_id for e in db.load_history(conn, "a").entries] == [5]
    assert db.anime_ids_without_relations(conn) == [5]
    assert db.load_relations(conn) == {}


def test_relations_and_covers_round_trip(tmp_path):
    conn = db.connect(tmp_path / "bert.db")
    db.upsert_anime(
        conn,
        [
            db.Anime(
                1, "S1", popularity_rank=1, cover_large="http://x/1.png", site_url="http://a/1"
            ),
            db.Anime(2, "S2", popularity_rank=2),
        ],
    )
    db.store_relations(
        conn, {2: [db.Relation(2, 1, "PREQUEL"), db.Relation(2, 99, "SUMMARY")], 1: []}
    )
    assert db.load_relations(conn) == {
        2: (db.Relation(2, 1, "PREQUEL"), db.Relation(2, 99, "SUMMARY"))
    }
    assert db.anime_ids_without_relations(conn) == []  # title 1 was asked for and has none
    db.store_relations(conn, {2: [db.Relation(2, 3, "SEQUEL")]})  # replaces, never adds up
    assert db.load_relations(conn) == {2: (db.Relation(2, 3, "SEQUEL"),)}
    first = db.load_catalogue(conn)[0]
    assert (first.cover_large, first.site_url) == ("http://x/1.png", "http://a/1")
    with pytest.raises(ValueError):
        db.store_relations(conn, {1: [db.Relation(2, 1, "PREQUEL")]})
    assert db.load_relations(conn) == {2: (db.Relation(2, 3, "SEQUEL"),)}  # rolled back
