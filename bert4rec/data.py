"""From stored watch lists to the model's inputs: item mapping, sequences, split, masked batches.

Item indices
    The token layout of bert4rec/vocab.py: 0 padding, the catalogue's titles 1..N (most popular
    first), N + 1 MASK, N + 2 reserved.

A user's sequence (the watch order)
    1. Keep the entries whose status is not PLANNING (CURRENT, COMPLETED, DROPPED, PAUSED and
       REPEATING all count as watched) and whose title is in the catalogue (bert_anime). A title
       appears at most once per user.
    2. Give each entry a time: its completed date if it has one, else its started date, else the
       time the list entry was last updated, else the time it was created. A partial date counts
       as the first day of what it names ("2019" is 2019-01-01, "2019-04" is 2019-04-01); an
       impossible month or day is dropped to the coarser date ("2019-02-30" is 2019-02-01). Dates
       are read as midnight UTC, so they compare directly with the update and creation times.
    3. Sort oldest first. Entries with no time at all come first, before every dated entry.
       Ties are broken by creation time (earlier first, missing last), then by AniList id.
    4. Users left with fewer than --min-items titles are dropped and counted.

Splits (--split)
    user (the original design's): users, not interactions, are split with a fixed seed into
    training, validation and test users (by default 90%, 5% and 5%: the design's 9:1, its
    held-out tenth halved), so held-out users are never seen in training. Every choice (the best
    epoch, early stopping, the baselines' settings, the blend's share, the teacher) is made on
    the validation users; the test users are only ranked once training ends, so their figures
    are not flattered by having been chosen on. Both rank each user's last title from the titles
    before it. With fewer than 100 users the 5% shares are raised to at least 5 users each, or a
    tenth of the users when fewer than 50 (config.MIN_HELD_OUT_USERS); with --test-fraction 0
    the split is the earlier two-way one, exactly (runs saved before test users resume so).
    leave-one-out (the published benchmarks'): every user takes part; the last title is the
    test target, the one before it the validation target, the rest is trained on. Validation
    ranks the second-to-last title from the titles before it, test the last title from all the
    others, so a hidden target is never in its own input.

Batches and masking
    Each sequence keeps its most recent --max-seq-len titles. Batches are padded on the left to
    their own longest sequence, so the newest title is always in the last column, where the MASK
    goes when recommending. With --length-buckets, a batch is drawn from sequences of similar
    length, so almost no work goes into padding.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import math
import os
import random
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch

from . import commands, db, vocab, worlds
from .config import LEAVE_ONE_OUT_MIN_ITEMS, MIN_HELD_OUT_USERS, SPLITS
from .vocab import NUM_SPECIAL_TOKENS, PAD_INDEX

MAPPING_FORMAT = "bert4rec-item-mapping"


class DataError(Exception):
    """The store cannot give a training set. The message says what to do."""


# --- item mapping ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemMapping:
    """AniList id <-> item index. `anime_ids[i - 1]` is the AniList id of item index i."""

    anime_ids: tuple[int, ...]

    @classmethod
    def from_catalogue(cls, catalogue: Sequence[db.Anime]) -> ItemMapping:
        """Index 1 is the most popular title (db.load_catalogue already orders by rank)."""
        return cls(tuple(a.anime_id for a in catalogue))

    @property
    def num_items(self) -> int:
        return len(self.anime_ids)

    @property
    def mask_index(self) -> int:
        return vocab.mask_index(self.num_items)

    @property
    def reserved_index(self) -> int:
        return vocab.reserved_index(self.num_items)

    @property
    def vocab_size(self) -> int:
        return vocab.vocab_size(self.num_items)

    @cached_property
    def _index_of(self) -> dict[int, int]:
        return {anime_id: i + 1 for i, anime_id in enumerate(self.anime_ids)}

    def index(self, anime_id: int) -> int | None:
        """The item index of an AniList id, or None when the title is not in the catalogue."""
        return self._index_of.get(anime_id)

    def anime_id(self, index: int) -> int:
        if not 1 <= index <= self.num_items:
            raise ValueError(f"item index {index} is padding or a special token, not a title")
        return self.anime_ids[index - 1]

    def to_dict(self) -> dict:
        """The saved form (item_mappings.json / .pkl). `index_to_anime[i]` is the AniList id of
        index i (null for padding and the special tokens)."""
        n = self.num_items
        return {
            "format": MAPPING_FORMAT,
            "version": 1,
            "num_items": n,
            "vocab_size": self.vocab_size,
            "pad_index": PAD_INDEX,
            "mask_index": self.mask_index,
            "reserved_index": self.reserved_index,
            "index_to_anime": [None, *self.anime_ids, None, None],
            "anime_to_index": {anime_id: i + 1 for i, anime_id in enumerate(self.anime_ids)},
        }

    @classmethod
    def from_dict(cls, data: dict) -> ItemMapping:
        """Read to_dict()'s form, also after a JSON round trip (string keys)."""
        if data.get("format") != MAPPING_FORMAT:
            raise ValueError("not an item mapping written by train_model.py")
        ids = data["index_to_anime"]
        n = int(data["num_items"])
        if len(ids) != n + NUM_SPECIAL_TOKENS or ids[0] is not None:
            raise ValueError("item mapping is inconsistent (index_to_anime has the wrong shape)")
        mapping = cls(tuple(int(a) for a in ids[1 : n + 1]))
        forward = {int(k): int(v) for k, v in data["anime_to_index"].items()}
        if forward != mapping._index_of:
            raise ValueError("item mapping is inconsistent (anime_to_index != index_to_anime)")
        return mapping


