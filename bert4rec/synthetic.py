"""A synthetic but lifelike AniList world for the simulator: catalogue and users.

Nothing here is real AniList data. The world is generated from a seed, so the same seed gives
the same world. It is shaped like the real thing where that matters to a recommender:

- a catalogue of franchises: a first season, then sequels, movies and specials released later;
  popularity with a long tail (a few titles on most lists, most titles on few);
- AniList's genres, formats, seasons and statuses, and titles in romaji, English and Japanese;
- relations between a franchise's titles, in AniList's terms: each main entry (TV, movie, ONA)
  the SEQUEL of the one before and its PREQUEL back; specials and OVAs SIDE_STORY of the main
  entry before them (which is their PARENT); some franchises with a recap (SUMMARY, whose PARENT
  is the entry it sums up), the odd SPIN_OFF or ALTERNATIVE version, and the manga a franchise
  was adapted from (SOURCE, a MANGA node outside the catalogue);
- a cover colour per franchise (the simulator draws the covers);
- users with tastes (a few favourite genres), list sizes from a handful to hundreds, who watch
  a franchise in release order, mostly finish what they start, plan some titles, drop others
  (and then watch nothing more of that franchise), rarely bother with recaps, score on their
  own habits, and keep some titles in custom lists as well;
- a few private users, and users too small to keep.

The result is a `world.World`: Media objects and `FakeUser`s with AniList-shaped list
entries, which the simulator serves as they are.
"""

from __future__ import annotations

import datetime
import math
import random

from .world import FakeUser, World, cover_colour, make_entry, make_media, relate, relation_node

GENRES = (
    "Action", "Adventure", "Comedy", "Drama", "Ecchi", "Fantasy", "Horror", "Mahou Shoujo",
    "Mecha", "Music", "Mystery", "Psychological", "Romance", "Sci-Fi", "Slice of Life",
    "Sports", "Supernatural", "Thriller",
)  # fmt: skip
SEASONS = ("WINTER", "SPRING", "SUMMER", "FALL")
SEASON_START_MONTH = {"WINTER": 1, "SPRING": 4, "SUMMER": 7, "FALL": 10}
# Users fall into taste communities that share favourite franchises: co-watching structure a
# recommender can learn, as on the real site.
COMMUNITIES = 8
COMMUNITY_PULL = 12.0
GENRE_PULL = 3.0
_FORMAT_LABEL = {"MOVIE": " Movie", "OVA": " OVA", "SPECIAL": " Specials", "ONA": " ONA"}
# What a later entry of a franchise is to the rest of it (the first entry is always MAIN).
MAIN, SIDE, RECAP, SPIN_OFF, ALTERNATIVE = "main", "side", "recap", "spin-off", "alternative"
_ROLE_LABEL = {RECAP: (" Soushuuhen", " Recap"), SPIN_OFF: (" Gaiden", " Spin-off"),
               ALTERNATIVE: (" Remake", " Remake")}  # fmt: skip
# Shares of the entries after a franchise's first that are of the rarer kinds, and how users
# treat the extras.
RECAP_SHARE, SPIN_OFF_SHARE, ALTERNATIVE_SHARE = 0.1, 0.04, 0.04
SOURCE_SHARE = 0.6  # franchises adapted from a manga
MANGA_ID_BASE = 900_000  # AniList's manga ids never coincide with anime ids
SKIP_CHANCE = {SIDE: 0.4, RECAP: 0.9, SPIN_OFF: 0.5, ALTERNATIVE: 0.7}  # skipped, not stopped
STOP_CHANCE = 0.35  # a user stops following a franchise before its next main entry
LIST_SIZE_LOG_MEAN = 3.6  # log-normal list sizes: most lists are tens of titles, some hundreds

