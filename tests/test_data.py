from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from bert4rec import data, db
from bert4rec.data import BERT4RecDataset, ItemMapping
from bert4rec.vocab import PAD_INDEX


def E(anime_id, status="COMPLETED", **kw):  # noqa: N802 - reads like a table row
    return db.ListEntry(anime_id, status, **kw)


MAPPING = ItemMapping((10, 20, 30, 40, 50))


# --- the item mapping ----------------------------------------------------------------------------


def test_mapping_reserves_padding_and_special_tokens():
    assert MAPPING.index(10) == 1  # the most popular title is 1, never 0 (padding)
    assert MAPPING.index(50) == 5
    assert MAPPING.index(99) is None
    assert (MAPPING.mask_index, MAPPING.reserved_index, MAPPING.vocab_size) == (6, 7, 8)
    assert MAPPING.anime_id(1) == 10
    for special in (PAD_INDEX, MAPPING.mask_index, MAPPING.reserved_index):
        with pytest.raises(ValueError):
            MAPPING.anime_id(special)


def test_mapping_follows_popularity_rank_and_survives_json(tmp_path):
    conn = db.connect(tmp_path / "bert.db")
    db.upsert_anime(conn, [db.Anime(7, popularity_rank=2), db.Anime(3, popularity_rank=1)])
    mapping = ItemMapping.from_catalogue(db.load_catalogue(conn))
    assert mapping.anime_ids == (3, 7)
    saved = json.loads(json.dumps(mapping.to_dict()))
    assert saved["index_to_anime"] == [None, 3, 7, None, None]
    assert saved["anime_to_index"] == {"3": 1, "7": 2}
    assert ItemMapping.from_dict(saved) == mapping
    saved["anime_to_index"]["3"] = 2
    with pytest.raises(ValueError, match="inconsistent"):
        ItemMapping.from_dict(saved)


# --- the watch order ----------------------------------------------------------------------------


def test_date_to_seconds_reads_partial_and_broken_dates():
    day = data.date_to_seconds
    assert day("2019") == day("2019-01-01") < day("2019-04") == day("2019-04-01")
    assert day("2019-02-30") == day("2019-02-01")  # impossible day: month precision
    assert day("2019-13-05") == day("2019")  # impossible month: year precision
    assert day(None) is None and day("") is None and day("soon") is None
    assert day("1970-01-02") == 86400


def test_watch_order_rule():
    t = data.date_to_seconds
    entries = [
        E(10, completed_at="2020-05-01", started_at="2019-01-01"),  # completed wins
        E(20, started_at="2020-03-01", updated_at=1),  # started beats updated
        E(30, updated_at=t("2020-04-01"), created_at=1),  # updated beats created
        E(40, created_at=t("2020-04-15")),
        E(50),  # no time at all: first
    ]
    assert data.user_sequence(entries, MAPPING) == [5, 2, 3, 4, 1]


def test_partial_dates_and_ties():
    entries = [
        E(10, completed_at="2020-03-10"),
        E(20, completed_at="2020-03"),  # = 2020-03-01, before the 10th
        E(30, completed_at="2020", created_at=5),  # = 2020-01-01; ties with 40, created earlier
        E(40, completed_at="2020-01-01", created_at=9),
        E(50, completed_at="2020-01-01"),  # same day, no creation time: after both
    ]
    assert data.user_sequence(entries, MAPPING) == [3, 4, 5, 2, 1]


def test_planning_and_unknown_titles_are_left_out():
    entries = [
        E(10, completed_at="2020-01-01"),
        E(20, "PLANNING", created_at=1),
        E(30, "DROPPED", started_at="2020-02-01"),
        E(999, completed_at="2020-03-01"),  # not in the catalogue
        E(40, "CURRENT", started_at="2020-04-01"),
        E(50, "PAUSED", updated_at=2_000_000_000),
    ]
    assert data.user_sequence(entries, MAPPING) == [1, 3, 4, 5]


def _store(tmp_path, lists: dict[int, list[db.ListEntry]], titles=(10, 20, 30, 40, 50)):
    conn = db.connect(tmp_path / "bert.db")
    db.upsert_anime(conn, [db.Anime(a, popularity_rank=i + 1) for i, a in enumerate(titles)])
    for user_id, entries in lists.items():
        db.store_user_list(conn, f"u{user_id}", user_id, entries)
    conn.close()
    return tmp_path / "bert.db"


