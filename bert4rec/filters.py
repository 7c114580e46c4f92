"""What a user asks to see: genres, formats, years, a popularity floor, released titles only.

Filters apply after scoring (the scores stay the model's) and before the list is cut to --top,
so asking for 20 titles still gives 20 where 20 pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import db

# AniList's MediaFormat values for anime (MANGA, NOVEL and ONE_SHOT are not anime).
FORMATS = ("TV", "TV_SHORT", "MOVIE", "SPECIAL", "OVA", "ONA", "MUSIC")
UNRELEASED = "NOT_YET_RELEASED"  # AniList's MediaStatus of a title that has not started airing


class FilterError(ValueError):
    """A filter names a genre or format that does not exist; the message lists the valid ones."""


@dataclass(frozen=True)
class Filters:
    genres: tuple[str, ...] = ()  # a title must have every one of them
    exclude_genres: tuple[str, ...] = ()  # and none of these
    formats: tuple[str, ...] = ()  # one of these (empty: any)
    year_from: int | None = None  # start year at least (a title without a year fails)
    year_to: int | None = None  # start year at most
    min_popularity: int | None = None  # AniList popularity: users with the title on their list
    include_unreleased: bool = False  # titles not yet airing may be recommended

    def passes(self, anime: db.Anime) -> bool:
        genres = set(anime.genres)
        if not set(self.genres) <= genres or genres & set(self.exclude_genres):
            return False
        if self.formats and anime.format not in self.formats:
            return False
        if self.year_from is not None or self.year_to is not None:
            year = anime.start_year
            if year is None:
                return False
            if (self.year_from is not None and year < self.year_from) or (
                self.year_to is not None and year > self.year_to
            ):
                return False
        if self.min_popularity is not None and (anime.popularity or 0) < self.min_popularity:
            return False
        return self.include_unreleased or anime.status != UNRELEASED

    def describe(self) -> list[str]:
        """One line per filter in force, for the page and --json."""
        lines = []
        if self.genres:
            lines.append("genres: " + " and ".join(self.genres))
        if self.exclude_genres:
            lines.append("not: " + ", ".join(self.exclude_genres))
        if self.formats:
            lines.append("format: " + " or ".join(self.formats))
        if self.year_from is not None or self.year_to is not None:
            lines.append(f"years: {self.year_from or '...'}-{self.year_to or '...'}")
        if self.min_popularity is not None:
            lines.append(f"popularity at least {self.min_popularity}")
        if not self.include_unreleased:
            lines.append("released titles only")
        return lines


NO_FILTERS = Filters()


def catalogue_genres(catalogue: Iterable[db.Anime]) -> list[str]:
    return sorted({genre for anime in catalogue for genre in anime.genres})


def make_filters(
    catalogue: Sequence[db.Anime],
    *,
    genres: Sequence[str] = (),
    exclude_genres: Sequence[str] = (),
    formats: Sequence[str] = (),
    year_from: int | None = None,
    year_to: int | None = None,
    min_popularity: int | None = None,
    include_unreleased: bool = False,
) -> Filters:
    """Filters with genres and formats checked (case does not matter) and spelled as the
    catalogue and AniList spell them; FilterError names an unknown one and lists the valid."""
    known = {g.casefold(): g for g in catalogue_genres(catalogue)}
    formats_known = {f.casefold(): f for f in FORMATS}

    def checked(values: Sequence[str], valid: dict[str, str], what: str, flag: str) -> tuple:
        out = []
        for value in values:
            found = valid.get(value.strip().casefold().replace("-", "_").replace(" ", "_"))
            found = found or valid.get(value.strip().casefold())
            if found is None:
                listed = ", ".join(valid.values()) or "(none: the catalogue has no genres)"
                raise FilterError(f"{flag} {value!r} is not a {what}. Valid: {listed}.")
            out.append(found)
        return tuple(dict.fromkeys(out))

    if year_from is not None and year_to is not None and year_from > year_to:
        raise FilterError(f"--year-from {year_from} is after --year-to {year_to}.")
    return Filters(
        genres=checked(genres, known, "genre of the catalogue", "--genre"),
        exclude_genres=checked(exclude_genres, known, "genre of the catalogue", "--exclude-genre"),
        formats=checked(formats, formats_known, "format", "--format"),
        year_from=year_from,
        year_to=year_to,
        min_popularity=min_popularity,
        include_unreleased=include_unreleased,
    )