_ROMAJI_WORDS = (
    "Hoshi", "Sora", "Kaze", "Yume", "Tsubasa", "Kokoro", "Hikari", "Yoru", "Umi", "Hana",
    "Tsuki", "Kage", "Honoo", "Koori", "Mirai", "Kioku", "Sekai", "Uta", "Ken", "Mahou",
    "Tenshi", "Akuma", "Shoujo", "Shounen", "Senshi", "Gakuen", "Monogatari", "Densetsu",
)  # fmt: skip
_ENGLISH = {
    "Hoshi": "Star", "Sora": "Sky", "Kaze": "Wind", "Yume": "Dream", "Tsubasa": "Wings",
    "Kokoro": "Heart", "Hikari": "Light", "Yoru": "Night", "Umi": "Sea", "Hana": "Flower",
    "Tsuki": "Moon", "Kage": "Shadow", "Honoo": "Flame", "Koori": "Ice", "Mirai": "Future",
    "Kioku": "Memory", "Sekai": "World", "Uta": "Song", "Ken": "Sword", "Mahou": "Magic",
    "Tenshi": "Angel", "Akuma": "Devil", "Shoujo": "Girl", "Shounen": "Boy",
    "Senshi": "Warrior", "Gakuen": "Academy", "Monogatari": "Story", "Densetsu": "Legend",
}  # fmt: skip
_NATIVE = {
    "Hoshi": "星", "Sora": "空", "Kaze": "風", "Yume": "夢", "Tsubasa": "翼", "Kokoro": "心",
    "Hikari": "光", "Yoru": "夜", "Umi": "海", "Hana": "花", "Tsuki": "月", "Kage": "影",
    "Honoo": "炎", "Koori": "氷", "Mirai": "未来", "Kioku": "記憶", "Sekai": "世界", "Uta": "歌",
    "Ken": "剣", "Mahou": "魔法", "Tenshi": "天使", "Akuma": "悪魔", "Shoujo": "少女",
    "Shounen": "少年", "Senshi": "戦士", "Gakuen": "学園", "Monogatari": "物語",
    "Densetsu": "伝説",
}  # fmt: skip
_NAME_PARTS = (
    "neko", "kitsune", "ryu", "sakura", "yuki", "hikari", "kuro", "shiro", "aoi", "akai",
    "taro", "mochi", "senpai", "otaku", "weeb", "anime", "manga", "pixel", "nova", "luna",
    "zero", "echo", "rin", "ken", "mai", "sora", "haru", "natsu", "fuyu", "aki",
)  # fmt: skip


def generate_world(
    n_media: int = 600,
    n_users: int = 300,
    seed: int = 42,
    private_share: float = 0.03,
    list_size_log_mean: float = LIST_SIZE_LOG_MEAN,
) -> World:
    """The catalogue and users for a seed; `n_media` titles, `n_users` accounts. Each user
    picks about exp(N(list_size_log_mean, 0.8)) franchises (benchmarks raise it for long lists)."""
    rng = random.Random(seed)
    franchises, roles = _make_franchises(rng, n_media)
    appeal = _assign_appeal(rng, franchises)
    users = [
        _make_user(rng, i, franchises, roles, appeal, private_share, list_size_log_mean)
        for i in range(n_users)
    ]
    media = [m for franchise in franchises for m in franchise]
    _count_list_popularity(media, users, appeal)
    return World(media=media, users=users)


# --- catalogue -------------------------------------------------------------------------------