def test_prepare_drops_and_counts_short_users_and_splits_by_user(tmp_path):
    full = [E(a, completed_at=f"2020-01-0{i + 1}") for i, a in enumerate((10, 20, 30, 40, 50))]
    lists = {u: full for u in range(1, 21)}
    lists[99] = full[:2] + [E(30, "PLANNING")]  # two watched titles: dropped
    path = _store(tmp_path, lists)
    prepared = data.prepare_training_data(path, min_items=3, val_fraction=0.1, seed=1)
    assert (prepared.users_loaded, prepared.users_dropped) == (21, 1)
    assert (len(prepared.train), len(prepared.validation)) == (18, 2)
    train_ids = {u.user_id for u in prepared.train}
    val_ids = {u.user_id for u in prepared.validation}
    assert not train_ids & val_ids and 99 not in train_ids | val_ids
    again = data.prepare_training_data(path, min_items=3, val_fraction=0.1, seed=1)
    assert [u.user_id for u in again.validation] == [u.user_id for u in prepared.validation]
    assert again.fingerprint() == prepared.fingerprint()
    other = data.prepare_training_data(path, min_items=3, val_fraction=0.1, seed=2)
    assert other.fingerprint() != prepared.fingerprint()  # another split
    assert prepared.summary()["users_dropped_too_few_items"] == 1


@pytest.mark.parametrize(
    ("lists", "titles", "message"),
    [
        ({}, (), "no anime catalogue"),
        ({}, (10, 20), "no users"),
        ({1: [E(10), E(20)]}, (10, 20), "too few users"),
    ],
)
def test_prepare_explains_what_is_missing(tmp_path, lists, titles, message):
    path = _store(tmp_path, lists, titles)
    with pytest.raises(data.DataError, match=message):
        data.prepare_training_data(path, min_items=2, val_fraction=0.1, seed=0)


def test_missing_database_is_a_clear_error(tmp_path):
    with pytest.raises(db.DatabaseError, match="not found"):
        data.prepare_training_data(tmp_path / "nope.db", min_items=2, val_fraction=0.1, seed=0)


# --- masked batches -----------------------------------------------------------------------------


def _dataset(sequences, **kw):
    settings = {
        "max_seq_len": 6,
        "batch_size": 4,
        "mask_prob": 0.15,
        "last_item_mask_prob": 0.0,
        "mask_index": 100,
        "seed": 0,
        "shuffle": True,
    }
    return BERT4RecDataset(sequences, **{**settings, **kw})


def _random_sequences(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.arange(1, 99))[: rng.integers(1, 12)] for _ in range(n)]


def test_batches_keep_the_newest_titles_and_pad_left_to_the_batch_longest():
    ds = _dataset([np.array([1, 2, 3, 4, 5, 6, 7, 8]), np.array([9, 10])], mask_prob=1.0)
    inputs, labels = ds[0]
    assert inputs.shape == (2, 6)  # truncated to max_seq_len, no wider
    rows = {tuple(r) for r in labels.tolist()}
    assert (3, 4, 5, 6, 7, 8) in rows  # the most recent six, oldest dropped
    assert (0, 0, 0, 0, 9, 10) in rows  # padding on the left
    assert (inputs[labels != 0] == 100).all()
    short = _dataset([np.array([1, 2]), np.array([3, 4, 5])], batch_size=2, mask_prob=1.0)
    assert short[0].inputs.shape == (2, 3)  # the batch's longest, not max_seq_len


def test_masks_are_valid_and_at_least_one_per_sequence():
    ds = _dataset(_random_sequences(), mask_prob=0.01)
    for epoch in (1, 2):
        ds.set_epoch(epoch)
        for inputs, labels in ds:
            masked = labels != PAD_INDEX
            assert masked.any(dim=1).all()  # at least one per row
            assert (inputs[masked] == 100).all()  # MASK exactly where a label is
            assert (inputs[~masked] != 100).all()
            assert (labels[masked] >= 1).all() and (labels[masked] < 100).all()
            assert not (masked & (inputs == PAD_INDEX)).any()


def test_mask_share_is_about_mask_prob():
    ds = _dataset(_random_sequences(400), mask_prob=0.3, max_seq_len=50)
    masked = real = 0
    for inputs, labels in ds:
        masked += int((labels != 0).sum())
        real += int((labels != 0).sum() + ((inputs != 0) & (inputs != 100)).sum())
    assert 0.27 < masked / real < 0.36


