"""The franchise rules and the filters, applied to the model's ranking of one user.

The model ranks every title; this walks that ranking from the top and keeps what a fan would
want, until it has top_k titles:

- a title whose prequel chain is unwatched gives its place to the franchise's first unwatched
  entry (Franchises.first_unwatched_before), once;
- nothing of a franchise one of whose entries the user DROPPED;
- no summaries or recaps;
- at most one title of a franchise (all_seasons lifts it);
- and, apart, a short Continue list: the next unwatched entry of each franchise the user
  completed or is watching (Franchises.next_entries), ordered by the model's score. Titles in it
  are not repeated in the main list. Each names the seen entry just before it (Pick.after),
  which is its reason ("next after Season 1", reasons.py).

Each rule is on by default and can be turned off (FranchiseRules). Each kept title records the
rules that changed it; what was left out is counted by rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from . import db
from .filters import NO_FILTERS, Filters
from .franchise import Franchises

# AniList list statuses of a franchise the user "completed or is watching".
CONTINUED_STATUSES = ("COMPLETED", "CURRENT", "REPEATING")
DEFAULT_CONTINUE = 5

# Why titles were left out (the keys of Selection.left_out).
LEFT_OUT_FILTERED = "left out by the filters"
LEFT_OUT_PREQUEL = "prequel chain unwatched, nothing to show in its place"
LEFT_OUT_DROPPED = "of a franchise the user dropped"
LEFT_OUT_SUMMARY = "summary or recap"
LEFT_OUT_SAME_FRANCHISE = "another entry of a franchise already listed"
LEFT_OUT_IN_CONTINUE = "in the Continue list"


@dataclass(frozen=True)
class FranchiseRules:
    prequels_first: bool = True  # off: --allow-unwatched-prequels
    skip_dropped: bool = True  # off: --allow-dropped
    skip_summaries: bool = True  # off: --allow-summaries
    one_per_franchise: bool = True  # off: --all-seasons
    continue_top: int = DEFAULT_CONTINUE  # 0: --continue 0, no Continue list

    def describe(self) -> list[str]:
        """One line per rule, saying whether it is on, for the page and --json."""

        def state(on: bool) -> str:
            return "on" if on else "off"

        return [
            f"unwatched prequel chain -> its first unwatched entry instead: "
            f"{state(self.prequels_first)}",
            f"nothing of a dropped franchise: {state(self.skip_dropped)}",
            f"no summaries or recaps: {state(self.skip_summaries)}",
            f"at most one entry of a franchise: {state(self.one_per_franchise)}",
            f"Continue list: {self.continue_top or 'off'}"
            + (" titles" if self.continue_top else ""),
        ]


DEFAULT_RULES = FranchiseRules()


@dataclass(frozen=True)
class Pick:
    anime_id: int
    log_prob: float
    notes: tuple[str, ...] = ()  # the rules that changed this place, in words
    after: int | None = None  # a Continue entry's seen predecessor in its franchise


@dataclass(frozen=True)
class Selection:
    items: list[Pick]
    continue_items: list[Pick]
    left_out: Counter = field(default_factory=Counter)  # LEFT_OUT_* -> titles


@dataclass(frozen=True)
class Viewer:
    """What the rules need to know of a user."""

    seen: Collection[int]  # every watched title (any status but PLANNING), in or out of the model
    dropped: Collection[int] = ()
    started: Sequence[int] = ()  # titles COMPLETED, CURRENT or REPEATING, newest first


def select(
    ranked: Sequence[tuple[int, float]],
    score: Callable[[int], float | None],
    viewer: Viewer,
    franchises: Franchises,
    *,
    top_k: int,
    rules: FranchiseRules = DEFAULT_RULES,
    filters: Filters = NO_FILTERS,
) -> Selection:
    """`ranked`: (anime id, log-probability) of every title that may be recommended, best
    first; `score(id)`: a title's log-probability, None when it may not be recommended."""
    left_out: Counter = Counter()
    anime = franchises.anime

    def title(anime_id: int) -> str:
        return (anime.get(anime_id) or db.Anime(anime_id)).title

    def shown(anime_id: int) -> bool:
        return filters.passes(anime.get(anime_id) or db.Anime(anime_id))

    dropped = (
        {t for d in viewer.dropped for t in franchises.group(d)} if rules.skip_dropped else set()
    )
    continue_items = _continue_list(score, viewer, franchises, rules, dropped, shown)
    continuing = {p.anime_id for p in continue_items}
    used = set(continuing)
    used_groups = {franchises.group(t) for t in used} if rules.one_per_franchise else set()
    items: list[Pick] = []
    for anime_id, log_prob in ranked:
        if len(items) == top_k:
            break
        notes: tuple[str, ...] = ()
        if rules.skip_summaries and franchises.is_summary(anime_id):
            left_out[LEFT_OUT_SUMMARY] += 1
            continue
        if anime_id in dropped:
            left_out[LEFT_OUT_DROPPED] += 1
            continue
        if not shown(anime_id):
            left_out[LEFT_OUT_FILTERED] += 1
            continue
        if rules.prequels_first and franchises.unwatched_prerequisites(anime_id, viewer.seen):
            instead = franchises.first_unwatched_before(anime_id, viewer.seen)
            instead_score = None if instead is None else score(instead)
            if instead is None or instead_score is None or not shown(instead):
                left_out[LEFT_OUT_PREQUEL] += 1
                continue
            notes = (f"in place of {title(anime_id)} (its prequel chain is unwatched)",)
            anime_id, log_prob = instead, instead_score
        if anime_id in used:
            why = LEFT_OUT_IN_CONTINUE if anime_id in continuing else LEFT_OUT_SAME_FRANCHISE
            left_out[why] += 1
            continue
        group = franchises.group(anime_id)
        if rules.one_per_franchise and group in used_groups:
            left_out[LEFT_OUT_SAME_FRANCHISE] += 1
            continue
        used.add(anime_id)
        used_groups.add(group)
        items.append(Pick(anime_id, log_prob, notes))
    return Selection(items, continue_items, left_out)


def _continue_list(
    score: Callable[[int], float | None],
    viewer: Viewer,
    franchises: Franchises,
    rules: FranchiseRules,
    dropped: Collection[int],
    shown: Callable[[int], bool],
) -> list[Pick]:
    if not rules.continue_top:
        return []
    picks = []
    for entry in franchises.next_entries(viewer.started, viewer.seen):
        log_prob = score(entry)
        if entry in dropped or log_prob is None or not shown(entry):
            continue
        after = [t for t in franchises.prerequisites(entry) if t in viewer.seen]
        picks.append(Pick(entry, log_prob, after=after[-1] if after else None))
    picks.sort(key=lambda p: -p.log_prob)
    return picks[: rules.continue_top]
