"""Finding catalogue titles from what a user types: case, punctuation, accents and small typos
are forgiven.

A typed title and every romaji, English and native title of the catalogue are normalised the
same way (normalise()), then:
1. the same normalised text is taken at once;
2. else the closest title by difflib's ratio is taken when it is at least MATCH_RATIO alike
   (a letter or two wrong in a title of ordinary length);
3. else nothing is taken, and up to SUGGESTIONS titles are offered: first those that hold what
   was typed as whole words ("Re Zero" -> "Re:ZERO -Starting Life in Another World-"), then
   those at least SUGGEST_RATIO alike.
Where several titles are equally good, the most popular wins (the catalogue comes most popular
first), because that is the one people mean far more often.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from .db import Anime

MATCH_RATIO = 0.85
SUGGEST_RATIO = 0.6
SUGGESTIONS = 3


def normalise(text: str) -> str:
    """Case-folded words joined by single spaces: "Steins;Gate" -> "steins gate",
    "Pokémon" -> "pokemon", "ＨＵＮＴＥＲ×ＨＵＮＴＥＲ" -> "hunter x hunter"."""
    # NFKD splits accents off their letters and folds full-width forms to plain ones.
    decomposed = unicodedata.normalize("NFKD", text.replace("×", " x "))
    kept: list[str] = []
    for char in decomposed:
        # Drop accents on Latin letters only: Japanese voicing marks (が = か + ゙) must stay.
        if unicodedata.combining(char) and kept and kept[-1].isascii():
            continue
        kept.append(char)
    text = unicodedata.normalize("NFC", "".join(kept)).casefold()
    return " ".join(re.findall(r"[^\W_]+", text))


@dataclass(frozen=True)
class TitleMatch:
    query: str
    anime: Anime | None  # None: nothing close enough
    matched_title: str | None = None  # which of its titles matched
    ratio: float = 0.0  # 1.0 for a match after normalising, else difflib's ratio
    suggestions: tuple[Anime, ...] = ()  # for an unmatched query: the closest titles


class TitleIndex:
    """Every title of a catalogue (most popular first), normalised once."""

    def __init__(self, catalogue: Sequence[Anime]) -> None:
        self._names: list[tuple[str, str, Anime]] = []  # (normalised, as written, anime)
        self._exact: dict[str, tuple[str, Anime]] = {}
        for anime in catalogue:
            for title in (anime.title_romaji, anime.title_english, anime.title_native):
                key = normalise(title or "")
                if key:
                    self._names.append((key, title, anime))
                    self._exact.setdefault(key, (title, anime))

    def match(self, query: str) -> TitleMatch:
        key = normalise(query)
        if key in self._exact:
            title, anime = self._exact[key]
            return TitleMatch(query, anime, title, 1.0)
        close = self._closest(key)
        if close and close[0][0] >= MATCH_RATIO:
            ratio, title, anime = close[0]
            return TitleMatch(query, anime, title, ratio)
        return TitleMatch(query, None, suggestions=self._suggestions(key, close))

    def _suggestions(self, key: str, close: list[tuple[float, str, Anime]]) -> tuple[Anime, ...]:
        if not key:
            return ()
        holding = [anime for name, _, anime in self._names if f" {key} " in f" {name} "]
        unique: dict[int, Anime] = {}
        for anime in [*holding, *(anime for _, _, anime in close)]:
            unique.setdefault(anime.anime_id, anime)
        return tuple(unique.values())[:SUGGESTIONS]

    def _closest(self, key: str) -> list[tuple[float, str, Anime]]:
        """(ratio, title, anime) of each anime's best title at least SUGGEST_RATIO alike, best
        first, the more popular first among equals."""
        if not key:
            return []
        matcher = difflib.SequenceMatcher(autojunk=False)
        matcher.set_seq2(key)  # difflib caches what it learns about the second sequence
        best: dict[int, tuple[float, int, str, Anime]] = {}
        for position, (name, title, anime) in enumerate(self._names):
            matcher.set_seq1(name)
            # The cheap upper bounds first, as difflib.get_close_matches does.
            if matcher.real_quick_ratio() < SUGGEST_RATIO or matcher.quick_ratio() < SUGGEST_RATIO:
                continue
            ratio = matcher.ratio()
            if ratio >= SUGGEST_RATIO and ratio > best.get(anime.anime_id, (0.0,))[0]:
                best[anime.anime_id] = (ratio, position, title, anime)
        ranked = sorted(best.values(), key=lambda found: (-found[0], found[1]))
        return [(ratio, title, anime) for ratio, _, title, anime in ranked]
