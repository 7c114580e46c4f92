from __future__ import annotations

import argparse
from dataclasses import asdict, fields, replace

import pytest

from bert4rec import config
from bert4rec.config import TrainConfig


def test_the_original_designs_defaults():
    c = TrainConfig()
    assert (c.epochs, c.batch_size, c.max_seq_len, c.mask_prob) == (200, 64, 200, 0.15)
    assert (c.layers, c.heads, c.hidden, c.resolved_ff_dim) == (2, 4, 256, 1024)
    assert (c.checkpoint_every, c.db) == (10, "data/bert.db")
    # the original design's 9:1 user split: the held-out tenth halved into validation and test users
    assert (c.val_fraction, c.test_fraction) == (0.05, 0.05)


def test_every_setting_has_help_and_appears_in_the_flag_table():
    table = config.flags_markdown()
    for f in fields(TrainConfig):
        assert f.metadata["help"], f.name
        assert f"| `--{f.name.replace('_', '-')}` |" in table
    assert "| `--epochs` | 200 |" in table and "| `--gpu` | off |" in table


def test_only_typed_flags_are_given():
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    args = parser.parse_args(["--epochs", "3", "--no-amp", "--gpu", "--ff-dim", "8"])
    assert config.given_settings(args) == {"epochs": 3, "amp": False, "gpu": True, "ff_dim": 8}
    assert config.given_settings(parser.parse_args([])) == {}


def test_saved_settings_round_trip_and_tolerate_other_versions():
    c = replace(TrainConfig(), hidden=64, resume="x.pth")
    assert config.from_dict(asdict(c)) == c
    assert config.from_dict({"hidden": 32, "from_a_newer_version": 1}).hidden == 32
    # a run saved before --exclude-seen existed trained without it, and resumes so
    saved = {k: v for k, v in asdict(c).items() if k != "exclude_seen"}
    assert config.from_dict(saved).exclude_seen and not config.from_saved(saved).exclude_seen
    assert config.from_saved(asdict(c)) == c


def test_what_may_change_on_resume():
    fixed = config.resume_fixed_fields()
    assert {"hidden", "lr", "seed", "batch_size", "mask_prob", "max_seq_len"} <= set(fixed)
    assert not {"epochs", "output", "db", "device", "resume", "patience"} & set(fixed)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"hidden": 30}, "divisible"),
        ({"mask_prob": 0.0}, "--mask-prob"),
        ({"val_fraction": 1.0}, "--val-fraction"),
        ({"min_items": 1}, "--min-items"),
        ({"dropout": 1.5}, "--dropout"),
        ({"workers": -1}, "--workers"),
    ],
)
def test_impossible_settings_name_their_flag(changes, message):
    with pytest.raises(ValueError, match=message):
        replace(TrainConfig(), **changes).validate()


def test_the_ml1m_preset_is_the_papers_network_and_typed_flags_win():
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    given = config.given_settings(parser.parse_args(["--preset", "ml1m", "--epochs", "3"]))
    c = config.from_dict(given)
    c.validate()
    paper = (c.hidden, c.resolved_ff_dim, c.layers, c.heads, c.max_seq_len, c.mask_prob)
    assert paper == (64, 256, 2, 2, 200, 0.2)
    assert c.dropout == TrainConfig().dropout  # the defaults' dropout, not the paper's 0.2
    assert c.split == "leave-one-out" and c.db == "data/ml1m.db" and c.epochs == 3
    # the defaults' loss over unseen titles and co-occurrence start (docs/BENCHMARKS.md)
    assert c.exclude_seen and c.cooccurrence_init
    # an hour and more of training: an interrupted run must carry on from a recent checkpoint
    assert c.checkpoint_every == TrainConfig().checkpoint_every > 0
    names = {f.name for f in fields(TrainConfig)}
    for name, values in config.PRESETS.items():
        assert set(values) <= names, name  # a preset is values of the same fields, nothing else
        assert config.describe_preset(name).startswith("--")


@pytest.mark.parametrize("name", sorted(config.PRESETS))
def test_a_preset_described_in_help_is_a_command_that_gives_the_preset(name):
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    described = config.describe_preset(name)
    typed = config.given_settings(parser.parse_args(described.split()))
    assert config.from_dict(typed) == config.from_dict(config.PRESETS[name])
    assert "True" not in described and "False" not in described


def test_split_choice_and_its_minimum():
    assert TrainConfig().split == "user"  # the original design's 9:1 user split stays the default
    with pytest.raises(ValueError, match="--min-items"):
        replace(TrainConfig(), split="leave-one-out", min_items=2).validate()
    with pytest.raises(ValueError, match="--split"):
        replace(TrainConfig(), split="random").validate()


def test_test_users_are_a_setting_older_runs_lack():
    saved = {k: v for k, v in asdict(TrainConfig()).items() if k != "test_fraction"}
    assert config.from_saved(saved).test_fraction == 0.0  # trained without test users
    assert config.from_dict(saved).test_fraction == TrainConfig().test_fraction
    assert "test_fraction" in config.resume_fixed_fields()  # it changes the training users
    replace(TrainConfig(), test_fraction=0.0).validate()
    for bad in (-0.1, 0.95, 1.0):
        with pytest.raises(ValueError, match="--test-fraction"):
            replace(TrainConfig(), test_fraction=bad).validate()