def _make_franchises(rng: random.Random, n_media: int) -> tuple[list[list[dict]], dict[int, str]]:
    """Franchises of 1-6 titles in release order, `n_media` titles in all, related as AniList
    relates them; also each title's role (MAIN, SIDE, RECAP, SPIN_OFF, ALTERNATIVE)."""
    franchises: list[list[dict]] = []
    roles: dict[int, str] = {}
    next_id = 1000
    used_titles: set[str] = set()
    while sum(len(f) for f in franchises) < n_media:
        left = n_media - sum(len(f) for f in franchises)
        size = min(left, rng.choices((1, 2, 3, 4, 6), weights=(45, 25, 15, 10, 5))[0])
        words = _unique_title_words(rng, used_titles)
        genres = rng.sample(GENRES, rng.choice((2, 3, 3, 4)))
        year = rng.randint(1995, 2024)
        season = rng.choice(SEASONS)
        colour = cover_colour(len(franchises))
        franchise = []
        for part in range(size):
            next_id += rng.randint(1, 40)
            fmt = "TV" if part == 0 else rng.choices(
                ("TV", "MOVIE", "OVA", "SPECIAL", "ONA"), weights=(60, 15, 10, 10, 5)
            )[0]  # fmt: skip
            if part == 0 and rng.random() < 0.2:
                fmt = rng.choice(("MOVIE", "ONA", "OVA", "TV_SHORT"))
            role = _role(rng, part, fmt, franchise, roles)
            if role == RECAP:
                fmt = rng.choice(("SPECIAL", "MOVIE"))
            media = _make_media(rng, next_id, words, part, fmt, genres, year, season, role)
            media["coverImage"]["color"] = colour
            roles[next_id] = role
            franchise.append(media)
            year += rng.choice((0, 1, 1, 2, 3))
            season = rng.choice(SEASONS)
        _relate_franchise(franchise, roles)
        if rng.random() < SOURCE_SHARE:
            manga = relation_node(MANGA_ID_BASE + franchise[0]["id"], "MANGA", "MANGA")
            for media in franchise:
                if roles[media["id"]] in (MAIN, SIDE):
                    media["relations"]["edges"].append(
                        {"__typename": "MediaEdge", "relationType": "SOURCE", "node": manga}
                    )
        franchises.append(franchise)
    return franchises, roles


def _role(
    rng: random.Random, part: int, fmt: str, franchise: list[dict], roles: dict[int, str]
) -> str:
    if part == 0:
        return MAIN
    has_main_before = any(roles[m["id"]] == MAIN for m in franchise)
    draw = rng.random()
    if has_main_before and draw < RECAP_SHARE:
        return RECAP
    draw -= RECAP_SHARE
    if draw < SPIN_OFF_SHARE:
        return SPIN_OFF
    if draw < SPIN_OFF_SHARE + ALTERNATIVE_SHARE:
        return ALTERNATIVE
    return SIDE if fmt in ("OVA", "SPECIAL") else MAIN


def _relate_franchise(franchise: list[dict], roles: dict[int, str]) -> None:
    """AniList's edges between a franchise's entries (`franchise` is in release order)."""
    previous_main: dict | None = None
    for media in franchise:
        role = roles[media["id"]]
        if role == MAIN:
            if previous_main is not None:
                relate(previous_main, media, "SEQUEL", "PREQUEL")
            previous_main = media
        elif role == SIDE:
            relate(previous_main or franchise[0], media, "SIDE_STORY", "PARENT")
        elif role == RECAP:
            relate(previous_main or franchise[0], media, "SUMMARY", "PARENT")
        elif role == SPIN_OFF:
            relate(franchise[0], media, "SPIN_OFF", "PARENT")
        else:
            relate(franchise[0], media, "ALTERNATIVE", "ALTERNATIVE")


def _unique_title_words(rng: random.Random, used: set[str]) -> tuple[str, ...]:
    for _ in range(1000):
        words = tuple(rng.sample(_ROMAJI_WORDS, rng.choice((2, 2, 3))))
        if " ".join(words) not in used:
            used.add(" ".join(words))
            return words
    raise RuntimeError("ran out of synthetic titles; ask for fewer titles")