# --- watch order -------------------------------------------------------------------------------


def date_to_seconds(text: str | None) -> int | None:
    """An AniList date ("2019-04-12", "2019-04", "2019") as Unix seconds at midnight UTC of its
    first day; None when there is no readable year."""
    if not text:
        return None
    parts = text.strip().split("-")
    try:
        numbers = [int(p) for p in parts[:3]]
    except ValueError:
        return None
    year, month, day = (numbers + [1, 1])[:3]
    if not 1 <= year <= 9999:
        return None
    if not 1 <= month <= 12:
        month, day = 1, 1
    try:
        dt.date(year, month, day)
    except ValueError:
        day = 1
    return calendar.timegm((year, month, day, 0, 0, 0))


def watch_time(entry: db.ListEntry) -> int | None:
    """When the user watched it: completed, else started, else updated, else created."""
    for when in (date_to_seconds(entry.completed_at), date_to_seconds(entry.started_at)):
        if when is not None:
            return when
    return entry.updated_at if entry.updated_at is not None else entry.created_at


def watch_order_key(entry: db.ListEntry) -> tuple:
    """Sort key of the module docstring's rule: undated first, then by time, created, id."""
    when = watch_time(entry)
    created = entry.created_at if entry.created_at is not None else math.inf
    return (when is not None, when or 0, created, entry.anime_id)


def user_sequence(entries: Sequence[db.ListEntry], mapping: ItemMapping) -> list[int]:
    """The item indices of a user's watched catalogue titles in watch order."""
    kept = {}
    for entry in entries:
        index = mapping.index(entry.anime_id)
        if entry.watched and index is not None:
            kept[entry.anime_id] = (watch_order_key(entry), index)
    return [index for _, index in sorted(kept.values())]


# --- the training set --------------------------------------------------------------------------


@dataclass(frozen=True)
class UserSequence:
    user_id: int
    user_name: str
    items: np.ndarray  # item indices in watch order


class NextItemCases(NamedTuple):
    """Next-title ranking: for each case, rank `targets[i]` given `histories[i]` (which never
    contains it); the other titles of the history are excluded from the ranking."""

    histories: list[np.ndarray]
    targets: np.ndarray


