"""Stage 1: the most popular anime from AniList into `bert_anime`, ranked by popularity.

Each page is stored together with the walk's position (in `bert_meta`), in one transaction, so
an interrupted walk carries on from its last stored page when run again with the same count.
A finished walk is simply done again on the next run: rows are updated, never duplicated.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace

from bert4rec import db
from bert4rec.anilist import PAGE_DEPTH_CAP, AniListClient, CataloguePosition

DEFAULT_COUNT = 3000  # the spec: the 3000 most popular anime
PROGRESS_KEY = "catalogue_walk"


@dataclass(frozen=True)
class CatalogueResult:
    count: int  # titles asked for
    ranked: int  # titles stored with ranks 1..ranked
    pages: int  # pages read by this run
    resumed_at: int  # titles already ranked by an interrupted run (0: a fresh walk)
    unranked: int  # older titles that fell out of the top `count` (rows kept, rank cleared)

    @property
    def exhausted(self) -> bool:
        """AniList had fewer titles than asked for."""
        return self.ranked < self.count


def saved_position(conn: sqlite3.Connection, count: int) -> CataloguePosition | None:
    """The position of an unfinished walk for the same `count`, if one was interrupted."""
    try:
        saved = json.loads(db.get_meta(conn, PROGRESS_KEY) or "null")
        if not isinstance(saved, dict) or saved.get("count") != count:
            return None
        position = CataloguePosition.from_dict(saved)
    except (ValueError, TypeError):
        return None  # unreadable progress: start over, which is always safe
    return None if position.finished else position


def prepare_catalogue(
    client: AniListClient,
    conn: sqlite3.Connection,
    count: int,
    *,
    on_page: Callable[[int, CataloguePosition], None] | None = None,
    depth_cap: int = PAGE_DEPTH_CAP,
) -> CatalogueResult:
    """Fetch and store the `count` most popular anime; `on_page(new_titles, position)` after
    each stored page."""
    start = saved_position(conn, count)
    seen = db.ranked_anime_ids(conn, start.ranked) if start else set()
    position = start or CataloguePosition()
    pages = 0
    walk = client.walk_catalogue(count, start=position, seen=seen, depth_cap=depth_cap)
    for animes, position in walk:  # noqa: B020 (position: the last one is wanted after)
        db.store_catalogue_page(conn, animes, PROGRESS_KEY, _progress(count, position))
        pages += 1
        if on_page is not None:
            on_page(len(animes), position)
    done = replace(position, finished=True)
    unranked = db.finish_catalogue(conn, done.ranked, PROGRESS_KEY, _progress(count, done))
    return CatalogueResult(count, done.ranked, pages, start.ranked if start else 0, unranked)


def _progress(count: int, position: CataloguePosition) -> str:
    return json.dumps({"count": count, **position.to_dict()})
