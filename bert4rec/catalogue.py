"""Stage 1: the most popular anime from AniList into `bert_anime`, ranked by popularity, with
their covers, AniList pages and relations (`bert_anime_relation`).

Each page is stored together with its titles' relations and the walk's position (in
`bert_meta`), in one transaction, so an interrupted walk carries on from its last stored page
when run again with the same count. A finished walk is simply done again on the next run: rows
are updated, never duplicated.

Ranked titles whose relations were never fetched (a store made by an older version, or a title
that came back without them) are then asked for by id, 50 a request. When that is all a store
lacks (its walk for the same count is finished), the run does only that and walks nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace

from bert4rec import db
from bert4rec.anilist import PAGE_DEPTH_CAP, PER_PAGE, AniListClient, CataloguePosition

DEFAULT_COUNT = 3000  # the original design: the 3000 most popular
PROGRESS_KEY = "catalogue_walk"


@dataclass(frozen=True)
class CatalogueResult:
    count: int  # titles asked for
    ranked: int  # titles stored with ranks 1..ranked
    pages: int  # pages read by this run
    resumed_at: int  # titles already ranked by an interrupted run (0: a fresh walk)
    unranked: int  # older titles that fell out of the top `count` (rows kept, rank cleared)
    walked: bool = True  # False: the walk was already complete; only relations were fetched
    links_requests: int = 0  # requests that asked for stored titles' relations and covers by id
    links_filled: int = 0  # titles whose relations and covers those requests stored
    links_missing: int = 0  # ranked titles still without relations (AniList did not say)

    @property
    def exhausted(self) -> bool:
        """AniList had fewer titles than asked for."""
        return self.ranked < self.count


def saved_position(conn: sqlite3.Connection, count: int) -> CataloguePosition | None:
    """The position of an unfinished walk for the same `count`, if one was interrupted."""
    position = _stored_position(conn, count)
    return None if position is None or position.finished else position


def _stored_position(conn: sqlite3.Connection, count: int) -> CataloguePosition | None:
    try:
        saved = json.loads(db.get_meta(conn, PROGRESS_KEY) or "null")
        if not isinstance(saved, dict) or saved.get("count") != count:
            return None
        return CataloguePosition.from_dict(saved)
    except (ValueError, TypeError):
        return None  # unreadable progress: start over, which is always safe


def titles_without_links(conn: sqlite3.Connection, count: int) -> list[int]:
    """Ranked titles (1..count) whose relations and covers were never fetched, most popular
    first."""
    ranked = db.ranked_anime_ids(conn, count)
    return [i for i in db.anime_ids_without_relations(conn) if i in ranked]


def only_links_missing(conn: sqlite3.Connection, count: int) -> bool:
    """The walk for `count` is complete and only some titles' relations and covers are missing:
    a run fetches those by id instead of walking the catalogue again."""
    position = _stored_position(conn, count)
    complete = position is not None and position.finished
    return complete and bool(titles_without_links(conn, count))


def prepare_catalogue(
    client: AniListClient,
    conn: sqlite3.Connection,
    count: int,
    *,
    on_page: Callable[[int, CataloguePosition], None] | None = None,
    on_links: Callable[[int, int], None] | None = None,
    depth_cap: int = PAGE_DEPTH_CAP,
) -> CatalogueResult:
    """Fetch and store the `count` most popular anime with their relations and covers;
    `on_page(new_titles, position)` after each stored page, `on_links(titles_done, titles)`
    after each stored batch of relations fetched by id."""
    if only_links_missing(conn, count):
        ranked = len(db.ranked_anime_ids(conn, count))
        result = CatalogueResult(count, ranked, 0, 0, 0, walked=False)
    else:
        result = _walk(client, conn, count, on_page, depth_cap)
    requests, filled, missing = fill_links(client, conn, count, on_links=on_links)
    return replace(result, links_requests=requests, links_filled=filled, links_missing=missing)


def _walk(
    client: AniListClient,
    conn: sqlite3.Connection,
    count: int,
    on_page: Callable[[int, CataloguePosition], None] | None,
    depth_cap: int,
) -> CatalogueResult:
    start = saved_position(conn, count)
    seen = db.ranked_anime_ids(conn, start.ranked) if start else set()
    position = start or CataloguePosition()
    pages = 0
    for page in client.walk_catalogue(count, start=position, seen=seen, depth_cap=depth_cap):
        position = page.position
        db.store_catalogue_page(
            conn, page.animes, PROGRESS_KEY, _progress(count, position), relations=page.relations
        )
        pages += 1
        if on_page is not None:
            on_page(len(page.animes), position)
    done = replace(position, finished=True)
    unranked = db.finish_catalogue(conn, done.ranked, PROGRESS_KEY, _progress(count, done))
    return CatalogueResult(count, done.ranked, pages, start.ranked if start else 0, unranked)


def fill_links(
    client: AniListClient,
    conn: sqlite3.Connection,
    count: int,
    *,
    on_links: Callable[[int, int], None] | None = None,
) -> tuple[int, int, int]:
    """Ask for the relations and covers of the ranked titles that lack them, PER_PAGE a
    request, each batch stored in one transaction. Returns (requests, titles filled, titles
    still missing: AniList did not return them, or returned them without relations)."""
    missing = titles_without_links(conn, count)
    requests = filled = 0
    for start in range(0, len(missing), PER_PAGE):
        batch = missing[start : start + PER_PAGE]
        links, relations = client.fetch_links(batch)
        requests += 1
        db.store_links_and_relations(conn, links, relations)
        filled += len(relations)
        if on_links is not None:
            on_links(start + len(batch), len(missing))
    return requests, filled, len(missing) - filled


def _progress(count: int, position: CataloguePosition) -> str:
    return json.dumps({"count": count, **position.to_dict()})