@dataclass(frozen=True)
class TrainingData:
    """The sequences of one split. `train` is what training masks. For the user split,
    `validation` and `test` hold the held-out users' whole sequences, each user in one part
    (`test` is empty with --test-fraction 0). For leave-one-out, every user is in all three,
    cut so that the last title of each is the target to rank: `train` ends before the
    validation target, `validation` ends with it and `test` is the whole sequence, ending with
    the test target."""

    mapping: ItemMapping
    train: list[UserSequence]
    validation: list[UserSequence]
    users_loaded: int
    users_dropped: int  # too few watched catalogue titles (min_items; 3 for leave-one-out)
    split: str = "user"
    test: list[UserSequence] = field(default_factory=list)
    world: str | None = None  # where the store's data came from (worlds.py); None: not recorded

    @property
    def train_sequences(self) -> list[np.ndarray]:
        return [u.items for u in self.train]

    @property
    def validation_sequences(self) -> list[np.ndarray]:
        return [u.items for u in self.validation]

    @property
    def validation_cases(self) -> NextItemCases:
        """Next-title ranking on validation: each validation sequence's last title, hidden."""
        return hold_out_last(self.validation_sequences)

    @property
    def test_cases(self) -> NextItemCases | None:
        """Next-title ranking on test: each test sequence's last title, hidden (None when there
        are no test users: the user split with --test-fraction 0)."""
        return hold_out_last([u.items for u in self.test]) if self.test else None

    def fingerprint(self) -> str:
        """Changes when the catalogue, the users or their sequences change (checked on resume)."""
        digest = hashlib.sha256(np.asarray(self.mapping.anime_ids, dtype=np.int64).tobytes())
        parts = (
            (self.train, self.validation, self.test) if self.test else (self.train, self.validation)
        )
        for part in parts:  # without test users, what it was before test users existed
            for user in part:
                digest.update(np.int64(user.user_id).tobytes() + user.items.tobytes() + b"|")
            digest.update(b"#")
        return digest.hexdigest()[:16]

    def summary(self) -> dict:
        whole = (
            self.test if self.split == "leave-one-out" else self.train + self.validation + self.test
        )
        lengths = [len(u.items) for u in whole]
        summary = {
            "split": self.split,
            "catalogue_titles": self.mapping.num_items,
            "users_loaded": self.users_loaded,
            "users_dropped_too_few_items": self.users_dropped,
            "train_users": len(self.train),
            "validation_users": len(self.validation),
            "interactions": int(sum(lengths)),
            "mean_sequence_length": float(np.mean(lengths)) if lengths else 0.0,
        }
        if self.test:
            summary["test_users"] = len(self.test)
        summary[worlds.SETTINGS_FIELD] = self.world
        return summary


def hold_out_last(sequences: Sequence[np.ndarray]) -> NextItemCases:
    """Each sequence's last title becomes the target; the rest is the history it is ranked from."""
    targets = np.array([s[-1] for s in sequences], dtype=np.int64)
    return NextItemCases([s[:-1] for s in sequences], targets)


def load_sequences(
    conn: sqlite3.Connection, mapping: ItemMapping, min_items: int
) -> tuple[list[UserSequence], int, int]:
    """(kept users, users loaded, users dropped for having fewer than min_items titles)."""
    histories = db.load_histories(conn)
    kept = []
    for history in histories:
        items = user_sequence(history.entries, mapping)
        if len(items) >= min_items:
            kept.append(
                UserSequence(history.user_id, history.user_name, np.array(items, dtype=np.int64))
            )
    return kept, len(histories), len(histories) - len(kept)