def _make_media(
    rng: random.Random,
    media_id: int,
    words: tuple[str, ...],
    part: int,
    fmt: str,
    genres: list[str],
    year: int,
    season: str,
    role: str = MAIN,
) -> dict:
    romaji = " no ".join(words)
    english = "The " + " of ".join(_ENGLISH[w] for w in reversed(words))
    native = "の".join(_NATIVE[w] for w in words)
    if role in _ROLE_LABEL:
        romaji_label, english_label = _ROLE_LABEL[role]
        romaji += f"{romaji_label} {part + 1}"
        english += f"{english_label} {part + 1}"
        native += f" {part + 1}"
    elif part:
        label = _FORMAT_LABEL.get(fmt, "")
        romaji += f"{label} {part + 1}"
        english += f"{label or ' Season'} {part + 1}"
        native += f" {part + 1}"
    episodes = {"TV": rng.choice((12, 12, 13, 24, 25)), "TV_SHORT": 12, "MOVIE": 1,
                "OVA": rng.randint(1, 6), "SPECIAL": rng.randint(1, 4),
                "ONA": rng.choice((6, 10, 12))}[fmt]  # fmt: skip
    releasing = year >= 2025 or (year == 2024 and rng.random() < 0.3)
    average = max(35, min(92, int(rng.gauss(70, 9))))
    return make_media(
        media_id,
        0,  # popularity: counted from the users' lists once they exist
        idMal=media_id + rng.randint(0, 5) if rng.random() < 0.9 else None,
        title={
            "romaji": romaji,
            "english": english if rng.random() < 0.75 else None,
            "native": native,
        },
        genres=sorted(genres),
        format=fmt,
        status="RELEASING" if releasing else "FINISHED",
        episodes=None if releasing and rng.random() < 0.5 else episodes,
        duration=100 if fmt == "MOVIE" else rng.choice((24, 24, 23, 12)),
        averageScore=average,
        meanScore=average + rng.randint(-2, 2),
        startDate={"year": year, "month": SEASON_START_MONTH[season], "day": rng.randint(1, 28)},
        season=season,
        seasonYear=year,
    )


def _assign_appeal(rng: random.Random, franchises: list[list[dict]]) -> dict[int, float]:
    """Zipf-like appeal per franchise (media id -> weight); sequels keep a share of it."""
    order = list(range(len(franchises)))
    rng.shuffle(order)
    appeal = {}
    for rank, index in enumerate(order, start=1):
        for part, media in enumerate(franchises[index]):
            appeal[media["id"]] = (0.75**part) / rank**1.2
    return appeal


# --- users -----------------------------------------------------------------------------------


def _make_user(
    rng: random.Random,
    index: int,
    franchises: list[list[dict]],
    roles: dict[int, str],
    appeal: dict[int, float],
    private_share: float,
    list_size_log_mean: float,
) -> FakeUser:
    user_id = 5_000 + index * 7 + rng.randint(0, 6)
    community = rng.randrange(COMMUNITIES)
    favourite = set(rng.sample(GENRES, rng.choice((1, 2, 3))))
    target = max(3, min(len(franchises), int(math.exp(rng.gauss(list_size_log_mean, 0.8)))))
    weights = [
        appeal[f[0]["id"]]
        * (COMMUNITY_PULL if _community(f[0]["id"]) == community else 1.0)
        * (GENRE_PULL if favourite & set(f[0]["genres"]) else 1.0)
        for f in franchises
    ]
    chosen = _weighted_sample(rng, len(franchises), weights, target)
    # People mostly watch what is new at the time: franchises in release order, loosely.
    chosen.sort(key=lambda i: franchises[i][0]["seasonYear"] + rng.gauss(0, 2.5))
    leniency = rng.gauss(0, 8)
    clock = rng.randint(1_300_000_000, 1_600_000_000)  # when the account started watching
    entries: list[dict] = []
    for franchise_index in chosen:
        for part, media in enumerate(franchises[franchise_index]):
            role = roles[media["id"]]
            if part and role != MAIN and rng.random() < SKIP_CHANCE[role]:
                continue  # not interested in this extra; the franchise goes on
            if part and role == MAIN and rng.random() < STOP_CHANCE:
                break  # stops following the franchise
            clock += rng.randint(3, 40) * 86_400
            liked = bool(favourite & set(media["genres"]))
            entry_id = user_id * 1000 + len(entries) + 1
            entries.append(_make_entry(rng, entry_id, media, clock, liked, leniency))
            if entries[-1]["status"] in ("DROPPED", "PLANNING"):
                break  # a dropped (or only planned) franchise is not watched any further
    custom = {}
    if rng.random() < 0.3:
        custom["Favourites"] = [e["mediaId"] for e in entries if e["score"] >= 85][:15]
    return FakeUser(
        user_id,
        _user_name(rng, index),
        entries,
        custom_lists=custom,
        private=rng.random() < private_share,
        score_format=rng.choice(("POINT_100", "POINT_10_DECIMAL", "POINT_10", "POINT_5")),
    )


