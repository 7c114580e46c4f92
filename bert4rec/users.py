"""Stage 2: users' anime lists from AniList into `bert_user_anime_list`.

Each user's whole list is stored in one transaction together with their state, so an
interrupted run keeps every user it finished and the next run skips them. A user who cannot be
loaded is recorded as `not_found`, `private` or `failed` and the run goes on; `failed` users are
tried again on the next run. Only AniList being switched off, unreachable, or failing for several
users in a row stops the run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bert4rec import commands, db
from bert4rec.anilist import (
    AniListClient,
    ApiUnreachable,
    NotFound,
    PrivateUser,
    RequestRejected,
    RetriesExhausted,
    UserProfile,
)

DEFAULT_MIN_ANIME = 20
MAX_FAILURES_IN_A_ROW = 3  # then AniList is taken to be down and the run stops
# Discovery reads the recent watchers of the most popular titles and keeps users whose list
# size (AniList's statistics) lies between --min-anime and this: very large lists are often
# bulk imports that say little about taste.
DISCOVER_MAX_ANIME = 3000
DISCOVER_TITLES = 200  # most popular titles whose watchers are read, one page each
# Fewer users than this make a weak model: on real MyAnimeList lists (bench/bench_anime.py,
# docs/BENCHMARKS.md) EASE and the model keep gaining up to about 500 users and level off after.
USEFUL_USERS = 500
# Discovery's pace at AniList's 30 requests a minute: one request a user (the search brings the
# profile) and a page of watchers now and then, about 2 minutes per 50 users.
DISCOVERED_USERS_PER_MINUTE = 25
DISCOVER_PATIENCE = 20  # titles in a row that bring no new user before discovery gives up
DONE_STATES = ("loaded", "too_few", "not_found", "private")  # skipped unless --refresh
KEEP_ON_FAILURE = ("loaded", "too_few")  # a failed refresh leaves these as they were


def settled(known: db.UserRecord | None, refresh: bool) -> bool:
    """Whether stage 2 skips a stored name: an earlier run settled it, and no --refresh."""
    return known is not None and known.state in DONE_STATES and not refresh


class StageStopped(Exception):
    """The run cannot usefully go on (AniList failing again and again)."""


class MissingCatalogue(StageStopped):
    """--discover needs the catalogue, and there is none yet."""


def require_catalogue(conn: sqlite3.Connection) -> None:
    if db.anime_count(conn) == 0:
        raise MissingCatalogue(
            "--discover looks for recent watchers of the catalogue's most popular titles, but "
            f"the catalogue is empty: run {commands.launcher('1_prepare_anime')} first"
        )


@dataclass(frozen=True)
class UserOutcome:
    name: str
    state: str  # one of db.USER_STATES
    source: str = "file"
    detail: str = ""  # why it failed, or the list size


@dataclass
class UsersReport:
    outcomes: list[UserOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already stored, not fetched again
    promoted: int = 0  # stored users now at or above --min-anime
    demoted: int = 0  # stored users now below it
    screened_out: int = 0  # discovered users whose list size did not fit
    discover_wanted: int = 0  # --discover N
    discovered: int = 0  # users --discover loaded

    def names(self, state: str) -> list[str]:
        return [o.name for o in self.outcomes if o.state == state]

    @property
    def failed(self) -> list[UserOutcome]:
        return [o for o in self.outcomes if o.state == "failed"]


class UserLoader:
    """Loads users one by one into the store and keeps a report of what happened."""

    def __init__(
        self,
        client: AniListClient,
        conn: sqlite3.Connection,
        *,
        min_anime: int = DEFAULT_MIN_ANIME,
        refresh: bool = False,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.conn = conn
        self.min_anime = min_anime
        self.refresh = refresh
        self.notify = notify or (lambda message: None)
        self.report = UsersReport()
        self.known = db.load_users(conn)
        self._failures_in_a_row = 0

    def rescreen(self) -> None:
        """Apply --min-anime to the lists already stored (no request needed)."""
        self.report.promoted, self.report.demoted = db.rescreen_users(self.conn, self.min_anime)
        self.known = db.load_users(self.conn)

    def pending(self, names: Iterable[str]) -> list[str]:
        """The names to fetch; the rest are already stored and go to report.skipped."""
        todo = []
        for name in names:
            if settled(self.known.get(name.lower()), self.refresh):
                self.report.skipped.append(name)
            else:
                todo.append(name)
        return todo

    def load(self, name: str, *, source: str = "file", profile: UserProfile | None = None) -> str:
        """Fetch and store one user (profile, then the whole list); returns their state."""
        known = self.known.get(name.lower())
        try:
            if profile is None:
                profile = self.client.fetch_user(name)
            user_list = self.client.fetch_user_list(user_id=profile.user_id)
        except PrivateUser:
            return self._record(name, "private", known, source, "the list is private")
        except NotFound:
            return self._record(name, "not_found", known, source, "no such AniList user")
        except ApiUnreachable:
            raise
        except (RetriesExhausted, RequestRejected) as exc:
            return self._failed(name, known, source, str(exc))
        self._failures_in_a_row = 0
        watched = user_list.watched_count
        state = "loaded" if watched >= self.min_anime else "too_few"
        db.store_user_list(
            self.conn,
            user_list.name,
            user_list.user_id,
            user_list.entries,
            state=state,
            source=source,
        )
        self.known[user_list.name.lower()] = db.UserRecord(
            user_list.name, state, user_list.user_id, len(user_list.entries), source=source
        )
        detail = f"{watched} watched of {len(user_list.entries)} entries"
        if state == "too_few":
            self.notify(f"{user_list.name}: {detail}, fewer than --min-anime {self.min_anime}")
        self.report.outcomes.append(UserOutcome(user_list.name, state, source, detail))
        return state

    def _record(
        self, name: str, state: str, known: db.UserRecord | None, source: str, detail: str
    ) -> str:
        # A user who went private or deleted the account takes their stored list along.
        user_id = known.user_id if known is not None else None
        db.record_user_outcome(
            self.conn, name, state, user_id=user_id, message=detail, source=source
        )
        self.known[name.lower()] = db.UserRecord(name, state, source=source, message=detail)
        self.report.outcomes.append(UserOutcome(name, state, source, detail))
        self.notify(f"{name}: {detail}")
        self._failures_in_a_row = 0
        return state

    def _failed(self, name: str, known: db.UserRecord | None, source: str, problem: str) -> str:
        if known is None or known.state not in KEEP_ON_FAILURE:
            db.record_user_outcome(self.conn, name, "failed", message=problem, source=source)
        self.report.outcomes.append(UserOutcome(name, "failed", source, problem))
        self.notify(f"{name}: failed: {problem}")
        self._failures_in_a_row += 1
        if self._failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise StageStopped(
                f"{self._failures_in_a_row} users in a row failed (last: {problem}); "
                "AniList seems to be in trouble"
            )
        return "failed"

    def discover(
        self,
        wanted: int,
        *,
        titles: int = DISCOVER_TITLES,
        on_loaded: Callable[[], None] | None = None,
    ) -> None:
        """Load up to `wanted` more public users: recent watchers of the most popular titles in
        the stored catalogue whose list size fits (see DISCOVER_MAX_ANIME)."""
        require_catalogue(self.conn)
        self.report.discover_wanted = wanted
        catalogue = db.load_catalogue(self.conn)[:titles]
        known_ids = {u.user_id for u in self.known.values() if u.user_id is not None}
        titles_without_news = 0
        for anime in catalogue:
            if self.report.discovered >= wanted or titles_without_news >= DISCOVER_PATIENCE:
                return
            watchers, _ = self.client.recent_watchers(anime.anime_id)
            titles_without_news += 1
            for profile in watchers:
                if self.report.discovered >= wanted:
                    return
                if profile.user_id in known_ids or profile.name.lower() in self.known:
                    continue
                known_ids.add(profile.user_id)
                titles_without_news = 0
                if not self._fits(profile):
                    self.report.screened_out += 1
                    continue
                if self.load(profile.name, source="discovered", profile=profile) == "loaded":
                    self.report.discovered += 1
                    if on_loaded is not None:
                        on_loaded()

    def _fits(self, profile: UserProfile) -> bool:
        count = profile.anime_count
        return count is None or self.min_anime <= count <= DISCOVER_MAX_ANIME


# --- the summary -----------------------------------------------------------------------------

_STATE_LABELS = {
    "loaded": "loaded",
    "too_few": "too few anime",
    "not_found": "not found",
    "private": "private",
    "failed": "failed",
}


def format_summary(report: UsersReport, in_database: dict[str, int], min_anime: int) -> str:
    """The table printed at the end of load_users.py, with the names behind the problems."""
    lines = [f"{'users':<16}{'this run':>10}{'in database':>14}"]
    for state, label in _STATE_LABELS.items():
        this_run = len(report.names(state))
        lines.append(f"{label:<16}{this_run:>10}{in_database.get(state, 0):>14}")
    lines.append(f"already stored, not fetched again: {len(report.skipped)}")
    if report.promoted or report.demoted:
        lines.append(
            f"re-screened at --min-anime {min_anime}: {report.promoted} now loaded, "
            f"{report.demoted} now too few"
        )
    if report.discover_wanted:
        lines.append(
            f"discovered: {report.discovered} of {report.discover_wanted} users wanted "
            f"({report.screened_out} passed over for list size)"
        )
    for state in ("not_found", "private"):
        names = report.names(state)
        if names:
            lines.append(f"{_STATE_LABELS[state]}: {', '.join(names)}")
    lines.extend(f"failed: {o.name}: {o.detail}" for o in report.failed)
    return "\n".join(lines)


def too_few_users_note(named: int, discover: int) -> str | None:
    """A note for load_users.py when the user file (and --discover) bring fewer users than a
    useful model needs; None when there are enough."""
    if named + discover >= USEFUL_USERS:
        return None
    more = USEFUL_USERS - named
    return (
        f"note: {named} user names (+ --discover {discover}) are fewer than the about "
        f"{USEFUL_USERS} a useful model needs (docs/BENCHMARKS.md). Add names, or run "
        f"{commands.launcher('2_load_users', '--discover', str(more))} to find more public "
        "users."
    )


def discovery_offer(
    conn: sqlite3.Connection, names: Iterable[str], *, refresh: bool = False
) -> int:
    """How many users --discover should find so that the user file's names and the users
    already loaded reach USEFUL_USERS; 0 when they do, or when there is no catalogue to
    discover from. `refresh`: the names are all fetched again (--refresh)."""
    if db.anime_count(conn) == 0:
        return 0
    stored = db.load_users(conn)
    loaded = {key for key, user in stored.items() if user.state == "loaded"}
    # This run skips names an earlier run settled (unless --refresh): one found private, missing
    # or too short will not join the crowd. A name never tried is counted as if it will.
    known = loaded | {key for key in map(str.lower, names) if not settled(stored.get(key), refresh)}
    return max(0, USEFUL_USERS - len(known))


def discovery_question(offer: int, users_file: str) -> str:
    """What load_users.py asks, run by hand without --discover, when discovery_offer is not 0."""
    known = USEFUL_USERS - offer
    minutes = max(1, round(offer / DISCOVERED_USERS_PER_MINUTE))
    return (
        f"The crowd the model learns from holds {known} user{'' if known == 1 else 's'} (the "
        f"names in {users_file} and users loaded before);\na useful model needs about "
        f"{USEFUL_USERS}. Find {offer} more public AniList users now\n(recent watchers of the "
        f"most popular titles, about {minutes} minute{'' if minutes == 1 else 's'})? [Y/n] "
    )
