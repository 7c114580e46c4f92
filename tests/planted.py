"""Small stores with a planted sequential pattern, built through db.py's own writers.

The catalogue holds `chains` chains of `chain_length` titles plus a few stray titles. Each user
watches two or three chains in order (a prefix of each, the last one cut short at random) with
stray titles mixed in, so the title after "chain c, part k" is always "chain c, part k + 1": a
model that learns order ranks it first, while the most-popular baseline cannot.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from bert4rec import db

STRAY_TITLES = 12
CHAINS, CHAIN_LENGTH = 8, 6  # make_store's defaults
NOT_IN_CATALOGUE = 9_999


def tiny_training(layers: int = 1) -> list[str]:
    """train_model.py flags for a tiny network that learns every chain of a make_store store in
    about 25 s on one thread (8 of 8 chains over seeds 42, 1, 2 and 9, with 1 layer and with 2)."""
    return [
        "--epochs", "50", "--hidden", "64", "--heads", "2", "--layers", str(layers),
        "--max-seq-len", "20", "--batch-size", "32", "--masked-copies", "4", "--lr", "5e-3",
        "--val-fraction", "0.2", "--threads", "1", "--checkpoint-every", "0",
    ]  # fmt: skip


TINY_TRAINING = tiny_training()


def chain_title(chain: int, part: int, chain_length: int) -> int:
    """The AniList id of part `part` of chain `chain` (ids start at 100)."""
    return 100 + chain * chain_length + part


def part(chain: int, k: int) -> int:
    """chain_title in a store of make_store's default chain length."""
    return chain_title(chain, k, CHAIN_LENGTH)


def make_store(
    path: Path,
    *,
    users: int = 150,
    chains: int = CHAINS,
    chain_length: int = CHAIN_LENGTH,
    seed: int = 0,
) -> Path:
    rng = random.Random(seed)
    conn = db.connect(path)
    chain_ids = [
        chain_title(c, p, chain_length) for c in range(chains) for p in range(chain_length)
    ]
    stray_ids = [1000 + i for i in range(STRAY_TITLES)]
    # Popularity ranks shuffled, so the catalogue order says nothing about chain order.
    catalogue_ids = chain_ids + stray_ids
    ranks = list(range(1, len(catalogue_ids) + 1))
    rng.shuffle(ranks)
    db.upsert_anime(
        conn,
        [
            db.Anime(anime_id, f"Title {anime_id}", popularity_rank=rank)
            for anime_id, rank in zip(catalogue_ids, ranks)
        ],
    )
    for user in range(users):
        picked = rng.sample(range(chains), rng.choice((2, 3)))
        watched: list[int] = []
        for i, chain in enumerate(picked):
            last = i == len(picked) - 1
            length = rng.randint(2, chain_length) if last else rng.randint(3, chain_length)
            if watched and not last and rng.random() < 0.5:
                watched.append(rng.choice(stray_ids))
            watched.extend(chain_title(chain, p, chain_length) for p in range(length))
        watched = list(dict.fromkeys(watched))  # a stray title at most once
        db.store_user_list(conn, f"user{user}", user + 1, list(_entries(watched, rng)))
    conn.close()
    return path


def _entries(watched: list[int], rng: random.Random):
    """List entries whose dates put `watched` in order, in the many shapes AniList has."""
    day = dt.date(2018, 1, 1) + dt.timedelta(days=rng.randint(0, 300))
    dated_by_update = rng.random() < 0.3  # some users never fill in dates
    planned = set(watched)
    for anime_id in watched:
        day += dt.timedelta(days=rng.randint(2, 20))
        seconds = int(dt.datetime(day.year, day.month, day.day, 12).timestamp())
        if dated_by_update:
            yield db.ListEntry(anime_id, "COMPLETED", updated_at=seconds, created_at=seconds)
        else:
            status = rng.choice(("COMPLETED", "COMPLETED", "COMPLETED", "DROPPED", "CURRENT"))
            completed = day.isoformat() if status == "COMPLETED" else None
            started = None if completed else day.isoformat()
            yield db.ListEntry(
                anime_id,
                status,
                score=80,
                completed_at=completed,
                started_at=started,
                updated_at=seconds + 10**8,  # edited much later: must not decide the order
            )
    # Noise that must be ignored: plans (any title) and a title outside the catalogue.
    for anime_id in rng.sample([i for i in range(1000, 1000 + STRAY_TITLES)], 2):
        if anime_id not in planned:
            yield db.ListEntry(anime_id, "PLANNING", created_at=10**9)
    yield db.ListEntry(NOT_IN_CATALOGUE, "COMPLETED", completed_at="2019-01-01")