def _community(media_id: int) -> int:
    return (media_id * 2654435761) % 2**32 % COMMUNITIES


def _user_name(rng: random.Random, index: int) -> str:
    first, second = rng.sample(_NAME_PARTS, 2)
    name = first.capitalize() + second.capitalize()
    return f"{name}{index}" if len(name) + len(str(index)) <= 20 else f"User{index}"


def _weighted_sample(rng: random.Random, n: int, weights: list[float], k: int) -> list[int]:
    """k distinct indices drawn with probability proportional to weight (Efraimidis-Spirakis)."""
    keys = sorted(range(n), key=lambda i: -(rng.random() ** (1.0 / max(weights[i], 1e-12))))
    return keys[:k]


def _make_entry(
    rng: random.Random, entry_id: int, media: dict, clock: int, liked: bool, leniency: float
) -> dict:
    status = rng.choices(
        ("COMPLETED", "CURRENT", "PLANNING", "DROPPED", "PAUSED", "REPEATING"),
        weights=(70, 8, 10, 6, 4, 2),
    )[0]
    episodes = media["episodes"] or 24
    progress = {"COMPLETED": episodes, "REPEATING": episodes, "PLANNING": 0}.get(
        status, rng.randint(1, max(1, episodes - 1))
    )
    score = 0  # AniList's "no score"
    if status != "PLANNING" and rng.random() < 0.8:
        raw = media["averageScore"] + leniency + (8 if liked else -4) + rng.gauss(0, 7)
        score = max(10, min(100, int(round(raw / 5.0) * 5)))
    started = _fuzzy(clock - rng.randint(0, 30) * 86_400)
    completed = _fuzzy(clock if status in ("COMPLETED", "REPEATING") else None)
    if rng.random() < 0.15:  # many users never fill in dates
        started, completed = _fuzzy(None), _fuzzy(None)
    return make_entry(
        entry_id,
        media["id"],
        status,
        score=score,
        progress=progress,
        repeat=1 if status == "REPEATING" else 0,
        createdAt=clock - rng.randint(0, 60) * 86_400,
        updatedAt=clock,
        startedAt=started,
        completedAt=completed,
    )


def _fuzzy(unix_time: int | None) -> dict:
    if unix_time is None:
        return {"year": None, "month": None, "day": None}
    day = datetime.datetime.fromtimestamp(unix_time, tz=datetime.timezone.utc).date()
    return {"year": day.year, "month": day.month, "day": day.day}


def _count_list_popularity(
    media: list[dict], users: list[FakeUser], appeal: dict[int, float]
) -> None:
    """AniList's popularity is the number of lists a title is on; scaled up to look real."""
    counts: dict[int, int] = {}
    for user in users:
        for entry in user.entries:
            counts[entry["mediaId"]] = counts.get(entry["mediaId"], 0) + 1
    for m in media:
        m["popularity"] = counts.get(m["id"], 0) * 997 + int(appeal[m["id"]] * 1000)
        m["favourites"] = m["popularity"] // 40