def test_last_item_rows_mask_only_the_newest_title():
    ds = _dataset(_random_sequences(200), last_item_mask_prob=0.5, batch_size=200)
    inputs, labels = ds[0]
    only_last = (labels[:, :-1] == 0).all(dim=1) & (labels[:, -1] != 0)
    assert 70 < int(only_last.sum()) < 150  # about half (plus short rows masked by chance)
    none = _dataset(_random_sequences(200), last_item_mask_prob=0.0, batch_size=200)
    all_ = _dataset(_random_sequences(200), last_item_mask_prob=1.0, batch_size=200)
    assert (all_[0].labels[:, :-1] == 0).all() and (all_[0].labels[:, -1] != 0).all()
    assert int((none[0].labels[:, :-1] != 0).sum()) > 0


def test_batches_depend_only_on_seed_epoch_and_index():
    sequences = _random_sequences()
    a, b = _dataset(sequences), _dataset(sequences)
    a.set_epoch(3)
    b.set_epoch(3)
    for i in reversed(range(len(a))):  # any order of access (workers) gives the same batch
        assert torch.equal(a[i].inputs, b[i].inputs) and torch.equal(a[i].labels, b[i].labels)
    first = a[0]
    a.set_epoch(4)
    assert not torch.equal(first.labels, a[0].labels)  # new order and masks each epoch


def test_validation_batches_are_fixed_across_epochs():
    ds = _dataset(_random_sequences(), shuffle=False)
    before = [ds[i] for i in range(len(ds))]
    again = [ds[i] for i in range(len(ds))]
    assert all(torch.equal(x.labels, y.labels) for x, y in zip(before, again))


def test_dataset_refuses_padding_or_tokens_inside_sequences():
    with pytest.raises(ValueError):
        _dataset([np.array([1, 0, 2])])
    with pytest.raises(ValueError):
        _dataset([np.array([1, 100])])


