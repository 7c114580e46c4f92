"""A fake AniList: a real threaded HTTP server on 127.0.0.1 that answers the client's GraphQL.

It serves a `World` (a catalogue of Media objects and users with their lists) in AniList's
response shapes, rate-limit headers included, and keeps AniList's rules that the client must
live with: perPage at most 50, the 5000-entry page depth (HTTP 400), MediaListCollection chunks
of at most 500 with custom lists repeating entries, 404 "Not Found." / "Private User".

It reads GraphQL for real (a small parser below): operation, variables with defaults, fields,
aliases and arguments, and it answers only the fields asked for. Unknown fields are an HTTP 400,
as on AniList, so a client asking for something the fake world lacks fails loudly, and so is a
query over AniList's complexity cap (counted as AniList counts it: see query_complexity).

It also serves the covers its Media objects name (GET /covers/medium/ID.png and
/covers/large/ID.png): small PNGs drawn in the title's colour, so an offline page has pictures.

Tests steer it:

    with FakeAniList(World(media, users), rate_limit=600) as api:
        api.fail("http500", times=2)          # the next two requests get HTTP 500
        api.fail("rate_limit", retry_after="1")
        api.fail("hang", seconds=5, when=lambda stats: stats.lists_served >= 3)
        ... point the client or a script at api.url ...
        api.stats.requests, api.log

Fault kinds: see FAULT_KINDS. A World can come from fixtures or from a generator.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import commands
from .synthetic import generate_world
from .world import COVER_SIZES, SIMULATOR_URL, FakeUser, World, make_media

MAX_PER_PAGE = 50
MAX_PER_CHUNK = 500
PAGE_DEPTH_CAP = 5000
MAX_COMPLEXITY = 500  # AniList's query complexity cap (see query_complexity)
COVER_PIXELS = {"medium": (100, 142), "large": (230, 326)}  # about AniList's cover sizes
STATUS_ORDER = ("CURRENT", "REPEATING", "COMPLETED", "PAUSED", "DROPPED", "PLANNING")
STATUS_LIST_NAMES = {
    "CURRENT": "Watching",
    "REPEATING": "Rewatching",
    "COMPLETED": "Completed",
    "PAUSED": "Paused",
    "DROPPED": "Dropped",
    "PLANNING": "Planning",
}

DISABLED_MESSAGE = (
    "The AniList API has been temporarily disabled due to severe stability issues. "
    "Please check the official AniList Discord for more information."
)
PAGE_DEPTH_MESSAGE = "Page depth exceeds maximum allowed for API requests (5000 entries)"
FAULT_KINDS = ("http500", "garbage", "hang", "disconnect", "disabled", "rate_limit", "not_found")


# --- a small GraphQL reader ------------------------------------------------------------------


class GraphQLError(Exception):
    """An error answer: AniList's `errors` entry and the HTTP status it comes with."""

    def __init__(self, status: int, message: str, root: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.root = root


@dataclass
class Variable:
    name: str


@dataclass
class Selection:
    name: str
    alias: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    fields: list[Selection] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class Operation:
    defaults: dict[str, Any]
    fields: list[Selection]


_TOKEN = re.compile(
    r"""(?P<skip>[\s,]+|\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
      | (?P<punct>\.\.\.|[{}()\[\]:=!$@])""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise GraphQLError(400, f'Syntax Error: Unexpected character "{text[pos]}".')
        pos = match.end()
        if match.lastgroup != "skip":
            tokens.append((match.lastgroup, match.group()))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise GraphQLError(400, "Syntax Error: Unexpected <EOF>.")
        kind, value = self.tokens[self.pos]
        if expected is not None and value != expected:
            raise GraphQLError(400, f'Syntax Error: Expected "{expected}", found "{value}".')
        self.pos += 1
        return kind, value

    def name(self) -> str:
        kind, value = self.take()
        if kind != "name":
            raise GraphQLError(400, f'Syntax Error: Expected Name, found "{value}".')
        return value

    def operation(self) -> Operation:
        defaults: dict[str, Any] = {}
        if self.peek() == "query":
            self.take()
            if self.peek() not in ("(", "{"):
                self.name()
            if self.peek() == "(":
                defaults = self.variable_definitions()
        elif self.peek() != "{":
            raise GraphQLError(400, "Only queries are supported by this server.")
        fields = self.selection_set()
        if self.peek() is not None:
            raise GraphQLError(400, f'Syntax Error: Unexpected "{self.peek()}".')
        return Operation(defaults, fields)

    def variable_definitions(self) -> dict[str, Any]:
        defaults: dict[str, Any] = {}
        self.take("(")
        while self.peek() != ")":
            self.take("$")
            name = self.name()
            self.take(":")
            self.type_reference()
            if self.peek() == "=":
                self.take()
                defaults[name] = self.value()
        self.take(")")
        return defaults

    def type_reference(self) -> None:
        if self.peek() == "[":
            self.take()
            self.type_reference()
            self.take("]")
        else:
            self.name()
        if self.peek() == "!":
            self.take()

    def selection_set(self) -> list[Selection]:
        self.take("{")
        fields = []
        while self.peek() != "}":
            fields.append(self.selection())
        self.take("}")
        return fields

    def selection(self) -> Selection:
        name, alias = self.name(), None
        if self.peek() == ":":
            self.take()
            alias, name = name, self.name()
        args: dict[str, Any] = {}
        if self.peek() == "(":
            self.take()
            while self.peek() != ")":
                arg = self.name()
                self.take(":")
                args[arg] = self.value()
            self.take(")")
        fields = self.selection_set() if self.peek() == "{" else []
        return Selection(name, alias, args, fields)

    def value(self) -> Any:
        kind, token = self.take()
        if token == "$":
            return Variable(self.name())
        if token == "[":
            items = []
            while self.peek() != "]":
                items.append(self.value())
            self.take("]")
            return items
        if token == "{":
            obj = {}
            while self.peek() != "}":
                key = self.name()
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        if kind == "string":
            return json.loads(token)
        if kind == "number":
            return float(token) if any(c in token for c in ".eE") else int(token)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(token, token)
        raise GraphQLError(400, f'Syntax Error: Unexpected "{token}".')


def parse_query(text: str) -> Operation:
    """Parse a GraphQL query document (one query operation, no fragments)."""
    return _Parser(text).operation()


def query_complexity(fields: list[Selection]) -> int:
    """A query's complexity as AniList counts it: every selected field costs 1 plus the cost of
    the fields selected under it, aliases counting again; arguments (perPage too) cost nothing.

    That is graphql-php's default rule, which AniList's server runs. It fits what AniList
    answered to published queries: aliased `Media(id:) { id idMal format title { romaji english
    native } startDate { year } }` cost 10 each (50 of them exactly 500) and an aliased
    `Page { pageInfo { hasNextPage } airingSchedules { episode airingAt media { id title { english
    romaji native } coverImage { extraLarge large } format seasonYear isAdult } } }` cost 18
    (29 of them "Max query complexity should be 500 but got 522").
    """
    return sum(1 + query_complexity(selection.fields) for selection in fields)


def bind(fields: list[Selection], variables: dict[str, Any], defaults: dict) -> list[Selection]:
    """The selections with variables filled into every argument; a variable with no value and
    no default leaves its argument out, as GraphQL says."""
    bound = []
    for selection in fields:
        args = {}
        for name, value in selection.args.items():
            if not isinstance(value, Variable):
                args[name] = value
            elif value.name in variables:
                args[name] = variables[value.name]
            elif value.name in defaults:
                args[name] = defaults[value.name]
        fields_bound = bind(selection.fields, variables, defaults)
        bound.append(Selection(selection.name, selection.alias, args, fields_bound))
    return bound


def project(value: Any, fields: list[Selection]) -> Any:
    """Keep only the selected fields (under their aliases); an unknown field is a 400."""
    if not fields or value is None:
        return value
    if isinstance(value, list):
        return [project(item, fields) for item in value]
    out = {}
    for selection in fields:
        if selection.name not in value:
            kind = value.get("__typename", "Object")
            raise GraphQLError(
                400, f'Cannot query field "{selection.name}" on type "{kind}".', root=None
            )
        out[selection.key] = project(value[selection.name], selection.fields)
    return out


# --- faults and statistics -------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    times: int | None = 1  # requests it hits; None = every request while `when` holds
    retry_after: str | None = "60"  # rate_limit: the Retry-After header; None leaves it out
    seconds: float = 30.0  # hang: how long the answer is held back
    status: int = 200  # garbage: the HTTP status of the non-JSON body
    when: Callable[[Stats], bool] | None = None


@dataclass
class Stats:
    requests: int = 0
    answered: Counter = field(default_factory=Counter)  # root field -> good answers
    lists_served: int = 0  # MediaListCollection answers with a list
    rate_limited: int = 0  # 429s sent, faults and real limiting alike
    faults: Counter = field(default_factory=Counter)  # fault kind -> times applied
    hanging: int = 0  # requests being held back right now


@dataclass
class Answer:
    status: int  # DROP: close the connection without a word
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


DROP = 0


def _json_answer(status: int, payload: dict, headers: dict | None = None) -> Answer:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Answer(status, body, {"Content-Type": "application/json", **(headers or {})})


def _error_answer(status: int, message: str, root: str | None = None) -> Answer:
    data = {root: None} if root else None
    return _json_answer(status, {"errors": [{"message": message, "status": status}], "data": data})


# --- the server ------------------------------------------------------------------------------


class FakeAniList:
    """The fake AniList server. Use as a context manager, or start() / stop().

    rate_limit: requests per `window_seconds` (a fixed window opened by its first request, as
    AniList's Laravel throttle does); None for no limit and no rate-limit headers.
    send_rate_headers: send X-RateLimit-Limit / -Remaining on answers.
    retry_after_header: put Retry-After on the 429s of real limiting.
    full_last_page_has_next: say hasNextPage true on an exactly full last page, as AniList
    does (recorded); the page after it is empty.
    delay: seconds every answer is held back (to catch a script mid-run).
    clock: the time source of the rate window (a test's fake clock, say).
    """

    def __init__(
        self,
        world: World,
        *,
        port: int = 0,
        rate_limit: int | None = None,
        window_seconds: float = 60.0,
        send_rate_headers: bool = True,
        retry_after_header: bool = True,
        page_depth_cap: int = PAGE_DEPTH_CAP,
        full_last_page_has_next: bool = True,
        delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.world = world
        self.port = port
        self.rate_limit = rate_limit
        self.window_seconds = window_seconds
        self.send_rate_headers = send_rate_headers
        self.retry_after_header = retry_after_header
        self.page_depth_cap = page_depth_cap
        self.full_last_page_has_next = full_last_page_has_next
        self.delay = delay
        self.clock = clock
        self.stats = Stats()
        self.log: list[dict] = []  # every request: {"query", "variables", "headers"}
        self._faults: list[Fault] = []
        self._window_start: float | None = None
        self._window_count = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def start(self) -> FakeAniList:
        handler = type("Handler", (_Handler,), {"simulator": self})
        self._closing.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # lets hanging answers go
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeAniList:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- steering --

    def fail(
        self,
        kind: str,
        times: int | None = 1,
        *,
        retry_after: str | None = "60",
        seconds: float = 30.0,
        status: int = 200,
        when: Callable[[Stats], bool] | None = None,
    ) -> None:
        """Make coming requests fail. kind: http500 (HTTP 500), garbage (a non-JSON body with
        `status`), hang (hold the answer `seconds`), disconnect (close the connection without
        answering, as a lost network does), disabled (403 API disabled), rate_limit (429,
        Retry-After `retry_after` or none), not_found (404 "Not Found.")."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append(Fault(kind, times, retry_after, seconds, status, when))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- answering --

    def answer(self, body: bytes, headers: dict[str, str]) -> Answer:
        """The whole answer to one POST body (the HTTP handler only moves bytes)."""
        with self._lock:
            self.stats.requests += 1
            fault = self._take_fault()
        if self.delay:
            self._closing.wait(self.delay)
        if fault is not None and fault.kind == "hang":
            self._hang(fault.seconds)
        elif fault is not None:
            return self._fault_answer(fault)
        with self._lock:
            limited, rate_headers = self._count_in_window()
        if limited is not None:
            return limited
        answer = self._execute(body, headers)
        answer.headers.update(rate_headers)
        return answer

    def _take_fault(self) -> Fault | None:
        for fault in self._faults:
            if fault.when is None or fault.when(self.stats):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                self.stats.faults[fault.kind] += 1
                return fault
        return None

    def _hang(self, seconds: float) -> None:
        with self._lock:
            self.stats.hanging += 1
        self._closing.wait(seconds)
        with self._lock:
            self.stats.hanging -= 1

    def _fault_answer(self, fault: Fault) -> Answer:
        if fault.kind == "http500":
            return _error_answer(500, "Internal Server Error")
        if fault.kind == "garbage":
            page = b"<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>"
            return Answer(fault.status, page, {"Content-Type": "text/html"})
        if fault.kind == "disconnect":
            return Answer(DROP, b"")
        if fault.kind == "disabled":
            return _error_answer(403, DISABLED_MESSAGE)
        if fault.kind == "not_found":
            return _error_answer(404, "Not Found.")
        with self._lock:
            self.stats.rate_limited += 1
        return self._too_many(fault.retry_after)

    def _too_many(self, retry_after: str | None) -> Answer:
        """A 429 as AniList's docs show it: Retry-After (unless None), Remaining 0."""
        headers = {}
        if self.send_rate_headers:
            limit = str(self.rate_limit or 90)
            headers = {"X-RateLimit-Limit": limit, "X-RateLimit-Remaining": "0"}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        errors = [{"message": "Too Many Requests.", "status": 429}]
        return _json_answer(429, {"data": None, "errors": errors}, headers)

    def _count_in_window(self) -> tuple[Answer | None, dict[str, str]]:
        """Count a request in the rate window: (a 429 answer or None, headers for the answer)."""
        if self.rate_limit is None:
            return None, {}
        now = self.clock()
        if self._window_start is None or now >= self._window_start + self.window_seconds:
            self._window_start, self._window_count = now, 0
        if self._window_count >= self.rate_limit:
            self.stats.rate_limited += 1
            wait = max(1, math.ceil(self._window_start + self.window_seconds - now))
            return self._too_many(str(wait) if self.retry_after_header else None), {}
        self._window_count += 1
        if not self.send_rate_headers:
            return None, {}
        remaining = self.rate_limit - self._window_count
        return None, {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
        }

    def _execute(self, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            request = json.loads(body.decode("utf-8"))
            query, variables = request["query"], request.get("variables") or {}
            if not isinstance(query, str) or not isinstance(variables, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _error_answer(400, "Must provide a JSON body with a query string.")
        with self._lock:
            self.log.append({"query": query, "variables": variables, "headers": headers})
        try:
            operation = parse_query(query)
            complexity = query_complexity(operation.fields)
            if complexity > MAX_COMPLEXITY:
                raise GraphQLError(
                    400, f"Max query complexity should be {MAX_COMPLEXITY} but got {complexity}."
                )
            roots = bind(operation.fields, variables, operation.defaults)
            data = {}
            for root in roots:
                try:
                    data[root.key] = project(self._resolve_root(root), root.fields)
                except GraphQLError as exc:
                    exc.root = exc.root or root.key
                    raise
        except GraphQLError as exc:
            return _error_answer(exc.status, exc.message, exc.root)
        with self._lock:
            for root in roots:
                self.stats.answered[root.name] += 1
                if root.name == "MediaListCollection":
                    self.stats.lists_served += 1
        return _json_answer(200, {"data": data})

    # -- root fields --

    def _resolve_root(self, root: Selection) -> Any:
        if root.name == "Page":
            return self._page(root)
        if root.name == "User":
            return self._user(root.args)
        if root.name == "MediaListCollection":
            return self._list_collection(root.args)
        raise GraphQLError(400, f'Cannot query field "{root.name}" on type "Query".')

    def _page(self, root: Selection) -> dict:
        args = root.args
        page = max(1, int(args.get("page") or 1))
        per_page = min(MAX_PER_PAGE, max(1, int(args.get("perPage") or MAX_PER_PAGE)))
        if page * per_page > self.page_depth_cap:
            raise GraphQLError(400, PAGE_DEPTH_MESSAGE)
        items: list[dict] = []
        for selection in root.fields:
            if selection.name == "media":
                items = self._media_items(selection.args)
            elif selection.name == "mediaList":
                items = self._media_list_items(selection.args)
            elif selection.name != "pageInfo":
                raise GraphQLError(400, f'Cannot query field "{selection.name}" on type "Page".')
        start = (page - 1) * per_page
        chosen = items[start : start + per_page]
        end = start + per_page
        has_next = end < len(items) or (self.full_last_page_has_next and end == len(items))
        result: dict[str, Any] = {
            "pageInfo": {
                "currentPage": page,
                "perPage": per_page,
                "hasNextPage": has_next,
                "total": min(len(items), self.page_depth_cap),  # unreliable on AniList too
                "lastPage": max(1, math.ceil(min(len(items), self.page_depth_cap) / per_page)),
            }
        }
        for selection in root.fields:
            if selection.name == "media":
                result["media"] = [self._served(m) for m in chosen]
            elif selection.name != "pageInfo":
                result[selection.name] = chosen
        return result

    def _media_items(self, args: dict) -> list[dict]:
        known = {"type", "sort", "popularity_lesser", "popularity_greater", "id_in"}
        _check_args("media", args, known)
        if args.get("type", "ANIME") != "ANIME":
            return []
        sort = args.get("sort") or ["POPULARITY_DESC", "ID"]
        if sort not in (["POPULARITY_DESC", "ID"], ["POPULARITY_DESC"], "POPULARITY_DESC"):
            raise GraphQLError(400, f"This server sorts media by POPULARITY_DESC only, not {sort}")
        below, above = args.get("popularity_lesser"), args.get("popularity_greater")
        wanted = None if args.get("id_in") is None else set(args["id_in"])
        return [
            m
            for m in self.world.by_popularity
            if (below is None or m["popularity"] < below)
            and (above is None or m["popularity"] > above)
            and (wanted is None or m["id"] in wanted)
        ]

    def _served(self, media: dict) -> dict:
        """A Media object as it goes out: cover URLs point at this server."""
        cover = media.get("coverImage")
        if not isinstance(cover, dict):
            return media
        here = self.url.rstrip("/")
        cover = {
            k: v.replace(SIMULATOR_URL, here) if isinstance(v, str) else v for k, v in cover.items()
        }
        return {**media, "coverImage": cover}

    def cover(self, path: str) -> Answer:
        """GET /covers/SIZE/ID.png: the title's cover, drawn in its colour."""
        match = re.fullmatch(r"/covers/([a-z]+)/(\d+)\.png", path)
        media = self.world.media_by_id.get(int(match.group(2))) if match else None
        if match is None or match.group(1) not in COVER_SIZES or media is None:
            return Answer(404, b"Not Found", {"Content-Type": "text/plain"})
        colour = (media.get("coverImage") or {}).get("color") or "#888888"
        width, height = COVER_PIXELS[match.group(1)]
        png = cover_png(colour, width, height, pattern=media["id"])
        return Answer(200, png, {"Content-Type": "image/png", "Cache-Control": "max-age=86400"})

    def _media_list_items(self, args: dict) -> list[dict]:
        _check_args("mediaList", args, {"mediaId", "type", "status_in", "sort"})
        if args.get("mediaId") is None:
            raise GraphQLError(400, "This server lists entries by mediaId only.")
        statuses = args.get("status_in") or STATUS_ORDER
        found = [
            {**entry, "user": user.as_user_object(), "userId": user.id}
            for user in self.world.users
            if not user.private
            for entry in user.entries
            if entry["mediaId"] == args["mediaId"] and entry["status"] in statuses
        ]
        return sorted(found, key=lambda e: -e["updatedAt"])

    def _user(self, args: dict) -> dict:
        user = self.world.user(user_id=args.get("id"), name=args.get("name"))
        if user is None:
            raise GraphQLError(404, "Not Found.")
        if user.private:
            raise GraphQLError(404, "Private User")
        return user.as_user_object()

    def _list_collection(self, args: dict) -> dict:
        if args.get("type") != "ANIME":
            raise GraphQLError(400, "This server holds anime lists only (type: ANIME).")
        if args.get("userId") is None and not args.get("userName"):
            raise GraphQLError(400, "You must provide either a userId or userName.")
        user = self.world.user(user_id=args.get("userId"), name=args.get("userName"))
        if user is None:
            raise GraphQLError(404, "Not Found.")
        if user.private:
            raise GraphQLError(404, "Private User")
        per_chunk = min(MAX_PER_CHUNK, max(1, int(args.get("perChunk") or MAX_PER_CHUNK)))
        chunk = max(1, int(args.get("chunk") or 1))
        entries = sorted(user.entries, key=lambda e: e["id"])
        in_chunk = entries[(chunk - 1) * per_chunk : chunk * per_chunk]
        return {
            "hasNextChunk": chunk * per_chunk < len(entries),
            "user": user.as_user_object(),
            "lists": self._list_groups(user, in_chunk),
        }

    def _list_groups(self, user: FakeUser, entries: list[dict]) -> list[dict]:
        media = self.world.media_by_id
        with_media = [
            {**e, "media": self._served(media.get(e["mediaId"]) or make_media(e["mediaId"], 0))}
            for e in entries
        ]
        groups = []
        for status in STATUS_ORDER:
            shown = [
                e for e in with_media if e["status"] == status and not e["hiddenFromStatusLists"]
            ]
            if shown:
                groups.append(_group(STATUS_LIST_NAMES[status], shown, status=status))
        for name, media_ids in user.custom_lists.items():
            members = [e for e in with_media if e["mediaId"] in set(media_ids)]
            if members:
                groups.append(_group(name, members, custom=True))
        return groups


def _group(name: str, entries: list[dict], *, status: str | None = None, custom=False) -> dict:
    return {
        "__typename": "MediaListGroup",
        "name": name,
        "isCustomList": custom,
        "isSplitCompletedList": False,
        "status": status,
        "entries": entries,
    }


def _check_args(field_name: str, args: dict, known: set[str]) -> None:
    unknown = sorted(set(args) - known)
    if unknown:
        raise GraphQLError(
            400, f'This server does not know argument "{unknown[0]}" of field "{field_name}".'
        )


class _Handler(BaseHTTPRequestHandler):
    simulator: FakeAniList
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms stalls

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        answer = self.simulator.answer(body, dict(self.headers.items()))
        if answer.status == DROP:
            self.close_connection = True
            return
        self._send(answer)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/covers/"):
            self._send(self.simulator.cover(self.path.split("?")[0]))
        else:
            self._send(_error_answer(400, "Must provide query string."))

    def _send(self, answer: Answer) -> None:
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a hang fault): nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # tests read stats and log, not the console


# --- covers ----------------------------------------------------------------------------------


def cover_png(colour: str, width: int, height: int, *, pattern: int = 0) -> bytes:
    """A `width` x `height` PNG (8-bit RGB): `colour` ("#rrggbb") with lighter diagonal stripes
    whose width and slant follow `pattern`, and a dark band at the foot where a title would go."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    base = bytes((red, green, blue))
    light = bytes(min(255, c + (255 - c) // 3) for c in (red, green, blue))
    dark = bytes(c * 2 // 5 for c in (red, green, blue))
    period = 12 + pattern % 5 * 4
    slant = 1 if pattern % 2 else -1
    band = height - height // 5
    rows = []
    for y in range(height):
        if y >= band:
            rows.append(b"\x00" + dark * width)
            continue
        row = bytearray(b"\x00")
        for x in range(width):
            row += light if (x + slant * y) % period < period // 3 else base
        rows.append(bytes(row))
    return _png(width, height, b"".join(rows))


def _png(width: int, height: int, raw_rows: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw_rows, 9))
        + chunk(b"IEND", b"")
    )


# --- the standalone simulator ----------------------------------------------------------------

SYNTHETIC_NOTICE = (
    "SYNTHETIC DATA: this is a local AniList simulator, not AniList. Its titles and users are "
    "generated; nothing it serves is real."
)


def write_user_names(world: World, path: str, limit: int | None = None) -> int:
    """A user file (load_users.py --users) naming the world's accounts, private ones included."""
    names = [u.name for u in world.users][:limit]
    with open(path, "w", encoding="utf-8") as out:
        out.write("# Users of the AniList simulator (synthetic accounts, not real people).\n")
        out.write("\n".join(names) + "\n")
    return len(names)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=commands.python("-m", "bert4rec.simulator"),
        description="Serve a synthetic AniList on 127.0.0.1 so the whole pipeline runs offline. "
        + SYNTHETIC_NOTICE,
    )
    parser.add_argument("--port", type=int, default=8686, help="port (default: %(default)s)")
    parser.add_argument("--media", type=int, default=600, help="titles (default: %(default)s)")
    parser.add_argument("--users", type=int, default=300, help="accounts (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="world seed (default: %(default)s)")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=90,
        help="requests per minute it allows and announces, like AniList (default: %(default)s)",
    )
    parser.add_argument(
        "--write-users",
        metavar="FILE",
        help="also write the accounts' names to FILE, for load_users.py --users FILE",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    world = generate_world(args.media, args.users, seed=args.seed)
    if args.write_users:
        count = write_user_names(world, args.write_users)
        print(f"Wrote {count} user names to {args.write_users}")
    api = FakeAniList(world, port=args.port, rate_limit=args.rate_limit)
    try:
        api.start()
    except OSError as exc:
        print(f"Cannot listen on 127.0.0.1:{args.port} ({exc}); choose another --port.")
        return 2
    print(SYNTHETIC_NOTICE)
    print(f"{len(world.media)} titles, {len(world.users)} users, {args.rate_limit} requests/min.")
    print(f"Listening on {api.url}  (use --api-url {api.url} or set ANILIST_API_URL)")
    print("Press Ctrl-C to stop.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print(f"\nStopped after {api.stats.requests} requests.")
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
