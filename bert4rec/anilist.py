"""AniList GraphQL client: paced under the rate limit, retrying what can be retried, typed errors.

Every request goes through one `Pacer`, which spaces requests evenly under the per-minute limit
and listens to the limit headers AniList sends back. Failures are sorted by the body's `errors`
first and the HTTP status second (AniList can answer 200 with errors):

    429               wait Retry-After (60 s when absent or unusable), then retry
    5xx, timeouts,    retry with exponential backoff and jitter, at most `max_retries` times
    connection loss,
    non-JSON bodies
    400, 404          never retried: RequestRejected / NotFound / PrivateUser
    403               ApiUnavailable: AniList has switched the API off, or blocked us; stop the run

Facts behind the numbers are in the project's AniList reference (queries, limits, error shapes).
Queries take user input through GraphQL variables only, never pasted into the query text.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace

import requests

from bert4rec import __version__
from bert4rec.db import RELATION_TYPES, Anime, ListEntry, Relation, TitleLinks

# Honest identification: who is calling and why. Cloudflare has refused requests without a
# Referer (reference §3.2); AniList's own site is what the common clients send.
USER_AGENT = f"bert4rec-anime/{__version__} (educational BERT4Rec anime recommender; requests)"
REFERER = "https://anilist.co/"

DEFAULT_RATE_LIMIT = 30  # requests per minute: AniList's limit while it runs degraded
PACE_HEADROOM = 0.95  # pace a little under the limit so clock skew never tips us over it
LOW_REMAINING = 2  # at this X-RateLimit-Remaining, wait for the window to end
RATE_WINDOW_SECONDS = 60.0
WINDOW_MARGIN_SECONDS = 1.0
DEFAULT_RETRY_AFTER = 60.0  # AniList's lockout is one minute
MAX_RATE_LIMIT_WAITS = 5  # 429s in a row before giving up on one request

DEFAULT_TIMEOUT = 30.0  # seconds to connect and between bytes of the answer
DEFAULT_MAX_RETRIES = 4  # transient failures of one request before giving up
BACKOFF_FIRST_SECONDS = 2.0  # then x3 per failure: 2, 6, 18, 54 (plus jitter)
BACKOFF_MAX_SECONDS = 120.0

PER_PAGE = 50  # Page.perPage maximum
PAGE_DEPTH_CAP = 5000  # AniList refuses page * perPage above this
PER_CHUNK = 500  # MediaListCollection.perChunk maximum
MAX_CHUNKS = 30  # MediaListCollection returns at most 11,000 entries: 22 chunks of 500
WATCHED_STATUSES = ("COMPLETED", "CURRENT", "REPEATING", "DROPPED", "PAUSED")

# What the catalogue learns besides the metadata: covers, the AniList page, and how the title
# relates to others (only anime are kept: manga and novels are not in the catalogue). Version 2
# of relationType has SOURCE, COMPILATION and CONTAINS.
LINK_FIELDS = """
      coverImage { medium large }
      siteUrl
      relations { edges { relationType(version: 2) node { id type } } }"""

# AniList caps a query's complexity at 500: each field costs 1 plus what it selects, whatever
# perPage says (see simulator.query_complexity). This page costs 40, so relations and covers
# come in the catalogue's own requests, 50 titles each.
POPULAR_ANIME_QUERY = f"""
query PopularAnime($page: Int!, $perPage: Int = 50, $popularityBelow: Int) {{
  Page(page: $page, perPage: $perPage) {{
    pageInfo {{ currentPage perPage hasNextPage }}
    media(type: ANIME, sort: [POPULARITY_DESC, ID], popularity_lesser: $popularityBelow) {{
      id
      idMal
      title {{ romaji english native }}
      genres
      tags {{ name }}
      format
      status(version: 2)
      episodes
      duration
      averageScore
      meanScore
      popularity
      favourites
      startDate {{ year month day }}
      season
      seasonYear
      isAdult{LINK_FIELDS}
    }}
  }}
}}
"""

# The same for stored titles by id (a store made before relations were fetched): 50 a request.
ANIME_LINKS_QUERY = f"""
query AnimeLinks($ids: [Int], $perPage: Int = 50) {{
  Page(page: 1, perPage: $perPage) {{
    media(id_in: $ids, type: ANIME) {{
      id{LINK_FIELDS}
    }}
  }}
}}
"""

USER_QUERY = """
query UserByName($name: String!) {
  User(name: $name) {
    id
    name
    statistics { anime { count } }
  }
}
"""

USER_LIST_QUERY = """
query UserAnimeList($userId: Int, $userName: String, $chunk: Int = 1, $perChunk: Int = 500) {
  MediaListCollection(userId: $userId, userName: $userName, type: ANIME, chunk: $chunk,
                      perChunk: $perChunk, forceSingleCompletedList: true) {
    hasNextChunk
    user { id name }
    lists {
      name
      isCustomList
      entries {
        id
        mediaId
        status
        score(format: POINT_100)
        progress
        repeat
        createdAt
        updatedAt
        startedAt { year month day }
        completedAt { year month day }
      }
    }
  }
}
"""

RECENT_WATCHERS_QUERY = """
query RecentWatchers($mediaId: Int!, $page: Int!, $perPage: Int = 50) {
  Page(page: $page, perPage: $perPage) {
    pageInfo { hasNextPage }
    mediaList(mediaId: $mediaId, type: ANIME,
              status_in: [COMPLETED, CURRENT, REPEATING, DROPPED, PAUSED],
              sort: [UPDATED_TIME_DESC]) {
      user { id name statistics { anime { count } } }
    }
  }
}
"""


# --- errors ----------------------------------------------------------------------------------


class AniListError(Exception):
    """Anything that stopped a request from giving an answer. `status` is AniList's code."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RequestRejected(AniListError):
    """AniList refused this request (HTTP 4xx); sending it again cannot help."""