def test_dataloader_with_workers_gives_the_same_batches():
    sequences = _random_sequences()
    ds = _dataset(sequences)
    ds.set_epoch(2)
    direct = [ds[i] for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    for x, y in zip(direct, loader):
        assert torch.equal(x.inputs, y.inputs) and torch.equal(x.labels, y.labels)


# --- next-title inputs and new users -------------------------------------------------------------


def test_next_item_inputs_end_with_mask_and_hold_out_never_leaks():
    sequences = [np.array([1, 2, 3, 4, 5]), np.array([6, 7])]
    cases = data.hold_out_last(sequences)
    assert cases.targets.tolist() == [5, 7]
    inputs = data.next_item_inputs(cases.histories, mask_index=9, max_seq_len=3)
    assert inputs.tolist() == [[3, 4, 9], [0, 6, 9]]
    assert not (inputs == torch.as_tensor(cases.targets)[:, None]).any()


def test_seen_items_cover_the_whole_history_not_only_the_window():
    seen = data.seen_items([np.array([1, 2, 3, 4]), np.array([5])], vocab_size=8)
    assert seen.tolist() == [
        [False, True, True, True, True, False, False, False],
        [False, False, False, False, False, True, False, False],
    ]


def test_encode_history_of_a_new_user():
    encoded = data.encode_history([30, 999, 10, 30, 50], MAPPING)
    assert encoded.items.tolist() == [1, 3, 5]  # 30 given twice keeps its latest place
    assert encoded.unknown == [999]
    inputs = data.next_item_inputs([encoded.items], MAPPING.mask_index, max_seq_len=200)
    assert inputs.tolist() == [[1, 3, 5, MAPPING.mask_index]]


# --- leave-one-out and length buckets ------------------------------------------------------------


def _dated(ids):
    return [E(a, completed_at=f"2020-01-{i + 1:02d}") for i, a in enumerate(ids)]


def test_leave_one_out_cuts_every_user_three_ways_and_never_leaks(tmp_path):
    lists = {1: _dated((10, 20, 30, 40, 50)), 2: _dated((50, 40, 30)), 3: _dated((20, 10))}
    path = _store(tmp_path, lists)
    loo = data.prepare_training_data(
        path, min_items=2, val_fraction=0.1, seed=0, split="leave-one-out"
    )
    # Every user with 3 titles or more is in all three parts; a 2-title user is left out
    # (counted), whatever --min-items says: leave-one-out needs a title to train on.
    assert (loo.users_loaded, loo.users_dropped) == (3, 1)
    by_user = {u.user_id: u.items.tolist() for u in loo.test}
    assert by_user == {1: [1, 2, 3, 4, 5], 2: [5, 4, 3]}
    assert [u.items.tolist() for u in loo.train] == [[1, 2, 3], [5]]
    assert [u.items.tolist() for u in loo.validation] == [[1, 2, 3, 4], [5, 4]]
    val, test = loo.validation_cases, loo.test_cases
    assert val.targets.tolist() == [4, 4] and test.targets.tolist() == [5, 3]
    assert [h.tolist() for h in val.histories] == [[1, 2, 3], [5]]
    assert [h.tolist() for h in test.histories] == [[1, 2, 3, 4], [5, 4]]
    for cases in (val, test):
        for history, target in zip(cases.histories, cases.targets):
            assert target not in history  # the hidden target is never in its own input
    for train, target in zip(loo.train_sequences, val.targets):
        assert target not in train and test.targets[0] not in loo.train_sequences[0]
    summary = loo.summary()
    assert summary["split"] == "leave-one-out" and summary["test_users"] == 2
    assert summary["interactions"] == 8  # each title counted once, not once per part


def test_leave_one_out_of_a_single_user_and_of_nobody_long_enough(tmp_path):
    one = _store(tmp_path, {1: _dated((10, 20, 30))})
    loo = data.prepare_training_data(
        one, min_items=3, val_fraction=0.1, seed=0, split="leave-one-out"
    )
    assert len(loo.test) == 1  # the user split would need two users
    (tmp_path / "short").mkdir()
    short = _store(tmp_path / "short", {1: _dated((10, 20)), 2: _dated((30,))})
    with pytest.raises(data.DataError, match="at least 3 watched"):
        data.prepare_training_data(
            short, min_items=2, val_fraction=0.1, seed=0, split="leave-one-out"
        )


def test_the_user_split_is_unchanged_by_the_split_setting(tmp_path):
    lists = {u: _dated((10, 20, 30, 40, 50)[: 2 + u % 4]) for u in range(1, 31)}
    path = _store(tmp_path, lists)
    before = data.prepare_training_data(path, min_items=2, val_fraction=0.2, seed=3)
    user = data.prepare_training_data(path, min_items=2, val_fraction=0.2, seed=3, split="user")
    assert user.fingerprint() == before.fingerprint() and user.summary() == before.summary()
    assert user.test == [] and user.test_cases is None
    # The fingerprint of a user split is what it was before leave-one-out existed (so older
    # checkpoints still resume): sha256 over the catalogue, then each part.
    digest = hashlib.sha256(np.asarray(user.mapping.anime_ids, dtype=np.int64).tobytes())
    for part in (user.train, user.validation):
        for u in part:
            digest.update(np.int64(u.user_id).tobytes() + u.items.tobytes() + b"|")
        digest.update(b"#")
    assert user.fingerprint() == digest.hexdigest()[:16]
    assert user.validation_cases.targets.tolist() == [u.items[-1] for u in user.validation]


def test_length_buckets_group_similar_lengths_and_still_shuffle():
    rng = np.random.default_rng(1)
    sequences = [np.arange(1, 2 + rng.integers(0, 60)) for _ in range(300)]
    kw = {"batch_size": 10, "max_seq_len": 80, "mask_prob": 0.2}
    plain, buckets = _dataset(sequences, **kw), _dataset(sequences, length_buckets=True, **kw)

    def padding_share(ds):
        cells = real = 0
        for inputs, _ in ds:
            cells, real = cells + inputs.numel(), real + int((inputs != 0).sum())
        return 1 - real / cells

    assert padding_share(buckets) < 0.1 < 0.3 < padding_share(plain)
    seen = np.concatenate([ds_batch for ds_batch in buckets._batches()])
    assert sorted(seen.tolist()) == list(range(300))  # every sequence once per epoch
    first = [b.tolist() for b in buckets._batches()]
    buckets.set_epoch(1)
    assert [b.tolist() for b in buckets._batches()] != first  # a new draw every epoch
    again = _dataset(sequences, length_buckets=True, **kw)
    again.set_epoch(1)
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(again, buckets))


def unmasked(batch) -> torch.Tensor:
    return torch.where(batch.labels != 0, batch.labels, batch.inputs)


