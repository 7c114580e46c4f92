"""The simulator's world: AniList-shaped Media objects, accounts with their lists, and `World`.

Both sides of the offline AniList use these: `synthetic.py` generates a world, `simulator.py`
serves one, and tests build small ones by hand. Nothing here knows about HTTP or GraphQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A cover URL names the simulator's own address, which is known only once it listens: it
# replaces this mark with its URL (no trailing slash) when it serves a Media object.
SIMULATOR_URL = "{simulator}"
COVER_SIZES = ("medium", "large")  # the two AniList cover sizes the catalogue stores


def cover_urls(media_id: int) -> dict[str, str]:
    """coverImage URLs of a title whose covers the simulator draws itself."""
    return {size: f"{SIMULATOR_URL}/covers/{size}/{media_id}.png" for size in COVER_SIZES}


def cover_colour(key: int) -> str:
    """A lively "#rrggbb" picked by `key` (AniList's coverImage.color is a hex colour too)."""
    hue = (key * 0.618033988749895) % 1.0
    red, green, blue = (_hue_part(hue + shift) for shift in (1 / 3, 0.0, -1 / 3))
    return f"#{red:02x}{green:02x}{blue:02x}"


def _hue_part(h: float) -> int:
    h %= 1.0
    level = max(0.0, min(1.0, abs(h * 6 - 3) - 1))  # HSV hue ramp, saturation 0.6, value 0.85
    return round(255 * 0.85 * (1 - 0.6 + 0.6 * level))


def relation_node(
    media_id: int, media_type: str = "ANIME", media_format: str | None = None
) -> dict:
    """The `node` of a relations edge: a Media object of its own, kept small (no cycles)."""
    return {"__typename": "Media", "id": media_id, "type": media_type, "format": media_format}


def relate(media: dict, other: dict, relation_type: str, inverse: str | None = None) -> None:
    """Add the edge "`other` is `relation_type` of `media`" (AniList's relationType reads from
    the media towards the node), and the edge back as `inverse` when given."""
    _add_edge(media, relation_type, relation_node(other["id"], other["type"], other["format"]))
    if inverse is not None:
        _add_edge(other, inverse, relation_node(media["id"], media["type"], media["format"]))


def _add_edge(media: dict, relation_type: str, node: dict) -> None:
    edges = media.setdefault("relations", {"edges": []})["edges"]
    edges.append({"__typename": "MediaEdge", "relationType": relation_type, "node": node})


# --- the world -------------------------------------------------------------------------------


def make_media(media_id: int, popularity: int, **fields: Any) -> dict:
    """An AniList Media object with every field the client may ask for; `fields` override.

    Covers are drawn by the simulator (a colour per title unless `coverImage` says otherwise),
    the page URL is AniList's form, and relations start empty (`relate` adds edges)."""
    media = {
        "__typename": "Media",
        "id": media_id,
        "idMal": media_id,
        "type": "ANIME",
        "title": {"romaji": f"Anime {media_id}", "english": None, "native": None},
        "genres": [],
        "tags": [],
        "format": "TV",
        "status": "FINISHED",
        "episodes": 12,
        "duration": 24,
        "averageScore": None,
        "meanScore": None,
        "popularity": popularity,
        "favourites": 0,
        "startDate": {"year": None, "month": None, "day": None},
        "season": None,
        "seasonYear": None,
        "isAdult": False,
        "coverImage": {**cover_urls(media_id), "color": cover_colour(media_id)},
        "siteUrl": f"https://anilist.co/anime/{media_id}/",
        "relations": {"edges": []},
    }
    media.update(fields)
    return media


def make_entry(entry_id: int, media_id: int, status: str = "COMPLETED", **fields: Any) -> dict:
    """An AniList MediaList object (score on the 0-100 scale, 0 = none); `fields` override."""
    entry = {
        "__typename": "MediaList",
        "id": entry_id,
        "mediaId": media_id,
        "status": status,
        "score": 0,
        "progress": 0,
        "repeat": 0,
        "private": False,
        "hiddenFromStatusLists": False,
        "notes": None,
        "createdAt": 1_600_000_000,
        "updatedAt": 1_600_000_000 + entry_id,
        "startedAt": {"year": None, "month": None, "day": None},
        "completedAt": {"year": None, "month": None, "day": None},
    }
    entry.update(fields)
    return entry


@dataclass
class FakeUser:
    """One AniList account. `custom_lists` maps a custom list's name to the media ids in it; an
    entry with hiddenFromStatusLists shows up only in its custom lists, as on AniList."""

    id: int
    name: str
    entries: list[dict] = field(default_factory=list)
    custom_lists: dict[str, list[int]] = field(default_factory=dict)
    private: bool = False
    score_format: str = "POINT_100"

    def as_user_object(self) -> dict:
        watched = [e for e in self.entries if e["status"] != "PLANNING"]
        scores = [e["score"] for e in watched if e["score"]]
        return {
            "__typename": "User",
            "id": self.id,
            "name": self.name,
            "updatedAt": max((e["updatedAt"] for e in self.entries), default=0),
            "mediaListOptions": {"scoreFormat": self.score_format},
            "statistics": {
                "anime": {
                    "count": len(watched),
                    "meanScore": round(sum(scores) / len(scores), 1) if scores else 0,
                    "standardDeviation": 0,
                    "minutesWatched": 0,
                    "episodesWatched": sum(e["progress"] or 0 for e in watched),
                }
            },
        }


@dataclass
class World:
    """What the fake AniList knows: Media objects (make_media) and users (FakeUser)."""

    media: list[dict]
    users: list[FakeUser] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_popularity = sorted(self.media, key=lambda m: (-(m["popularity"] or 0), m["id"]))
        self.media_by_id = {m["id"]: m for m in self.media}
        self.users_by_name = {u.name.lower(): u for u in self.users}
        self.users_by_id = {u.id: u for u in self.users}

    def user(self, *, user_id: int | None = None, name: str | None = None) -> FakeUser | None:
        if user_id is not None:
            return self.users_by_id.get(user_id)
        return self.users_by_name.get((name or "").lower())