def held_out_floor(users: int) -> int:
    """The fewest validation (and test) users of a three-way user split: MIN_HELD_OUT_USERS,
    or a tenth of the users when there are fewer than 10 x that (so training keeps 80%), or 1."""
    return max(1, min(MIN_HELD_OUT_USERS, users // 10))


def held_out_sizes(users: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(validation users, test users) of the user split: each its share of `users`, rounded,
    and at least held_out_floor; training keeps one user at least. With test_fraction 0 there
    are no test users and validation is its share alone (at least 1): the two-way split runs
    saved before test users trained on."""
    if test_fraction <= 0:
        return min(max(1, round(users * val_fraction)), users - 1), 0
    floor = held_out_floor(users)
    n_val = min(max(floor, round(users * val_fraction)), users - 2)
    n_test = min(max(floor, round(users * test_fraction)), users - 1 - n_val)
    return n_val, n_test


def split_users(
    users: Sequence[UserSequence], val_fraction: float, seed: int, test_fraction: float = 0.0
) -> tuple[list[UserSequence], list[UserSequence], list[UserSequence]]:
    """(train, validation, test), by user, with a fixed seed (held_out_sizes). The users are
    shuffled once and cut: validation first, then test, so the validation users are those of
    the two-way split of the same seed whenever their number is the same."""
    ordered = sorted(users, key=lambda u: u.user_id)
    random.Random(seed).shuffle(ordered)
    n_val, n_test = held_out_sizes(len(ordered), val_fraction, test_fraction)
    held_out = n_val + n_test
    return ordered[held_out:], ordered[:n_val], ordered[n_val:held_out]


def leave_one_out(
    users: Sequence[UserSequence],
) -> tuple[list[UserSequence], list[UserSequence], list[UserSequence]]:
    """(train, validation, test) of every user: all but the last two titles; all but the last;
    the whole sequence. Each needs at least 3 titles (one to train on, two targets)."""
    if any(len(u.items) < LEAVE_ONE_OUT_MIN_ITEMS for u in users):
        raise ValueError(f"leave-one-out needs {LEAVE_ONE_OUT_MIN_ITEMS} titles per user")

    def cut(user: UserSequence, end: int) -> UserSequence:
        return UserSequence(user.user_id, user.user_name, user.items[: len(user.items) - end])

    return [cut(u, 2) for u in users], [cut(u, 1) for u in users], list(users)


def prepare_training_data(
    db_path: str | os.PathLike[str],
    *,
    min_items: int,
    val_fraction: float,
    seed: int,
    split: str = "user",
    test_fraction: float = 0.0,
) -> TrainingData:
    """Read the store and build the mapping, the sequences and the split (module docstring).

    Raises db.DatabaseError (missing or unreadable file) or DataError, each with what to do.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
    if split == "leave-one-out":
        min_items = max(min_items, LEAVE_ONE_OUT_MIN_ITEMS)
    conn = db.connect(db_path, create=False)
    try:
        catalogue = db.load_catalogue(conn)
        if not catalogue:
            raise DataError(
                f"{db_path} has no anime catalogue. Run {commands.launcher('1_prepare_anime')} "
                "first."
            )
        mapping = ItemMapping.from_catalogue(catalogue)
        users, loaded, dropped = load_sequences(conn, mapping, min_items)
        world = worlds.of_store(conn)
    finally:
        conn.close()
    if loaded == 0:
        raise DataError(
            f"{db_path} has no users with a loaded anime list. Put AniList user names in "
            f"datas_user.txt and run {commands.launcher('2_load_users')} first."
        )
    with_test = split == "user" and test_fraction > 0
    needed = 1 if split == "leave-one-out" else 3 if with_test else 2  # one user in each part
    if len(users) < needed:
        parts = "training, validation and test" if with_test else "training and validation"
        remedies = f"Load more users ({commands.launcher('2_load_users')})" + (
            ", lower --min-items or give --test-fraction 0 (no test users)"
            if with_test
            else " or lower --min-items"
        )
        raise DataError(
            f"too few users to split into {parts}: {len(users)} of {loaded} loaded users have "
            f"at least {min_items} watched titles from the catalogue, and at least {needed} are "
            f"needed. {remedies}."
        )
    if split == "leave-one-out":
        train, validation, test = leave_one_out(users)
    else:
        train, validation, test = split_users(users, val_fraction, seed, test_fraction)
    return TrainingData(mapping, train, validation, loaded, dropped, split, test, world)


# --- masked batches ----------------------------------------------------------------------------


class MaskedBatch(NamedTuple):
    inputs: torch.Tensor  # [B, L] item indices, MASK where hidden, PAD (0) on the left
    labels: torch.Tensor  # [B, L] the hidden item where masked, else PAD (0)


def pad_left(sequences: Sequence[np.ndarray], length: int | None = None) -> np.ndarray:
    """[B, L] int64, each row right-aligned, zeros (PAD) on the left; L = longest unless given."""
    length = max(len(s) for s in sequences) if length is None else length
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):  # one slice per sequence, not per token
        if len(seq):
            out[row, length - len(seq) :] = seq
    return out


def mask_items(
    items: np.ndarray,
    rng: np.random.Generator,
    *,
    mask_prob: float,
    last_item_mask_prob: float,
    mask_index: int,
) -> MaskedBatch:
    """Hide titles of a left-padded [B, L] batch: each real title with probability mask_prob
    (at least one per row), or, for a last_item_mask_prob share of rows, only the newest one.

    Every random number is drawn whatever the outcome, so a batch's masks depend on its seed
    alone.
    """
    batch, length = items.shape
    real = items != PAD_INDEX
    masked = (rng.random(items.shape) < mask_prob) & real
    lengths = real.sum(axis=1)
    fallback = length - 1 - np.floor(rng.random(batch) * lengths).astype(np.int64)
    last_only = rng.random(batch) < last_item_mask_prob
    rows = np.arange(batch)
    empty = ~masked.any(axis=1)
    masked[rows[empty], fallback[empty]] = True
    masked[last_only] = False
    masked[rows[last_only], length - 1] = True
    inputs = np.where(masked, mask_index, items)
    labels = np.where(masked, items, PAD_INDEX)
    return MaskedBatch(torch.from_numpy(inputs), torch.from_numpy(labels))


BUCKET_POOL_BATCHES = 16  # length buckets sort pools of this many batches (see below)


def sort_in_pools(order: np.ndarray, lengths: np.ndarray, pool: int) -> np.ndarray:
    """`order` cut into consecutive pools of `pool` sequences, each pool sorted by length
    (stably, so equal lengths keep their random order). Batches cut from the result hold
    sequences of similar length, yet which sequences meet in a batch still changes every epoch.
    On MovieLens-1M (batch 128, pools of 16 batches) 95% of the padded cells are real titles,
    against 54% for random batches."""
    pools = [order[start : start + pool] for start in range(0, len(order), pool)]
    return np.concatenate([p[np.argsort(lengths[p], kind="stable")] for p in pools])


class BERT4RecDataset(torch.utils.data.Dataset):
    """The masked batches of one set of users; `dataset[b]` is batch b of the current epoch.

    Why whole batches rather than single sequences: a batch is padded only to its own longest
    sequence and masked with a few array operations, and its order and masks depend only on
    (seed, epoch, b). So they are the same with any number of DataLoader workers, a resumed run
    sees exactly the batches an uninterrupted one would, and a validation set (shuffle=False,
    epoch never changed) has the same masks every epoch, which keeps its loss comparable.
    With length_buckets, batches are made of sequences of similar length (sort_in_pools) and
    then shuffled, so the padding, and the time spent on it, nearly vanishes. With
    random_windows, a sequence longer than max_seq_len gives a window of max_seq_len
    consecutive titles drawn anew each epoch, instead of always its newest ones: a third of
    MovieLens-1M's ratings lie before its users' newest 200 and would never be trained on.
    Use it with `DataLoader(dataset, batch_size=None)`.
    """

    def __init__(
        self,
        sequences: Sequence[np.ndarray],
        *,
        max_seq_len: int,
        batch_size: int,
        mask_prob: float,
        last_item_mask_prob: float,
        mask_index: int,
        seed: int,
        shuffle: bool,
        length_buckets: bool = False,
        random_windows: bool = False,
    ) -> None:
        self.sequences = [
            np.asarray(s if random_windows else s[-max_seq_len:], dtype=np.int64) for s in sequences
        ]
        if any(((s <= PAD_INDEX) | (s >= mask_index)).any() for s in self.sequences):
            raise ValueError("sequences may hold only item indices 1..N, no padding or tokens")
        self.max_seq_len = max_seq_len
        self.lengths = np.minimum([len(s) for s in self.sequences], max_seq_len).astype(np.int64)
        self.length_buckets = length_buckets
        self.batch_size = batch_size
        self.mask_prob = mask_prob
        self.last_item_mask_prob = last_item_mask_prob
        self.mask_index = mask_index
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.sequences) / self.batch_size)

    @property
    def num_sequences(self) -> int:
        return len(self.sequences)

    def _batches(self) -> list[np.ndarray]:
        """This epoch's batches as indices into self.sequences, computed once per epoch."""
        cached = getattr(self, "_batches_cache", None)
        if cached is not None and cached[0] == self.epoch:
            return cached[1]
        n, size = len(self.sequences), self.batch_size
        rng = np.random.default_rng([self.seed, self.epoch, 0])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.length_buckets:
            order = sort_in_pools(order, self.lengths, size * BUCKET_POOL_BATCHES)
        batches = [order[start : start + size] for start in range(0, n, size)]
        if self.length_buckets and self.shuffle:  # else short batches would always come first
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._batches_cache = (self.epoch, batches)
        return batches

    def _window(self, sequence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        extra = len(sequence) - self.max_seq_len
        if extra <= 0:
            return sequence
        start = int(rng.integers(extra + 1))
        return sequence[start : start + self.max_seq_len]

    def __getitem__(self, b: int) -> MaskedBatch:
        if not 0 <= b < len(self):
            raise IndexError(b)
        rng = np.random.default_rng([self.seed, self.epoch, 1, b])
        items = pad_left([self._window(self.sequences[i], rng) for i in self._batches()[b]])
        return mask_items(
            items,
            rng,
            mask_prob=self.mask_prob,
            last_item_mask_prob=self.last_item_mask_prob,
            mask_index=self.mask_index,
        )


# --- next-item inputs (evaluation, and recommendations for anyone) -----------------------------


def next_item_inputs(
    histories: Sequence[np.ndarray], mask_index: int, max_seq_len: int
) -> torch.Tensor:
    """[B, L]: each history's newest max_seq_len - 1 titles followed by MASK, padded left.
    The model's logits at the last column rank the next title."""
    rows = [
        np.append(np.asarray(h[-(max_seq_len - 1) :], dtype=np.int64), mask_index)
        for h in histories
    ]
    return torch.from_numpy(pad_left(rows))


def seen_items(histories: Sequence[np.ndarray], vocab_size: int) -> torch.Tensor:
    """[B, vocab] True at every title of each whole history (not only the newest max_seq_len)."""
    seen = torch.zeros(len(histories), vocab_size, dtype=torch.bool)
    lengths = [len(h) for h in histories]
    if sum(lengths):
        rows = np.repeat(np.arange(len(histories)), lengths)
        seen[
            torch.from_numpy(rows), torch.from_numpy(np.concatenate(histories).astype(np.int64))
        ] = True
    return seen


class EncodedHistory(NamedTuple):
    items: np.ndarray  # item indices in the given order, each title once
    unknown: list[int]  # AniList ids not in the model's catalogue (left out)


def encode_history(anime_ids: Sequence[int], mapping: ItemMapping) -> EncodedHistory:
    """Any user's history (AniList ids, oldest first), e.g. a user never seen in training, as
    item indices. A title given twice keeps its latest place. Feed `[encoded.items]` to
    next_item_inputs to rank what comes next."""
    latest: dict[int, int] = {}
    unknown = []
    for position, anime_id in enumerate(anime_ids):
        index = mapping.index(int(anime_id))
        if index is None:
            unknown.append(int(anime_id))
        else:
            latest[index] = position
    ordered = sorted(latest, key=latest.__getitem__)
    return EncodedHistory(np.array(ordered, dtype=np.int64), unknown)