class NotFound(RequestRejected):
    """404 "Not Found.": no such user (or title)."""


class PrivateUser(RequestRejected):
    """404 "Private User": the profile or list is not public."""


class PageDepthExceeded(RequestRejected):
    """400: page * perPage went past AniList's 5000-entry cap."""


class ApiUnavailable(AniListError):
    """403: AniList has disabled its API or blocked this address. Stop and try much later."""


class RetriesExhausted(AniListError):
    """Transient failures (5xx, timeouts, broken answers) or 429s went on too long."""


class ApiUnreachable(RetriesExhausted):
    """No connection to the API at all: offline, wrong --api-url, or a firewall."""


class _RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after


class _Transient(Exception):
    def __init__(self, problem: str, *, unreachable: bool = False) -> None:
        super().__init__(problem)
        self.unreachable = unreachable


# --- pacing ----------------------------------------------------------------------------------


class Pacer:
    """Spaces requests evenly under a per-minute limit; every wait of the client goes through it.

    The limit is `requests_per_minute` when given, else what the server advertises in
    X-RateLimit-Limit, else DEFAULT_RATE_LIMIT. When X-RateLimit-Remaining falls to
    LOW_REMAINING the pacer holds until the server's minute window should have ended.
    `clock` and `sleep` are injectable so tests run on a fake clock.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_minute is not None and requests_per_minute <= 0:
            raise ValueError(f"rate limit must be positive, got {requests_per_minute}")
        self.override = requests_per_minute
        self.limit = float(requests_per_minute or DEFAULT_RATE_LIMIT)
        self.clock = clock
        self._sleep = sleep
        self._next_at = -math.inf
        self._window_started: float | None = None
        self._last_remaining: int | None = None
        self._lock = threading.Lock()

    @property
    def interval(self) -> float:
        return RATE_WINDOW_SECONDS / (self.limit * PACE_HEADROOM)

    def wait(self) -> float:
        """Sleep until the next request may go; returns the time it goes."""
        with self._lock:
            now = self.clock()
            if now < self._next_at:
                self._sleep(self._next_at - now)
                now = max(self.clock(), self._next_at)
            self._next_at = now + self.interval
            return now

    def hold(self, seconds: float) -> None:
        """No request before `seconds` from now (429 waits and retry backoff)."""
        with self._lock:
            self._next_at = max(self._next_at, self.clock() + seconds)

    def observe(self, sent_at: float, limit: int | None, remaining: int | None) -> None:
        """Adapt to X-RateLimit-Limit / -Remaining of the answer to a request sent at `sent_at`."""
        with self._lock:
            if limit and limit > 0 and self.override is None and limit != self.limit:
                self.limit = float(limit)
                self._next_at = sent_at + self.interval  # re-space from the request just sent
            if remaining is None:
                return
            fresh_window = (limit is not None and remaining >= limit - 1) or (
                self._last_remaining is not None and remaining > self._last_remaining
            )
            if fresh_window:
                self._window_started = sent_at
            self._last_remaining = remaining
            if remaining <= LOW_REMAINING:
                now = self.clock()
                started = self._window_started
                end = -math.inf if started is None else started + RATE_WINDOW_SECONDS
                if end <= now:  # no idea where the window began, or a wrong one: a whole one
                    end = now + RATE_WINDOW_SECONDS
                self._next_at = max(self._next_at, end + WINDOW_MARGIN_SECONDS)


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserProfile:
    user_id: int
    name: str
    anime_count: int | None = None  # AniList's statistics.anime.count


@dataclass(frozen=True)
class UserList:
    user_id: int
    name: str
    entries: tuple[ListEntry, ...]

    @property
    def watched_count(self) -> int:
        return sum(1 for e in self.entries if e.watched)


@dataclass(frozen=True)
class CataloguePage:
    """One page of a catalogue walk: its new titles, their relations, the walk's position after
    it. `relations` holds the titles whose answer had a relations list (maybe empty); a title
    missing from it came back without one and is asked for again by id."""

    animes: list[Anime]
    relations: dict[int, list[Relation]]
    position: CataloguePosition


@dataclass(frozen=True)
class CataloguePosition:
    """How far a catalogue walk has got, so an interrupted walk can carry on (JSON-able).

    The walk reads pages of titles by popularity; past the page-depth cap it starts a new window
    of titles with popularity below `popularity_below`.
    """

    ranked: int = 0  # titles ranked so far; the next new title gets rank ranked + 1
    page: int = 1  # next page inside the current window
    popularity_below: int | None = None  # the window's bound (None: the whole catalogue)
    window_new: int = 0  # new titles the current window has brought
    lowest_popularity: int | None = None  # popularity of the last title read
    finished: bool = False  # the count is reached or the catalogue has no more titles

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> CataloguePosition:
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})


# --- the client ------------------------------------------------------------------------------


class AniListClient:
    """Sends GraphQL to one AniList endpoint under a shared pacer; see the module docstring."""

    def __init__(
        self,
        api_url: str,
        *,
        rate_limit: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        notify: Callable[[str], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.api_url = api_url
        self.pacer = Pacer(rate_limit, clock=clock, sleep=sleep)
        self.timeout = timeout
        self.max_retries = max_retries
        self.rng = rng or random.Random()
        self.notify = notify or (lambda message: None)
        self.session = session or requests.Session()
        self.session.headers.update(
            {"User-Agent": USER_AGENT, "Referer": REFERER, "Accept": "application/json"}
        )
        self.requests_sent = 0
        self.rate_limited = 0  # 429 answers received

    def close(self) -> None:
        self.session.close()

    # -- one request, with pacing and retries --

    def query(self, query: str, variables: dict) -> dict:
        """POST one query and return its `data`; raises an AniListError subclass on failure.

        Variables whose value is None are left out, which GraphQL reads as "argument not given".
        """
        variables = {k: v for k, v in variables.items() if v is not None}
        failures = rate_limits = 0
        while True:
            try:
                return self._send(query, variables)
            except _RateLimited as exc:
                self.rate_limited += 1
                rate_limits += 1
                if rate_limits > MAX_RATE_LIMIT_WAITS:
                    raise RetriesExhausted(
                        f"AniList kept answering 429 Too Many Requests ({rate_limits} times)",
                        status=429,
                    ) from None
                wait = exc.retry_after + self.rng.uniform(0, min(5.0, 0.1 * exc.retry_after))
                self.notify(f"AniList rate limit reached: waiting {wait:.0f} s")
                self.pacer.hold(wait)
            except _Transient as exc:
                failures += 1
                if failures > self.max_retries:
                    error = ApiUnreachable if exc.unreachable else RetriesExhausted
                    tries = f"{failures} attempt" + ("s" if failures > 1 else "")
                    raise error(f"{exc} (gave up after {tries})") from None
                delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 3 ** (failures - 1))
                delay *= 1 + 0.5 * self.rng.random()
                self.notify(f"{exc}; retrying in {delay:.0f} s ({failures}/{self.max_retries})")
                self.pacer.hold(delay)

    def _send(self, query: str, variables: dict) -> dict:
        sent_at = self.pacer.wait()
        self.requests_sent += 1
        try:
            response = self.session.post(
                self.api_url,
                json={"query": query, "variables": variables},
                timeout=self.timeout,
            )
        except requests.ConnectionError as exc:
            timed_out = isinstance(exc, requests.Timeout)
            raise _Transient(
                "no connection" + (" (timed out)" if timed_out else ""), unreachable=True
            ) from exc
        except (requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Transient(f"no complete answer ({type(exc).__name__})") from exc
        except requests.RequestException as exc:  # a malformed URL, say
            raise AniListError(f"cannot send a request to {self.api_url}: {exc}") from exc
        if response.status_code != 429:  # on a 429, Retry-After alone says when to go on
            self.pacer.observe(
                sent_at,
                _int_or_none(response.headers.get("X-RateLimit-Limit")),
                _int_or_none(response.headers.get("X-RateLimit-Remaining")),
            )
        return read_answer(response)

    # -- the catalogue --

    def popular_page(
        self, page: int, *, popularity_below: int | None = None
    ) -> tuple[list[dict], bool]:
        """One page of anime by popularity (most popular first): (media, hasNextPage)."""
        data = self.query(
            POPULAR_ANIME_QUERY,
            {"page": page, "perPage": PER_PAGE, "popularityBelow": popularity_below},
        )
        block = data.get("Page") or {}
        has_next = bool((block.get("pageInfo") or {}).get("hasNextPage"))
        media = block.get("media") or ()
        return [m for m in media if isinstance(m, dict) and isinstance(m.get("id"), int)], has_next

    def walk_catalogue(
        self,
        count: int,
        *,
        start: CataloguePosition | None = None,
        seen: Iterable[int] = (),
        depth_cap: int = PAGE_DEPTH_CAP,
    ) -> Iterator[CataloguePage]:
        """The `count` most popular anime, page by page, ranked 1..count in popularity order.

        Yields each page's new titles and their relations with the position after it; a walk
        resumed from that position (with `seen` = the ids already ranked) carries on where it
        stopped. Stops on an empty page even when hasNextPage says true. Past the page-depth cap
        it goes on in windows of lower popularity, dropping titles it has already ranked.
        """
        position = start or CataloguePosition()
        seen = set(seen)
        pages_per_window = max(1, depth_cap // PER_PAGE)
        while not position.finished and position.ranked < count:
            if position.page > pages_per_window:
                position = _next_window(position)
                continue
            try:
                media, has_next = self.popular_page(
                    position.page, popularity_below=position.popularity_below
                )
            except PageDepthExceeded:
                if position.page == 1:
                    raise
                position = _next_window(position)  # the server's cap is lower than we thought
                continue
            new = [m for m in media if m["id"] not in seen][: count - position.ranked]
            animes = [anime_from_media(m, position.ranked + i + 1) for i, m in enumerate(new)]
            relations = _relations_by_title(new)
            seen.update(a.anime_id for a in animes)
            ranked = position.ranked + len(animes)
            position = replace(
                position,
                ranked=ranked,
                page=position.page + 1,
                window_new=position.window_new + len(animes),
                lowest_popularity=_popularity(media[-1]) if media else position.lowest_popularity,
                finished=not media or not has_next or ranked >= count,
            )
            yield CataloguePage(animes, relations, position)

    def fetch_links(
        self, anime_ids: Sequence[int]
    ) -> tuple[list[TitleLinks], dict[int, list[Relation]]]:
        """Covers, page URLs and relations of up to PER_PAGE titles by id, in one request:
        (links, relations by title). Titles AniList does not return are in neither; one that
        comes back without a relations list is only in the links."""
        if not 0 < len(anime_ids) <= PER_PAGE:
            raise ValueError(f"ask for 1 to {PER_PAGE} titles at a time, not {len(anime_ids)}")
        data = self.query(ANIME_LINKS_QUERY, {"ids": list(anime_ids), "perPage": PER_PAGE})
        asked = set(anime_ids)
        media = [
            m
            for m in (data.get("Page") or {}).get("media") or ()
            if isinstance(m, dict) and m.get("id") in asked
        ]
        return [links_from_media(m) for m in media], _relations_by_title(media)

    # -- users --

    def fetch_user(self, name: str) -> UserProfile:
        """The profile of `name`; raises NotFound or PrivateUser."""
        user = self.query(USER_QUERY, {"name": name}).get("User")
        if not user:
            raise NotFound(f"AniList has no user named {name!r}", status=404)
        return _profile(user)

    def fetch_user_list(
        self, *, user_id: int | None = None, user_name: str | None = None
    ) -> UserList:
        """A user's whole anime list: every chunk, every group (custom lists included), each
        title once. Raises NotFound or PrivateUser."""
        if user_id is None and not user_name:
            raise ValueError("give user_id or user_name")
        entries: dict[int, ListEntry] = {}  # by anime id: custom lists repeat entries
        owner: dict = {}
        for chunk in range(1, MAX_CHUNKS + 1):
            variables = {"userId": user_id, "userName": user_name, "chunk": chunk}
            collection = self.query(USER_LIST_QUERY, {**variables, "perChunk": PER_CHUNK}).get(
                "MediaListCollection"
            )
            if not collection:
                raise NotFound(f"AniList returned no list for {user_name or user_id}", status=404)
            owner = collection.get("user") or owner
            before = len(entries)
            for group in collection.get("lists") or ():
                for item in (group or {}).get("entries") or ():
                    if item and item.get("mediaId") is not None and item.get("status"):
                        entries.setdefault(item["mediaId"], entry_from_list_item(item))
            # An empty chunk ends the walk even if hasNextChunk said otherwise.
            if not collection.get("hasNextChunk") or len(entries) == before:
                break
        if owner.get("id") is None:
            raise RequestRejected(f"AniList's list for {user_name or user_id} names no owner")
        return UserList(owner["id"], owner.get("name") or str(user_name), tuple(entries.values()))

    def recent_watchers(self, media_id: int, page: int = 1) -> tuple[list[UserProfile], bool]:
        """Users who most recently updated `media_id` on their list (not PLANNING), with their
        list size from statistics: (users, hasNextPage). Private users are not listed."""
        data = self.query(
            RECENT_WATCHERS_QUERY, {"mediaId": media_id, "page": page, "perPage": PER_PAGE}
        )
        block = data.get("Page") or {}
        users = [
            _profile(item["user"])
            for item in block.get("mediaList") or ()
            if item and item.get("user") and item["user"].get("id") is not None
        ]
        return users, bool((block.get("pageInfo") or {}).get("hasNextPage"))


def _next_window(position: CataloguePosition) -> CataloguePosition:
    """Start a window below the last popularity read. Titles tied at that popularity are read
    again and dropped as seen; if a whole window brought nothing new (more ties than the cap
    holds), step strictly below them instead of reading the same window forever."""
    if position.lowest_popularity is None:
        return replace(position, finished=True)
    below = position.lowest_popularity + (1 if position.window_new else 0)
    if position.popularity_below is not None and below >= position.popularity_below:
        below = position.popularity_below - 1
    if below <= 0:
        return replace(position, finished=True)
    return replace(position, page=1, popularity_below=below, window_new=0)


# --- reading answers -------------------------------------------------------------------------


def read_answer(response: requests.Response) -> dict:
    """The `data` of a good answer; otherwise raise what the answer means (see module docstring).

    The body's `errors` decide first (AniList can send errors with HTTP 200), the HTTP status
    second.
    """
    http_status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        first = errors[0] if isinstance(errors, list) and isinstance(errors[0], dict) else {}
        message = str(first.get("message") or "AniList reported an error")
        status = _int_or_none(first.get("status")) or http_status
        if status < 400:  # errors without an error status: a rejected query
            status = http_status if http_status >= 400 else 400
        _raise_for_status(status, message, response)
    if http_status >= 400:
        if body is None and http_status == 404:  # a page, not AniList: the URL is wrong
            raise RequestRejected(
                f"HTTP 404 from {response.url}: is this an AniList GraphQL endpoint?", status=404
            )
        _raise_for_status(http_status, _snippet(response), response)
    if body is None:
        raise _Transient(f"answer that is not JSON (HTTP {http_status}: {_snippet(response)})")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise _Transient(f"answer without data (HTTP {http_status})")
    return data


def _raise_for_status(status: int, message: str, response: requests.Response) -> None:
    if status == 429:
        raise _RateLimited(retry_after_seconds(response.headers.get("Retry-After")))
    if status == 403:
        raise ApiUnavailable(message, status=403)
    if status == 404:
        if message.strip().rstrip(".").lower() == "private user":
            raise PrivateUser(message, status=404)
        raise NotFound(message, status=404)
    if status == 400 and "page depth" in message.lower():
        raise PageDepthExceeded(message, status=400)
    if 400 <= status < 500:
        raise RequestRejected(f"HTTP {status}: {message}", status=status)
    raise _Transient(f"server error (HTTP {status}: {message})")


def retry_after_seconds(header: str | None) -> float:
    """Seconds to wait after a 429: the Retry-After header, or 60 when it is absent, zero or not
    a number (it has been seen at 0)."""
    seconds = _float_or_none(header)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return DEFAULT_RETRY_AFTER
    return seconds


def _snippet(response: requests.Response, limit: int = 120) -> str:
    text = " ".join((response.text or "").split())
    return text[:limit] + ("..." if len(text) > limit else "") or "empty body"


def _int_or_none(value: object) -> int | None:
    number = _float_or_none(value)
    return int(number) if number is not None and math.isfinite(number) else None


def _float_or_none(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


# --- AniList objects -> store records --------------------------------------------------------


def anime_from_media(media: dict, rank: int | None = None) -> Anime:
    """A catalogue row from an AniList Media object."""
    title = media.get("title") or {}
    start = media.get("startDate") or {}
    return Anime(
        anime_id=media["id"],
        id_mal=media.get("idMal"),
        title_romaji=title.get("romaji"),
        title_english=title.get("english"),
        title_native=title.get("native"),
        genres=tuple(g for g in media.get("genres") or () if g),
        format=media.get("format"),
        status=media.get("status"),
        episodes=media.get("episodes"),
        average_score=media.get("averageScore"),
        mean_score=media.get("meanScore"),
        popularity=media.get("popularity"),
        favourites=media.get("favourites"),
        start_year=start.get("year"),
        start_month=start.get("month"),
        start_day=start.get("day"),
        season=media.get("season"),
        season_year=media.get("seasonYear"),
        duration=media.get("duration"),
        is_adult=bool(media.get("isAdult")),
        tags=tuple(t["name"] for t in media.get("tags") or () if t and t.get("name")),
        popularity_rank=rank,
        **_link_fields(media),
    )


def links_from_media(media: dict) -> TitleLinks:
    """The cover URLs and AniList page of a Media object (None where it has none)."""
    return TitleLinks(media["id"], **_link_fields(media))


def _link_fields(media: dict) -> dict[str, str | None]:
    cover = media.get("coverImage")
    cover = cover if isinstance(cover, dict) else {}
    return {
        "cover_medium": _url_or_none(cover.get("medium")),
        "cover_large": _url_or_none(cover.get("large")),
        "site_url": _url_or_none(media.get("siteUrl")),
    }


def _url_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None


def relations_from_media(media: dict) -> list[Relation] | None:
    """The edges of a Media object to other anime, each once, in AniList's order; None when the
    answer has no relations list at all (unknown, not "none").

    Edges to manga or novels, null edges or nodes, and relation types this program does not
    know (AniList may add some) are left out.
    """
    relations = media.get("relations")
    edges = relations.get("edges") if isinstance(relations, dict) else None
    if not isinstance(edges, list):
        return None
    found: dict[tuple[int, str], Relation] = {}
    for edge in edges:
        node = edge.get("node") if isinstance(edge, dict) else None
        if not isinstance(node, dict) or node.get("type") != "ANIME":
            continue
        related, kind = node.get("id"), edge.get("relationType")
        if isinstance(related, int) and related != media["id"] and kind in RELATION_TYPES:
            found.setdefault((related, kind), Relation(media["id"], related, kind))
    return list(found.values())


def _relations_by_title(media: Iterable[dict]) -> dict[int, list[Relation]]:
    """Title id -> its edges, for the titles whose answer had a relations list."""
    found = {}
    for m in media:
        edges = relations_from_media(m)
        if edges is not None:
            found[m["id"]] = edges
    return found


def entry_from_list_item(item: dict) -> ListEntry:
    """A list entry from an AniList MediaList object (score already in POINT_100)."""
    score = item.get("score")
    return ListEntry(
        anime_id=item["mediaId"],
        status=item["status"],
        score=float(score) if score else None,  # 0 means "no score"
        progress=item.get("progress"),
        repeat=item.get("repeat"),
        started_at=fuzzy_date_iso(item.get("startedAt")),
        completed_at=fuzzy_date_iso(item.get("completedAt")),
        updated_at=item.get("updatedAt") or None,
        created_at=item.get("createdAt") or None,
    )


def fuzzy_date_iso(date: dict | None) -> str | None:
    """AniList FuzzyDate -> "2019-04-07", "2019-04", "2019" or None (a part without the one
    before it is dropped)."""
    date = date or {}
    year, month, day = date.get("year"), date.get("month"), date.get("day")
    if not year:
        return None
    if not month:
        return f"{year:04d}"
    if not day:
        return f"{year:04d}-{month:02d}"
    return f"{year:04d}-{month:02d}-{day:02d}"


def _profile(user: dict) -> UserProfile:
    anime = ((user.get("statistics") or {}).get("anime")) or {}
    return UserProfile(user["id"], user.get("name") or str(user["id"]), anime.get("count"))


def _popularity(media: dict) -> int:
    return int(media.get("popularity") or 0)
