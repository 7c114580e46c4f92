"""SQLite store (`data/bert.db`): schema, migrations, reads and writes.

The table and column names below are a contract that other parts of the project and outside
checks read. Columns may be added by a new migration; none is renamed or dropped.

Every write runs inside one transaction (`with transaction(conn):`), so an interrupted run
leaves the file as it was before that write. The file is opened in WAL mode.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from . import commands

# Each migration moves the file from version i to i + 1 (PRAGMA user_version).
MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: the contract tables.
    """
    CREATE TABLE bert_anime (
        anime_id        INTEGER PRIMARY KEY,
        id_mal          INTEGER,
        title_romaji    TEXT,
        title_english   TEXT,
        title_native    TEXT,
        genres          TEXT NOT NULL DEFAULT '[]',
        format          TEXT,
        status          TEXT,
        episodes        INTEGER,
        average_score   INTEGER,
        popularity      INTEGER,
        start_year      INTEGER,
        start_month     INTEGER,
        start_day       INTEGER,
        popularity_rank INTEGER
    );
    CREATE TABLE bert_users (
        user_name   TEXT PRIMARY KEY COLLATE NOCASE,
        user_id     INTEGER UNIQUE,
        state       TEXT NOT NULL
                    CHECK (state IN ('loaded', 'too_few', 'not_found', 'private', 'failed')),
        entry_count INTEGER,
        fetched_at  INTEGER
    );
    CREATE TABLE bert_user_anime_list (
        user_id      INTEGER NOT NULL,
        anime_id     INTEGER NOT NULL,
        status       TEXT NOT NULL,
        score        REAL,
        progress     INTEGER,
        repeat       INTEGER,
        started_at   TEXT,
        completed_at TEXT,
        updated_at   INTEGER,
        created_at   INTEGER,
        PRIMARY KEY (user_id, anime_id)
    );
    """,
    # 1 -> 2: richer catalogue metadata, why a user was skipped, key-value state for resumable work.
    """
    ALTER TABLE bert_anime ADD COLUMN mean_score INTEGER;
    ALTER TABLE bert_anime ADD COLUMN favourites INTEGER;
    ALTER TABLE bert_anime ADD COLUMN season TEXT;
    ALTER TABLE bert_anime ADD COLUMN season_year INTEGER;
    ALTER TABLE bert_anime ADD COLUMN duration INTEGER;
    ALTER TABLE bert_anime ADD COLUMN is_adult INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE bert_anime ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE bert_anime ADD COLUMN fetched_at INTEGER;
    ALTER TABLE bert_users ADD COLUMN source TEXT NOT NULL DEFAULT 'file';
    ALTER TABLE bert_users ADD COLUMN message TEXT;
    CREATE INDEX bert_anime_rank ON bert_anime (popularity_rank);
    CREATE INDEX bert_user_anime_list_anime ON bert_user_anime_list (anime_id);
    CREATE TABLE bert_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2 -> 3: how titles relate (franchise order) and what they look like (cover, page).
    # relations_fetched_at is NULL until a title's edges were asked for, so a re-run of stage 1
    # knows which titles still need them (a title with no edges has an empty set, not NULL).
    """
    ALTER TABLE bert_anime ADD COLUMN cover_medium TEXT;
    ALTER TABLE bert_anime ADD COLUMN cover_large TEXT;
    ALTER TABLE bert_anime ADD COLUMN site_url TEXT;
    ALTER TABLE bert_anime ADD COLUMN relations_fetched_at INTEGER;
    CREATE TABLE bert_anime_relation (
        anime_id      INTEGER NOT NULL,
        related_id    INTEGER NOT NULL,
        relation_type TEXT NOT NULL,
        PRIMARY KEY (anime_id, related_id, relation_type)
    );
    CREATE INDEX bert_anime_relation_related ON bert_anime_relation (related_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

USER_STATES = ("loaded", "too_few", "not_found", "private", "failed")
# AniList's MediaListStatus values; every one but PLANNING counts as watched.
WATCHED_STATUSES = ("CURRENT", "COMPLETED", "DROPPED", "PAUSED", "REPEATING")
# AniList's MediaRelation values (the relationType of a relations edge).
RELATION_TYPES = (
    "ADAPTATION",
    "PREQUEL",
    "SEQUEL",
    "PARENT",
    "SIDE_STORY",
    "CHARACTER",
    "SUMMARY",
    "ALTERNATIVE",
    "SPIN_OFF",
    "OTHER",
    "SOURCE",
    "COMPILATION",
    "CONTAINS",
)


class DatabaseError(Exception):
    """The database file is missing, foreign, too new or unreadable. The message says what to do."""


@dataclass(frozen=True)
class Anime:
    anime_id: int
    title_romaji: str | None = None
    title_english: str | None = None
    title_native: str | None = None
    id_mal: int | None = None
    genres: tuple[str, ...] = ()
    format: str | None = None
    status: str | None = None
    episodes: int | None = None
    average_score: int | None = None
    mean_score: int | None = None
    popularity: int | None = None
    favourites: int | None = None
    start_year: int | None = None
    start_month: int | None = None
    start_day: int | None = None
    season: str | None = None
    season_year: int | None = None
    duration: int | None = None
    is_adult: bool = False
    tags: tuple[str, ...] = ()
    popularity_rank: int | None = None
    cover_medium: str | None = None
    cover_large: str | None = None
    site_url: str | None = None

    @property
    def title(self) -> str:
        """The title to show: English when AniList has one, else romaji, else native."""
        return self.title_english or self.title_romaji or self.title_native or f"#{self.anime_id}"


@dataclass(frozen=True)
class ListEntry:
    anime_id: int
    status: str
    score: float | None = None
    progress: int | None = None
    repeat: int | None = None
    started_at: str | None = None
    completed_at: str | None = None
    updated_at: int | None = None
    created_at: int | None = None

    @property
    def watched(self) -> bool:
        return self.status in WATCHED_STATUSES


@dataclass(frozen=True)
class UserRecord:
    user_name: str
    state: str
    user_id: int | None = None
    entry_count: int | None = None
    fetched_at: int | None = None
    source: str = "file"
    message: str | None = None


@dataclass(frozen=True)
class StoredUserList:
    user_id: int
    user_name: str
    entries: tuple[ListEntry, ...]


# --- opening and migrating -------------------------------------------------------------------


def connect(path: str | os.PathLike[str], *, create: bool = True) -> sqlite3.Connection:
    """Open (or create) the store at `path` and bring its schema up to date.

    With `create=False` a missing file raises DatabaseError instead of being created, which is
    what readers (training, recommendations) want.
    """
    path = os.fspath(path)
    if not create and not os.path.isfile(path):
        raise DatabaseError(
            f"database not found: {path}. Run {commands.launcher('1_prepare_anime')} and "
            f"{commands.launcher('2_load_users')} first, or point --db at an existing file."
        )
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn, path)
    except sqlite3.DatabaseError as exc:  # not a database, or corrupt
        raise DatabaseError(
            f"cannot use {path} as a database ({exc}). If the file is damaged, move it aside "
            "and run the data stages again."
        ) from exc
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: str = "the database") -> None:
    """Apply the missing migrations, each in its own transaction."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{path} has schema version {version}, newer than this program knows "
            f"({SCHEMA_VERSION}). Update the program, or use another --db."
        )
    if version == 0 and _table_exists(conn, "bert_anime"):
        raise DatabaseError(
            f"{path} holds a bert_anime table that another tool made (no schema version). "
            "Move the file aside or choose another --db; the data stages will build a new one."
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with transaction(conn):
            for statement in _statements(MIGRATIONS[target - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (KeyboardInterrupt included)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# --- catalogue -------------------------------------------------------------------------------

_ANIME_COLUMNS = (
    "anime_id",
    "id_mal",
    "title_romaji",
    "title_english",
    "title_native",
    "genres",
    "format",
    "status",
    "episodes",
    "average_score",
    "mean_score",
    "popularity",
    "favourites",
    "start_year",
    "start_month",
    "start_day",
    "season",
    "season_year",
    "duration",
    "is_adult",
    "tags",
    "popularity_rank",
    "cover_medium",
    "cover_large",
    "site_url",
    "fetched_at",
)


def _anime_row(anime: Anime, fetched_at: int) -> tuple:
    return (
        anime.anime_id,
        anime.id_mal,
        anime.title_romaji,
        anime.title_english,
        anime.title_native,
        json.dumps(list(anime.genres), ensure_ascii=False),
        anime.format,
        anime.status,
        anime.episodes,
        anime.average_score,
        anime.mean_score,
        anime.popularity,
        anime.favourites,
        anime.start_year,
        anime.start_month,
        anime.start_day,
        anime.season,
        anime.season_year,
        anime.duration,
        int(anime.is_adult),
        json.dumps(list(anime.tags), ensure_ascii=False),
        anime.popularity_rank,
        anime.cover_medium,
        anime.cover_large,
        anime.site_url,
        fetched_at,
    )


def upsert_anime(conn: sqlite3.Connection, animes: Iterable[Anime]) -> int:
    """Insert or update catalogue rows (keyed by anime_id) in one transaction; returns the count."""
    with transaction(conn):
        return _upsert_anime(conn, animes)


def _upsert_anime(conn: sqlite3.Connection, animes: Iterable[Anime]) -> int:
    now = int(time.time())
    rows = [_anime_row(a, now) for a in animes]
    placeholders = ", ".join("?" for _ in _ANIME_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _ANIME_COLUMNS[1:])
    conn.executemany(
        f"INSERT INTO bert_anime ({', '.join(_ANIME_COLUMNS)}) VALUES ({placeholders}) "
        f"ON CONFLICT (anime_id) DO UPDATE SET {updates}",
        rows,
    )
    return len(rows)


def store_catalogue_page(
    conn: sqlite3.Connection,
    animes: list[Anime],
    progress_key: str,
    progress: str,
    *,
    relations: Mapping[int, Iterable[Relation]] | None = None,
) -> None:
    """Store one page of a ranked catalogue walk, the edges of its titles (`relations`, as for
    store_relations) and the walk's progress, in one transaction.

    Older rows holding the ranks this page hands out lose them, so a rank always names one
    title, even while a walk is half done.
    """
    ranks = [a.popularity_rank for a in animes if a.popularity_rank is not None]
    with transaction(conn):
        if ranks:
            ids = [a.anime_id for a in animes]
            conn.execute(
                "UPDATE bert_anime SET popularity_rank = NULL "
                "WHERE popularity_rank BETWEEN ? AND ? "
                f"AND anime_id NOT IN ({', '.join('?' for _ in ids)})",
                (min(ranks), max(ranks), *ids),
            )
        _upsert_anime(conn, animes)
        _store_relations(conn, relations or {})
        _set_meta(conn, progress_key, progress)


def finish_catalogue(
    conn: sqlite3.Connection, ranked: int, progress_key: str, progress: str
) -> int:
    """End a walk that ranked 1..`ranked`: titles outside it keep their rows but lose their
    rank. Returns how many lost it."""
    with transaction(conn):
        cleared = conn.execute(
            "UPDATE bert_anime SET popularity_rank = NULL WHERE popularity_rank > ?", (ranked,)
        ).rowcount
        _set_meta(conn, progress_key, progress)
    return cleared


def ranked_anime_ids(conn: sqlite3.Connection, up_to: int) -> set[int]:
    """Ids of the titles ranked 1..`up_to`."""
    rows = conn.execute(
        "SELECT anime_id FROM bert_anime WHERE popularity_rank BETWEEN 1 AND ?", (up_to,)
    )
    return {r[0] for r in rows}


def anime_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM bert_anime").fetchone()[0])


def _anime_from_row(row: sqlite3.Row) -> Anime:
    return Anime(
        anime_id=row["anime_id"],
        id_mal=row["id_mal"],
        title_romaji=row["title_romaji"],
        title_english=row["title_english"],
        title_native=row["title_native"],
        genres=tuple(json.loads(row["genres"] or "[]")),
        format=row["format"],
        status=row["status"],
        episodes=row["episodes"],
        average_score=row["average_score"],
        mean_score=row["mean_score"],
        popularity=row["popularity"],
        favourites=row["favourites"],
        start_year=row["start_year"],
        start_month=row["start_month"],
        start_day=row["start_day"],
        season=row["season"],
        season_year=row["season_year"],
        duration=row["duration"],
        is_adult=bool(row["is_adult"]),
        tags=tuple(json.loads(row["tags"] or "[]")),
        popularity_rank=row["popularity_rank"],
        cover_medium=row["cover_medium"],
        cover_large=row["cover_large"],
        site_url=row["site_url"],
    )


def load_catalogue(conn: sqlite3.Connection) -> list[Anime]:
    """Every catalogue title, most popular first (rows without a rank last, by id)."""
    rows = conn.execute(
        "SELECT * FROM bert_anime "
        "ORDER BY popularity_rank IS NULL, popularity_rank, popularity DESC, anime_id"
    )
    return [_anime_from_row(r) for r in rows]


@dataclass(frozen=True)
class Relation:
    """One AniList relations edge: `anime_id` (a catalogue title) is related to `related_id`
    (any AniList title, in the catalogue or not) as `relation_type` (RELATION_TYPES): for
    example (2, 1, "PREQUEL") says title 1 is the prequel of title 2."""

    anime_id: int
    related_id: int
    relation_type: str


def store_relations(conn: sqlite3.Connection, relations: Mapping[int, Iterable[Relation]]) -> None:
    """Replace the edges of each title in `relations` (anime_id -> its edges, maybe none) and
    mark them fetched, in one transaction."""
    with transaction(conn):
        _store_relations(conn, relations)


def _store_relations(conn: sqlite3.Connection, relations: Mapping[int, Iterable[Relation]]) -> None:
    now = int(time.time())
    for anime_id, edges in relations.items():
        conn.execute("DELETE FROM bert_anime_relation WHERE anime_id = ?", (anime_id,))
        rows = []
        for edge in edges:
            if edge.anime_id != anime_id:
                raise ValueError(f"edge {edge} stored under title {anime_id}")
            rows.append((edge.anime_id, edge.related_id, edge.relation_type))
        conn.executemany(
            "INSERT OR IGNORE INTO bert_anime_relation (anime_id, related_id, relation_type) "
            "VALUES (?, ?, ?)",
            rows,
        )
        conn.execute(
            "UPDATE bert_anime SET relations_fetched_at = ? WHERE anime_id = ?", (now, anime_id)
        )


def load_relations(conn: sqlite3.Connection) -> dict[int, tuple[Relation, ...]]:
    """Every stored edge, by the title it starts from (titles without edges are absent)."""
    found: dict[int, list[Relation]] = {}
    rows = conn.execute(
        "SELECT anime_id, related_id, relation_type FROM bert_anime_relation "
        "ORDER BY anime_id, relation_type, related_id"
    )
    for anime_id, related_id, relation_type in rows:
        found.setdefault(anime_id, []).append(Relation(anime_id, related_id, relation_type))
    return {anime_id: tuple(edges) for anime_id, edges in found.items()}


@dataclass(frozen=True)
class TitleLinks:
    """Where a title's pictures and AniList page are (bert_anime's URL columns)."""

    anime_id: int
    cover_medium: str | None = None
    cover_large: str | None = None
    site_url: str | None = None


def store_links_and_relations(
    conn: sqlite3.Connection,
    links: Iterable[TitleLinks],
    relations: Mapping[int, Iterable[Relation]],
) -> None:
    """Set the URL columns of stored titles and replace their edges (as store_relations), in
    one transaction, leaving every other column as it is."""
    with transaction(conn):
        conn.executemany(
            "UPDATE bert_anime SET cover_medium = ?, cover_large = ?, site_url = ? "
            "WHERE anime_id = ?",
            [(t.cover_medium, t.cover_large, t.site_url, t.anime_id) for t in links],
        )
        _store_relations(conn, relations)


def relation_count(conn: sqlite3.Connection) -> int:
    """Stored edges, all titles together."""
    return int(conn.execute("SELECT COUNT(*) FROM bert_anime_relation").fetchone()[0])


def anime_ids_without_relations(conn: sqlite3.Connection) -> list[int]:
    """Catalogue titles whose edges were never fetched, most popular first."""
    rows = conn.execute(
        "SELECT anime_id FROM bert_anime WHERE relations_fetched_at IS NULL "
        "ORDER BY popularity_rank IS NULL, popularity_rank, anime_id"
    )
    return [r[0] for r in rows]


# --- users and their lists -------------------------------------------------------------------

_ENTRY_COLUMNS = (
    "user_id",
    "anime_id",
    "status",
    "score",
    "progress",
    "repeat",
    "started_at",
    "completed_at",
    "updated_at",
    "created_at",
)


def store_user_list(
    conn: sqlite3.Connection,
    user_name: str,
    user_id: int,
    entries: Iterable[ListEntry],
    *,
    state: str = "loaded",
    source: str = "file",
) -> int:
    """Replace a user's whole list and record their state, all in one transaction.

    Entries are keyed by (user_id, anime_id); a later duplicate of the same anime wins.
    Returns the number of entries stored.
    """
    _check_state(state)
    unique = {e.anime_id: e for e in entries}
    rows = [
        (
            user_id,
            e.anime_id,
            e.status,
            e.score,
            e.progress,
            e.repeat,
            e.started_at,
            e.completed_at,
            e.updated_at,
            e.created_at,
        )
        for e in unique.values()
    ]
    with transaction(conn):
        _forget_old_name(conn, user_id, user_name)
        conn.execute("DELETE FROM bert_user_anime_list WHERE user_id = ?", (user_id,))
        conn.executemany(
            f"INSERT INTO bert_user_anime_list ({', '.join(_ENTRY_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _ENTRY_COLUMNS)})",
            rows,
        )
        _upsert_user(conn, UserRecord(user_name, state, user_id, len(rows), source=source))
    return len(rows)


def record_user_outcome(
    conn: sqlite3.Connection,
    user_name: str,
    state: str,
    *,
    user_id: int | None = None,
    entry_count: int | None = None,
    message: str | None = None,
    source: str = "file",
) -> None:
    """Record why a user has no stored list (not_found, private, failed, too_few)."""
    _check_state(state)
    with transaction(conn):
        if user_id is not None:
            _forget_old_name(conn, user_id, user_name)
            conn.execute("DELETE FROM bert_user_anime_list WHERE user_id = ?", (user_id,))
        _upsert_user(
            conn, UserRecord(user_name, state, user_id, entry_count, source=source, message=message)
        )


def _forget_old_name(conn: sqlite3.Connection, user_id: int, user_name: str) -> None:
    # A renamed account keeps its id: drop the row under its old name so user_id stays unique.
    conn.execute(
        "DELETE FROM bert_users WHERE user_id = ? AND user_name != ? COLLATE NOCASE",
        (user_id, user_name),
    )


def _check_state(state: str) -> None:
    if state not in USER_STATES:
        raise ValueError(f"unknown user state {state!r}; expected one of {USER_STATES}")


def _upsert_user(conn: sqlite3.Connection, user: UserRecord) -> None:
    conn.execute(
        "INSERT INTO bert_users (user_name, user_id, state, entry_count, fetched_at, source, "
        "message) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (user_name) DO UPDATE SET user_name = excluded.user_name, "
        "user_id = excluded.user_id, state = excluded.state, "
        "entry_count = excluded.entry_count, fetched_at = excluded.fetched_at, "
        "source = excluded.source, message = excluded.message",
        (
            user.user_name,
            user.user_id,
            user.state,
            user.entry_count,
            user.fetched_at or int(time.time()),
            user.source,
            user.message,
        ),
    )


def rescreen_users(conn: sqlite3.Connection, min_anime: int) -> tuple[int, int]:
    """Move stored users between `loaded` and `too_few` by their stored watched count against
    `min_anime`, without asking AniList again. Returns (now loaded, now too_few)."""
    marks = ", ".join("?" for _ in WATCHED_STATUSES)
    watched = (
        "(SELECT COUNT(*) FROM bert_user_anime_list l WHERE l.user_id = bert_users.user_id "
        f"AND l.status IN ({marks}))"
    )
    with transaction(conn):
        promoted = conn.execute(
            f"UPDATE bert_users SET state = 'loaded' WHERE state = 'too_few' "
            f"AND user_id IS NOT NULL AND {watched} >= ?",
            (*WATCHED_STATUSES, min_anime),
        ).rowcount
        demoted = conn.execute(
            f"UPDATE bert_users SET state = 'too_few' WHERE state = 'loaded' AND {watched} < ?",
            (*WATCHED_STATUSES, min_anime),
        ).rowcount
    return promoted, demoted


def load_users(conn: sqlite3.Connection) -> dict[str, UserRecord]:
    """Every recorded user, keyed by lower-cased name."""
    rows = conn.execute("SELECT * FROM bert_users ORDER BY user_name")
    return {
        r["user_name"].lower(): UserRecord(
            user_name=r["user_name"],
            state=r["state"],
            user_id=r["user_id"],
            entry_count=r["entry_count"],
            fetched_at=r["fetched_at"],
            source=r["source"],
            message=r["message"],
        )
        for r in rows
    }


def count_users_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT state, COUNT(*) FROM bert_users GROUP BY state")
    return {state: count for state, count in rows}


def _entry_from_row(row: sqlite3.Row) -> ListEntry:
    return ListEntry(
        anime_id=row["anime_id"],
        status=row["status"],
        score=row["score"],
        progress=row["progress"],
        repeat=row["repeat"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        updated_at=row["updated_at"],
        created_at=row["created_at"],
    )


def load_histories(
    conn: sqlite3.Connection, states: tuple[str, ...] = ("loaded",)
) -> list[StoredUserList]:
    """The stored lists of users in `states` (default: those kept for training), by user id."""
    marks = ", ".join("?" for _ in states)
    users = conn.execute(
        f"SELECT user_id, user_name FROM bert_users WHERE state IN ({marks}) "
        "AND user_id IS NOT NULL ORDER BY user_id",
        states,
    ).fetchall()
    entries: dict[int, list[ListEntry]] = {u["user_id"]: [] for u in users}
    rows = conn.execute(
        "SELECT l.* FROM bert_user_anime_list l JOIN bert_users u ON u.user_id = l.user_id "
        f"WHERE u.state IN ({marks}) ORDER BY l.user_id, l.anime_id",
        states,
    )
    for row in rows:
        entries[row["user_id"]].append(_entry_from_row(row))
    return [
        StoredUserList(u["user_id"], u["user_name"], tuple(entries[u["user_id"]])) for u in users
    ]


def load_history(conn: sqlite3.Connection, user_name: str) -> StoredUserList | None:
    """One user's stored list by name (case-insensitive), whatever their state; None if absent."""
    user = conn.execute(
        "SELECT user_id, user_name FROM bert_users WHERE user_name = ? COLLATE NOCASE "
        "AND user_id IS NOT NULL",
        (user_name,),
    ).fetchone()
    if user is None:
        return None
    rows = conn.execute(
        "SELECT * FROM bert_user_anime_list WHERE user_id = ? ORDER BY anime_id",
        (user["user_id"],),
    )
    return StoredUserList(
        user["user_id"], user["user_name"], tuple(_entry_from_row(r) for r in rows)
    )


# --- key-value state -------------------------------------------------------------------------


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM bert_meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else row["value"]


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    with transaction(conn):
        _set_meta(conn, key, value)


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO bert_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