def test_random_windows_cover_long_histories_and_repeat_per_epoch():
    long, short = np.arange(1, 31), np.arange(40, 44)  # 30 and 4 titles, max_seq_len 6
    kw = {"batch_size": 2, "mask_prob": 0.2}
    newest = _dataset([long, short], **kw)
    windows = _dataset([long, short], random_windows=True, **kw)
    starts = set()
    for epoch in range(40):
        for ds in (newest, windows):
            ds.set_epoch(epoch)
        (fixed,) = list(newest)
        (drawn,) = list(windows)
        rows = {tuple(r[r != 0].tolist()) for r in unmasked(fixed)}
        assert (25, 26, 27, 28, 29, 30) in rows and (40, 41, 42, 43) in rows
        kept, window = sorted(([t for t in row if t] for row in unmasked(drawn).tolist()), key=len)
        assert len(window) == 6 and window == list(range(window[0], window[0] + 6))
        assert kept == [40, 41, 42, 43]  # short histories are whole
        starts.add(window[0])
    assert min(starts) == 1 and max(starts) == 25 and len(starts) > 15  # all of it is used
    again = _dataset([long, short], random_windows=True, **kw)
    again.set_epoch(7)
    windows.set_epoch(7)
    assert torch.equal(next(iter(again)).inputs, next(iter(windows)).inputs)


# --- the user split's test users ------------------------------------------------------------------


def _users_store(tmp_path, users: int):
    lists = {u: _dated((10, 20, 30, 40, 50)[: 2 + u % 4]) for u in range(1, users + 1)}
    return _store(tmp_path, lists)


def test_test_users_are_held_out_apart_from_training_and_validation(tmp_path):
    path = _users_store(tmp_path, 200)
    kw = {"min_items": 2, "val_fraction": 0.05, "seed": 3}
    split = data.prepare_training_data(path, test_fraction=0.05, **kw)
    ids = [{u.user_id for u in part} for part in (split.train, split.validation, split.test)]
    assert [len(part) for part in ids] == [180, 10, 10]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert ids[0] | ids[1] | ids[2] == set(range(1, 201))
    # stable for a seed, another seed draws other test users
    again = data.prepare_training_data(path, test_fraction=0.05, **kw)
    assert [u.user_id for u in again.test] == [u.user_id for u in split.test]
    assert again.fingerprint() == split.fingerprint()
    other = data.prepare_training_data(path, test_fraction=0.05, **{**kw, "seed": 4})
    assert {u.user_id for u in other.test} != ids[2]
    # ranked like validation: each test user's last title from the titles before it
    cases = split.test_cases
    assert cases.targets.tolist() == [u.items[-1] for u in split.test]
    assert [h.tolist() for h in cases.histories] == [u.items[:-1].tolist() for u in split.test]
    summary = split.summary()
    assert (summary["train_users"], summary["validation_users"], summary["test_users"]) == (
        180,
        10,
        10,
    )
    everyone = data.prepare_training_data(path, **kw)  # no test users: the two-way split
    assert summary["interactions"] == everyone.summary()["interactions"]
    assert split.fingerprint() != everyone.fingerprint()  # test users are data of the run
    # The validation users are those of the two-way split of the same seed and size.
    two_way = data.prepare_training_data(path, **{**kw, "val_fraction": 0.05})
    assert [u.user_id for u in two_way.validation] == [u.user_id for u in split.validation]


@pytest.mark.parametrize(
    ("users", "sizes"),
    [(3, (1, 1)), (10, (1, 1)), (30, (3, 3)), (50, (5, 5)), (60, (5, 5)), (400, (20, 20))],
)
def test_few_users_still_give_validation_and_test_a_handful(users, sizes):
    # The original design's ~50 users: 5% would be 2 users each; at least 5 (or a tenth of the
    # users) each, so training keeps 80% at least.
    assert data.held_out_sizes(users, 0.05, 0.05) == sizes
    assert users - sum(sizes) >= min(users * 0.8, users - 2)
    # Without test users the split is the earlier one, whatever the number of users.
    assert data.held_out_sizes(users, 0.05, 0.0) == (max(1, round(users * 0.05)), 0)


def test_too_few_users_for_a_test_user_say_how_to_do_without(tmp_path):
    path = _users_store(tmp_path, 2)
    with pytest.raises(data.DataError, match="--test-fraction 0"):
        data.prepare_training_data(path, min_items=2, val_fraction=0.1, seed=0, test_fraction=0.1)
    two = data.prepare_training_data(path, min_items=2, val_fraction=0.1, seed=0)
    assert (len(two.train), len(two.validation), two.test_cases) == (1, 1, None)
