"""Franchises: which catalogue titles belong together, in what order, and what comes next.

Built from the catalogue and AniList's relations edges (db.Relation: (a, r, T) says r is a's T,
e.g. (2, 1, "PREQUEL") says title 1 is the prequel of title 2). Pure Python, no model.

    franchises = Franchises(catalogue, db.load_relations(conn))
    franchises.group(anime_id)                  # the franchise it belongs to (a frozenset of ids)
    franchises.unwatched_prerequisites(x, seen) # the titles to watch before x that are unseen
    franchises.first_unwatched_before(x, seen)  # what to watch instead of x
    franchises.next_entries(history_ids, seen)  # the next unwatched entry of each franchise

Which edges join a franchise: those that say two works tell one story or live in one story
world. SEQUEL / PREQUEL (one continues the other), PARENT / SIDE_STORY (a side story of a
series), SPIN_OFF (the same world, another focus), ALTERNATIVE (another version of the same
story: a remake, a retelling), SUMMARY / COMPILATION / CONTAINS (recaps and compilations of the
same episodes). Left out: ADAPTATION and SOURCE point across media (anime <-> manga, novel), so
two anime adapted from one source would be joined through a manga outside the catalogue;
CHARACTER (a shared character: crossovers, cameos) and OTHER (AniList's catch-all: music videos,
collaborations, commercials) join works of different franchises, and following them chains
unrelated series into one giant group.

Edges may point at titles outside the catalogue; they still join (a sequel and its prequel both
pointing at a missing middle season stay one franchise), but only catalogue titles are members.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence

from . import db

JOINING_RELATIONS = frozenset(
    {
        "SEQUEL",
        "PREQUEL",
        "PARENT",
        "SIDE_STORY",
        "SPIN_OFF",
        "ALTERNATIVE",
        "SUMMARY",
        "COMPILATION",
        "CONTAINS",
    }
)
# Titles that say they are a recap: English "recap", romaji "soushuuhen" / "sōshūhen" and the
# Japanese 総集編 ("collected edition"), which is how recap episodes and films are named.
_RECAP_WORDS = re.compile(r"\brecap\b|\bs[oō]u?sh[uū]u?hen\b|総集編", re.IGNORECASE)


class Franchises:
    """The franchises of a catalogue (each title of the catalogue is in exactly one; a title
    without joining edges is a franchise of its own)."""

    def __init__(
        self, catalogue: Iterable[db.Anime], relations: Mapping[int, Sequence[db.Relation]]
    ) -> None:
        self.anime = {a.anime_id: a for a in catalogue}
        edges = [e for es in relations.values() for e in es]
        # Direct prerequisites: x's prequels (x -PREQUEL-> p, or p -SEQUEL-> x) and the series
        # a side story belongs to (x -PARENT-> p, or p -SIDE_STORY-> x), unless that parent
        # calls x a spin-off: a spin-off is made to be watched on its own.
        spin_offs = {(e.anime_id, e.related_id) for e in edges if e.relation_type == "SPIN_OFF"}
        self._before: dict[int, set[int]] = {}
        self._prequels: dict[int, set[int]] = {}  # the PREQUEL / SEQUEL part of _before
        for e in edges:
            a, r, kind = e.anime_id, e.related_id, e.relation_type
            if kind == "PREQUEL" or (kind == "PARENT" and (r, a) not in spin_offs):
                self._before.setdefault(a, set()).add(r)
            elif kind in ("SEQUEL", "SIDE_STORY"):
                self._before.setdefault(r, set()).add(a)
            if kind in ("PREQUEL", "SEQUEL"):
                later, earlier = (a, r) if kind == "PREQUEL" else (r, a)
                self._prequels.setdefault(later, set()).add(earlier)
        self._summaries = {
            e.related_id for e in edges if e.relation_type in ("SUMMARY", "COMPILATION")
        }
        # x -CONTAINS-> y: x holds y's episodes, so x is the compilation.
        self._summaries |= {e.anime_id for e in edges if e.relation_type == "CONTAINS"}
        joined = [(e.anime_id, e.related_id) for e in edges if e.relation_type in JOINING_RELATIONS]
        self._groups = _connected(self.anime, joined)
        self._prerequisites: dict[int, list[int]] = {}
        self._order = {
            anime_id: rank
            for group in set(self._groups.values())
            for rank, anime_id in enumerate(self._ordered(group))
        }

    # --- what a title is ------------------------------------------------------------------

    def group(self, anime_id: int) -> frozenset[int]:
        """The catalogue titles of anime_id's franchise (itself alone when it has none)."""
        return self._groups.get(anime_id, frozenset((anime_id,)))

    def is_summary(self, anime_id: int) -> bool:
        """A recap or compilation: another title's SUMMARY or COMPILATION edge points at it,
        it CONTAINS another title, or its title says it is a recap (総集編, "Recap")."""
        if anime_id in self._summaries:
            return True
        anime = self.anime.get(anime_id)
        titles = (anime.title_romaji, anime.title_english, anime.title_native) if anime else ()
        return any(t and _RECAP_WORDS.search(t) for t in titles)

    def prerequisites(self, anime_id: int) -> list[int]:
        """Every catalogue title to watch before anime_id (its prequel chain and the series of
        a side story, transitively), earliest first. Edges through titles outside the catalogue
        are followed; those titles are not listed."""
        cached = self._prerequisites.get(anime_id)
        if cached is not None:
            return cached
        found: set[int] = set()
        stack = list(self._before.get(anime_id, ()))
        while stack:
            title = stack.pop()
            if title in found or title == anime_id:  # AniList's data has the odd cycle
                continue
            found.add(title)
            stack.extend(self._before.get(title, ()))
        ordered = sorted((t for t in found if t in self.anime), key=self.order_key)
        self._prerequisites[anime_id] = ordered
        return ordered

    def unwatched_prerequisites(self, anime_id: int, seen: Collection[int]) -> list[int]:
        return [t for t in self.prerequisites(anime_id) if t not in seen]

    def order_key(self, anime_id: int) -> tuple:
        """Franchise order: prerequisites before what needs them, then by start date."""
        return (self._order.get(anime_id, 0), anime_id)

    # --- what to watch --------------------------------------------------------------------

    def first_unwatched_before(self, anime_id: int, seen: Collection[int]) -> int | None:
        """What to watch in place of anime_id, whose prerequisites are not all seen: the
        earliest unseen title of its prequel chain that can be watched now (its own
        prerequisites seen) and is not a recap; None when there is none."""
        for title in self.unwatched_prerequisites(anime_id, seen):
            if not self.is_summary(title) and not self.unwatched_prerequisites(title, seen):
                return title
        return None

    def next_entry(self, group: Collection[int], seen: Collection[int]) -> int | None:
        """The next unseen entry of a franchise the user has started, among those whose
        prerequisites are all seen (never a recap): a direct sequel of a seen title first, then
        a side story of one, then any; earliest in franchise order."""
        ready = [
            t
            for t in sorted(group, key=self.order_key)
            if t not in seen
            and not self.is_summary(t)
            and not self.unwatched_prerequisites(t, seen)
        ]
        seen = set(seen)
        sequels = [t for t in ready if self._prequels.get(t, set()) & seen]
        side_stories = [t for t in ready if self._before.get(t, set()) & seen]
        return (sequels or side_stories or ready or [None])[0]

    def next_entries(self, started: Iterable[int], seen: Collection[int]) -> list[int]:
        """next_entry of each franchise of the `started` titles, each franchise once."""
        found: list[int] = []
        done: set[frozenset[int]] = set()
        for title in started:
            group = self.group(title)
            if group in done:
                continue
            done.add(group)
            entry = self.next_entry(group, seen)
            if entry is not None:
                found.append(entry)
        return found

    # --- building -------------------------------------------------------------------------

    def _ordered(self, group: frozenset[int]) -> list[int]:
        """The group in an order where every title comes after its prerequisites (a cycle is
        broken by start date), ties by start date then id."""

        def dated(t: int) -> tuple:
            a = self.anime[t]
            return (a.start_year or 9999, a.start_month or 13, a.start_day or 32, t)

        placed: list[int] = []
        done: set[int] = set()
        waiting = sorted(group, key=dated)
        while waiting:
            ready = [
                t for t in waiting if not (self._before.get(t, set()) & group) - done - {t}
            ] or waiting[:1]
            placed.append(ready[0])
            done.add(ready[0])
            waiting.remove(ready[0])
        return placed


def _connected(
    catalogue: Collection[int], pairs: Iterable[tuple[int, int]]
) -> dict[int, frozenset[int]]:
    """Union-find over every id the pairs name; the groups of the catalogue's titles."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[ra] = rb
    members: dict[int, set[int]] = {}
    for title in catalogue:
        members.setdefault(root(title), set()).add(title)
    return {t: frozenset(group) for group in members.values() for t in group}
