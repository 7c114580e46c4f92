"""train_model.py end to end on planted stores, on the CPU, with a tiny model."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, run_script
from matplotlib.image import imread
from planted import make_store

from bert4rec import (
    checkpoint,
    commands,
    data,
    db,
    devices,
    evaluate,
    metrics,
    plots,
    tuning,
    worlds,
)
from bert4rec import train as training
from bert4rec.config import TrainConfig
from bert4rec.model import BERT4Rec, ModelConfig

TINY = {
    "hidden": 64,
    "heads": 2,
    "layers": 1,
    "max_seq_len": 20,
    "batch_size": 8,
    "lr": 2e-3,
    "val_fraction": 0.2,
    "threads": 1,  # tiny matrices: one thread beats two fighting over a busy CPU
}
EPOCHS = 24
CHECKPOINT_EVERY = 12
PER_EPOCH_SERIES = (
    "train_losses",
    "val_losses",
    "train_sequences_per_second",
    "epoch_seconds",
    "learning_rates",
)
# The figures a resumed run must repeat exactly (timings differ, of course).
REPRODUCIBLE = (
    "train_losses",
    "val_losses",
    "train_accuracies",
    "val_accuracies",
    "val_ranking",
    "learning_rates",
    "best_epoch",
    "best_val_loss",
)


def reproducible(record: dict) -> dict[str, float]:
    """The REPRODUCIBLE figures of a TrainingHistory dict or metrics file, flattened."""
    flat = {}
    for name in REPRODUCIBLE:
        value = record[name]
        if isinstance(value, dict):
            for key, series in value.items():
                flat.update({f"{name}[{key}][{i}]": v for i, v in enumerate(series)})
        elif isinstance(value, list):
            flat.update({f"{name}[{i}]": v for i, v in enumerate(value)})
        else:
            flat[name] = value
    return flat


def flags(settings: dict) -> list[str]:
    """Command-line flags for settings; a bool is --name or --no-name."""
    out = []
    for key, value in settings.items():
        name = key.replace("_", "-")
        if isinstance(value, bool):
            out.append(f"--{name}" if value else f"--no-{name}")
        else:
            out += [f"--{name}", str(value)]
    return out


@pytest.fixture(scope="module")
def planted_db(tmp_path_factory) -> Path:
    # 214 users: 43 validation, 11 test, and 160 trained on (as many as before test users)
    return make_store(tmp_path_factory.mktemp("store") / "bert.db", users=214)


@pytest.fixture(scope="module")
def reference(planted_db, tmp_path_factory):
    """One uninterrupted run through the CLI; several tests read its outputs."""
    out = tmp_path_factory.mktemp("reference")
    args = flags({**TINY, "epochs": EPOCHS, "checkpoint_every": CHECKPOINT_EVERY})
    result = run_script("train_model.py", "--db", str(planted_db), "--output", str(out), *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def read_metrics(out: Path) -> dict:
    return json.loads((out / "plots" / "training_metrics.json").read_text(encoding="utf-8"))


def test_every_output_exists_and_is_valid(reference):
    out, _ = reference
    expected = [
        "models/best_model.pth",
        "models/final_model.pth",
        "models/item_mappings.pkl",
        "models/item_mappings.json",
        "models/training_config.json",
        *(f"plots/{name}" for name in plots.PLOT_FILES),
        "plots/training_metrics.json",
        f"checkpoints/checkpoint_epoch_{CHECKPOINT_EVERY}.pth",
        f"checkpoints/checkpoint_epoch_{EPOCHS}.pth",
        "logs/training.log",
    ]
    for name in expected:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    for name in plots.PLOT_FILES:
        image = imread(out / "plots" / name)  # decodes the PNG
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200

    record = read_metrics(out)
    assert record["epochs"] == list(range(1, EPOCHS + 1))
    for name in PER_EPOCH_SERIES:
        assert len(record[name]) == EPOCHS, name
    for name in ("train_accuracies", "val_accuracies"):
        assert sorted(record[name], key=int) == ["1", "5", "10", "20"]
        assert all(len(v) == EPOCHS for v in record[name].values())
    assert set(record["val_ranking"]) == set(metrics.RANKING_METRICS)
    assert all(len(v) == EPOCHS for v in record["val_ranking"].values())
    assert set(record["popularity_baseline"]) == set(metrics.RANKING_METRICS)
    assert all(v > 0 for v in record["train_sequences_per_second"])
    assert record["data"]["validation_users"] == 43 and "full ranking" in record["ranking_protocol"]

    mapping_json = json.loads((out / "models/item_mappings.json").read_text(encoding="utf-8"))
    with open(out / "models/item_mappings.pkl", "rb") as handle:
        mapping_pkl = pickle.load(handle)
    assert data.ItemMapping.from_dict(mapping_json) == data.ItemMapping.from_dict(mapping_pkl)
    assert mapping_pkl["index_to_anime"][0] is None and mapping_pkl["vocab_size"] == 63

    saved_config = json.loads((out / "models/training_config.json").read_text(encoding="utf-8"))
    assert saved_config["hidden"] == 64 and saved_config["epochs"] == EPOCHS
    # Every setting, and the world the data came from (the planted store records none).
    assert set(saved_config) == {*asdict(TrainConfig()), worlds.SETTINGS_FIELD}
    assert saved_config[worlds.SETTINGS_FIELD] is None

    best = checkpoint.load_model(out / "models/best_model.pth")
    assert best.payload["epoch"] == record["best_epoch"]
    assert best.mapping == data.ItemMapping.from_dict(mapping_json)
    final = checkpoint.load(out / "models/final_model.pth", kind="model")
    assert final["epoch"] == EPOCHS


def test_console_and_log_follow_the_spec(reference):
    out, result = reference
    lines = result.stdout.splitlines()
    start = lines.index("Epoch 1/24")
    assert lines[start + 1] == "-" * 40
    block = lines[start + 2 : start + 20]
    for expected in (
        "  Train loss: ",
        "  Train Top-1 acc: ",
        "  Train Top-5 acc: ",
        "  Train Top-10 acc: ",
        "  Train Top-20 acc: ",
        "  Train speed: ",
        "  Val loss: ",
        "  Val Top-1 acc: ",
        "  Val Top-20 acc: ",
        "  Val next-title ranking",
        "  New best model!",  # the first epoch is always the best so far
    ):
        assert any(line.startswith(expected) for line in block), expected
    assert "Training: 100%|##########|" in result.stderr
    assert "Validation: 100%|##########|" in result.stderr
    log = (out / "logs/training.log").read_text(encoding="utf-8")
    assert f"Epoch {EPOCHS}/{EPOCHS}" in log and "Train speed:" in log and "Val loss:" in log


def test_planted_pattern_is_learned_far_above_popularity(reference):
    record = read_metrics(reference[0])
    model_hr = record["val_ranking"]["HR@10"][-1]
    baseline_hr = record["popularity_baseline"]["HR@10"]
    assert model_hr >= 0.8, record["val_ranking"]["HR@10"]
    assert model_hr >= baseline_hr + 0.4
    assert record["val_ranking"]["NDCG@10"][-1] > 2 * record["popularity_baseline"]["NDCG@10"]
    assert record["val_losses"][-1] < record["val_losses"][0]


def test_planted_order_is_learned_beyond_the_classic_baselines(reference):
    """ItemKNN sees which titles go together, not in which order: after part k of a chain it
    cannot tell part k + 1 from k + 2; the model can. (EASE reads some order from how often
    prefixes occur, and EASE-recent reads it from the newest titles, so this small run is not
    asked to beat them alone: what recommendations use, chosen among them all, is.)"""
    record = read_metrics(reference[0])
    baselines = record["baselines"]
    assert set(baselines) == {"popularity", "ItemKNN", "EASE", "EASE-recent"}
    assert baselines["EASE"]["lambda"] in (10, 50, 100, 200, 500, 1000)
    best = record["best_epoch"] - 1
    blend = record["blend"]
    for metric in ("NDCG@10", "MRR"):
        for name in ("popularity", "ItemKNN"):
            assert record["val_ranking"][metric][best] > baselines[name]["validation"][metric]
    # What recommendations use was chosen on validation among the model, EASE, EASE-recent
    # and mixes: it ranks validation at least as well as every baseline, EASE-recent included.
    for metric in ("HR@10", "NDCG@10", "MRR"):
        best_baseline = max(b["validation"][metric] for b in baselines.values())
        assert blend["validation"][metric] >= best_baseline - 1e-9, (metric, blend)
    assert 0 <= blend["ease_weight"] <= 1 and blend["part"] in (None, "EASE", "EASE-recent")
    assert set(blend["validation_NDCG@10_by_share"]) == {"EASE", "EASE-recent"}
    if blend["part"] == "EASE-recent":
        assert blend["decay"] == baselines["EASE-recent"]["decay"]
    # A mix is used only when it leads the best one alone by --blend-min-lead standard errors.
    mix = blend.get("best_mix")
    if mix is not None:
        used = (mix["part"], mix["ease_weight"]) if mix["kept"] else None
        if used is None:
            used = (None, 0.0) if mix["alone"] == "model" else (mix["alone"], 1.0)
        assert (blend["part"], blend["ease_weight"]) == used
        assert mix["min_lead"] == 2.0
        assert mix["kept"] == (mix["standard_errors"] is not None and mix["standard_errors"] >= 2)
    # and says how far its lead over EASE alone is from chance
    lead = blend["lead_over_ease"]["validation"]["NDCG@10"]
    ease = baselines["EASE"]["validation"]["NDCG@10"]
    assert lead["lead"] == pytest.approx(blend["validation"]["NDCG@10"] - ease)
    assert lead["standard_error"] >= 0
    log = (reference[0] / "logs/training.log").read_text(encoding="utf-8")
    assert "Against EASE alone on the same targets: validation NDCG@10 " in log
    assert "Recommendations use " in log


def test_trained_model_never_ranks_padding_or_tokens_and_follows_chains(reference, planted_db):
    loaded = checkpoint.load_model(reference[0] / "models/best_model.pth")
    mapping, model = loaded.mapping, loaded.model
    followed = 0
    for chain in range(8):
        # A new user (never in training) who watched parts 0, 1, 2 of a chain: part 3 is next.
        history = data.encode_history([100 + chain * 6 + p for p in range(3)], mapping)
        inputs = data.next_item_inputs([history.items], mapping.mask_index, max_seq_len=20)
        with torch.no_grad():
            logits = model.next_item_logits(inputs)[0]
        ranked = logits.topk(mapping.num_items).indices
        assert ((ranked >= 1) & (ranked <= mapping.num_items)).all()
        top = [mapping.anime_id(int(i)) for i in ranked if int(i) not in set(history.items)]
        followed += 100 + chain * 6 + 3 in top[:5]
    # One small run: most chains, not every one (by chance: about 1 in 10 per chain).
    assert followed >= 6


def test_resume_repeats_an_uninterrupted_run(reference, tmp_path):
    out, _ = reference
    resumed_out = tmp_path / "resumed"
    ckpt = out / f"checkpoints/checkpoint_epoch_{CHECKPOINT_EVERY}.pth"
    result = run_script("train_model.py", "--resume", str(ckpt), "--output", str(resumed_out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Epoch {CHECKPOINT_EVERY + 1}/{EPOCHS}" in result.stdout
    assert "Epoch 1/" not in result.stdout
    uninterrupted, resumed = read_metrics(out), read_metrics(resumed_out)
    assert reproducible(resumed) == pytest.approx(reproducible(uninterrupted), abs=1e-6)


def tiny_config(db_path: Path, out: Path, **overrides) -> TrainConfig:
    return replace(TrainConfig(), db=str(db_path), output=str(out), **{**TINY, **overrides})


def test_exclude_seen_changes_what_the_step_minimises_not_what_is_reported():
    torch.manual_seed(0)
    network = ModelConfig(
        num_items=30, max_seq_len=5, hidden=16, layers=1, heads=2, ff_dim=24, dropout=0.0
    )
    model = BERT4Rec(network)
    inputs = torch.tensor([[0, 0, 3, 31, 5], [1, 31, 2, 31, 31]])  # 31 is MASK
    labels = torch.tensor([[0, 0, 0, 4, 0], [0, 7, 0, 9, 10]])
    stepped, reported = {}, {}
    for exclude_seen in (False, True):
        result = training.run_epoch(
            model,
            [(inputs, labels)],
            torch.device("cpu"),
            None,
            description="Training",
            step=lambda loss, key=exclude_seen: stepped.update({key: loss.item()}),
            exclude_seen=exclude_seen,
        )
        reported[exclude_seen] = result.loss
    assert reported[True] == reported[False] == pytest.approx(stepped[False])
    # the hidden titles compete with fewer titles, so the minimised loss is lower
    assert stepped[True] < stepped[False] - 1e-4


def test_ctrl_c_saves_the_last_finished_epoch_and_resumes_exactly(
    planted_db, tmp_path, monkeypatch
):
    config = tiny_config(planted_db, tmp_path / "a", epochs=4, checkpoint_every=0)
    uninterrupted = training.train(replace(config, output=str(tmp_path / "b")))

    real_run_epoch = training.run_epoch
    calls = {"n": 0}

    def interrupt_in_epoch_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # train and validation of epochs 1 and 2, then epoch 3's training
            raise KeyboardInterrupt
        return real_run_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "run_epoch", interrupt_in_epoch_3)
    with pytest.raises(training.TrainingInterrupted, match="Resume with") as caught:
        training.train(config)
    saved = caught.value.checkpoint_path
    assert saved == tmp_path / "a/checkpoints/checkpoint_epoch_2.pth" and saved.is_file()
    monkeypatch.setattr(training, "run_epoch", real_run_epoch)

    resumed = training.train(replace(config, resume=str(saved)))
    assert reproducible(resumed.to_dict()) == pytest.approx(
        reproducible(uninterrupted.to_dict()), abs=1e-6
    )


def test_resume_auto_carries_on_the_same_training_else_says_why_it_starts_anew(
    cli, tmp_path, monkeypatch, capsys
):
    """What 3_train_model and run_all do: run again after an interruption, training carries
    on; run again once finished, nothing is trained; change a setting, it starts anew, saying
    why. The store's world goes into training_config.json and the model files."""
    store = make_store(tmp_path / "bert.db", users=120)
    conn = db.connect(store)
    worlds.claim_store(conn, worlds.SIMULATOR, str(store))
    conn.close()
    config = tiny_config(store, tmp_path / "out", epochs=3, checkpoint_every=0, resume="auto")
    uninterrupted = training.train(replace(config, output=str(tmp_path / "whole")))
    assert "Starting a new run (--resume auto): no checkpoint in" in capsys.readouterr().out

    real_run_epoch = training.run_epoch
    calls = {"n": 0}

    def interrupt_in_epoch_2(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # train and validation of epoch 1, then epoch 2's training
            raise KeyboardInterrupt
        return real_run_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "run_epoch", interrupt_in_epoch_2)
    with pytest.raises(training.TrainingInterrupted):
        training.train(config)
    monkeypatch.setattr(training, "run_epoch", real_run_epoch)
    capsys.readouterr()

    resumed = training.train(config)  # the same command again
    said = capsys.readouterr().out
    saved = tmp_path / "out/checkpoints/checkpoint_epoch_1.pth"
    assert f"Carrying on from {saved}: the same settings and data" in said, said
    assert "Epoch 2/3" in said and "Epoch 1/3" not in said
    assert reproducible(resumed.to_dict()) == pytest.approx(
        reproducible(uninterrupted.to_dict()), abs=1e-6
    )
    settings = json.loads((tmp_path / "out/models/training_config.json").read_text())
    assert settings["world"] == worlds.SIMULATOR and settings["resume"] == str(saved)
    best = checkpoint.load(tmp_path / "out/models/best_model.pth")
    assert best["train_config"]["world"] == worlds.SIMULATOR

    with pytest.raises(training.NothingToTrain, match="holds this very training"):
        training.train(config)  # finished: the same command again trains nothing
    capsys.readouterr()
    argv = ["--db", str(store), "--output", str(tmp_path / "out"), "--resume", "auto"]
    assert cli([*argv, *flags({**TINY, "epochs": 3, "checkpoint_every": 0})]) == 0
    assert "Nothing to train: " in capsys.readouterr().out

    changed = replace(config, hidden=32, epochs=1)
    training.train(changed)
    said = capsys.readouterr().out
    assert (
        f"Starting a new run (--resume auto): {saved} was trained with other settings: "
        "--hidden 64 (now 32)" in said
    ), said
    assert "Epoch 1/1" in said


@pytest.mark.skipif(os.name == "nt", reason="POSIX signal")
def test_sigint_exits_cleanly_with_a_checkpoint(planted_db, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8"}
    out = tmp_path / "out"
    args = flags({**TINY, "epochs": 1000, "checkpoint_every": 0})
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "train_model.py"),
            "--db",
            str(planted_db),
            "--output",
            str(out),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    for line in proc.stdout:
        if line.startswith("Epoch 3/"):
            proc.send_signal(signal.SIGINT)
            break
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert f"Resume with: {commands.python('train_model.py', '--resume')}" in stdout
    saved = sorted(out.glob("checkpoints/checkpoint_epoch_*.pth"))
    assert len(saved) == 1 and checkpoint.load(saved[0], kind="training")["epoch"] >= 2


# --- clear errors --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("train_model_cli", ROOT / "train_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_missing_database_is_one_clear_line(tmp_path):
    result = run_script(
        "train_model.py", "--db", str(tmp_path / "none.db"), "--output", str(tmp_path / "out")
    )
    assert result.returncode == 1
    assert (
        result.stderr.startswith("error: database not found") and "Traceback" not in result.stderr
    )


def test_nan_loss_stops_with_advice(planted_db, tmp_path):
    args = flags({**TINY, "epochs": 3, "lr": 1e30, "warmup": 0, "grad_clip": 0})
    result = run_script("train_model.py", "--db", str(planted_db), "--output", str(tmp_path), *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "loss became nan" in result.stderr and "Lower --lr" in result.stderr


def _store_with(tmp_path, users: int) -> Path:
    path = tmp_path / "small.db"
    conn = db.connect(path)
    db.upsert_anime(conn, [db.Anime(i, popularity_rank=i) for i in range(1, 11)])
    for u in range(users):
        db.store_user_list(
            conn, f"u{u}", u + 1, [db.ListEntry(i, "COMPLETED", created_at=i) for i in range(1, 8)]
        )
    conn.close()
    return path


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda p: db.connect(p / "empty.db").close() or p / "empty.db", "no anime catalogue"),
        (lambda p: _store_with(p, 0), "no users with a loaded anime list"),
        (lambda p: _store_with(p, 1), "too few users to split"),
    ],
)
def test_unusable_stores_are_one_clear_line(cli, capsys, tmp_path, prepare, message):
    assert cli(["--db", str(prepare(tmp_path)), "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_bad_checkpoints_are_refused(cli, capsys, reference, planted_db, tmp_path):
    out, _ = reference
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint" * 50)
    truncated = tmp_path / "truncated.pth"
    ckpt = out / f"checkpoints/checkpoint_epoch_{CHECKPOINT_EVERY}.pth"
    truncated.write_bytes(ckpt.read_bytes()[:5000])
    other_db = make_store(tmp_path / "other.db", users=60, seed=7)
    cases = [
        (["--resume", str(garbage)], "damaged"),
        (["--resume", str(truncated)], "damaged"),
        (["--resume", str(tmp_path / "missing.pth")], "not found"),
        (["--resume", str(out / "models/best_model.pth")], "not a training file"),
        (["--resume", str(ckpt), "--hidden", "32"], "other settings: --hidden 64 (now 32)"),
        (["--resume", str(ckpt), "--db", str(other_db)], "trained on other data"),
        (["--resume", str(out / f"checkpoints/checkpoint_epoch_{EPOCHS}.pth")], "larger --epochs"),
    ]
    for argv, message in cases:
        assert cli([*argv, "--output", str(tmp_path / "out")]) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (argv, err)


def test_impossible_settings_and_missing_gpu_are_refused(cli, capsys, planted_db, tmp_path):
    assert cli(["--hidden", "30", "--heads", "4"]) == 1
    assert "divisible" in capsys.readouterr().err
    assert cli(["--mask-prob", "0"]) == 1
    assert "--mask-prob" in capsys.readouterr().err
    assert cli(["--ema-decay", "1"]) == 1
    assert "--ema-decay" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli(["--db", str(planted_db), "--output", str(tmp_path), "--gpu"]) == 1
        assert "no usable CUDA GPU" in capsys.readouterr().err


def test_help_lists_every_setting_with_its_default():
    result = run_script("train_model.py", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for name in asdict(TrainConfig()):
        flag = f"--{name.replace('_', '-')}"
        assert flag in text, flag
    for fragment in (
        "--epochs N",
        "(default: 200)",
        "(default: 64)",
        "(default: 0.15)",
        "(default: 256)",
        "--gpu",
        "--resume PATH",
        "(default: 10)",
    ):
        assert fragment in text, fragment


def test_early_stopping(planted_db, tmp_path):
    history = training.train(
        tiny_config(
            planted_db, tmp_path, epochs=30, patience=1, patience_steps=0, lr=1e-1, warmup=0
        )
    )
    assert history.epochs_done < 30 and history.epochs_since_best() == 1
    assert (tmp_path / "models/final_model.pth").is_file()
    assert len(read_metrics(tmp_path)["val_losses"]) == history.epochs_done


def test_early_stopping_waits_enough_steps_where_epochs_are_short():
    """50 users are one step an epoch: 20 epochs are 20 steps, too few to leave the start."""
    config = TrainConfig(patience=20, patience_steps=500)
    assert training.patience_epochs(config, steps_per_epoch=1) == 500
    assert training.patience_epochs(config, steps_per_epoch=4) == 125
    assert training.patience_epochs(config, steps_per_epoch=32) == 20  # 640 steps: --patience
    assert training.patience_epochs(replace(config, patience_steps=0), 1) == 20


def test_sequences_are_built_from_the_store(planted_db):
    prepared = data.prepare_training_data(planted_db, min_items=5, val_fraction=0.2, seed=42)
    mapping = prepared.mapping
    for user in prepared.train[:50]:
        ids = [mapping.anime_id(int(i)) for i in user.items]
        chain_parts = [(a - 100) // 6 for a in ids if a < 1000]
        # each chain is watched as one contiguous block, in order of its parts
        for chain in set(chain_parts):
            parts = [(a - 100) % 6 for a in ids if a < 1000 and (a - 100) // 6 == chain]
            assert parts == list(range(len(parts)))
        assert np.all(user.items >= 1) and np.all(user.items <= mapping.num_items)


def test_worker_processes_change_nothing(planted_db, tmp_path):
    """Batches depend on (seed, epoch, batch) only, so DataLoader workers give the same run."""
    runs = [
        training.train(tiny_config(planted_db, tmp_path / str(w), epochs=2, workers=w))
        for w in (0, 2)
    ]
    assert runs[0].train_losses == runs[1].train_losses
    assert runs[0].val_ranking == runs[1].val_ranking


def test_leave_one_out_validates_each_epoch_and_tests_the_best_model(planted_db, tmp_path):
    config = tiny_config(
        planted_db, tmp_path, epochs=20, split="leave-one-out", length_buckets=True
    )
    history = training.train(config)
    record = read_metrics(tmp_path)
    assert record["data"]["split"] == "leave-one-out" and record["data"]["test_users"] == 214
    assert record["data"]["train_users"] == record["data"]["validation_users"] == 214
    assert record["ranking_protocol"].startswith("leave-one-out")
    assert len(history.val_ranking["NDCG@10"]) == 20 and len(history.val_losses) == 20
    assert history.test_epoch == history.best_epoch
    assert set(history.test_ranking) == set(metrics.RANKING_METRICS)
    assert record["test_ranking"] == history.test_ranking
    # The planted chains are learned: the test targets rank far above popularity's.
    assert history.test_ranking["HR@10"] > history.test_popularity_baseline["HR@10"] + 0.2
    log = (tmp_path / "logs/training.log").read_text(encoding="utf-8")
    assert "Test (leave-one-out, 214 users, full ranking" in log


def test_weight_average_is_validated_saved_and_resumed(planted_db, tmp_path):
    config = tiny_config(
        planted_db,
        tmp_path / "a",
        epochs=4,
        checkpoint_every=2,
        ema_decay=0.9,
        split="leave-one-out",
    )
    uninterrupted = training.train(config)
    saved = checkpoint.load(tmp_path / "a/checkpoints/checkpoint_epoch_4.pth", kind="training")
    final = checkpoint.load(tmp_path / "a/models/final_model.pth", kind="model")
    # The model files hold the average, not the weights the optimiser stepped last.
    names = list(final["model_state"])
    assert all(torch.equal(final["model_state"][n], saved["model_state"][n]) for n in names)
    assert any(
        not torch.equal(saved["model_state"][n], saved["trained_model_state"][n]) for n in names
    )
    training_data = training.training_data_for(config)
    steps = 4 * len(training.make_datasets(config, training_data)[0])
    assert int(saved["averaged_state"]["n_averaged"]) == steps
    # What was validated is what was saved: the final model ranks as epoch 4 was recorded.
    model = checkpoint.load_model(tmp_path / "a/models/final_model.pth").model
    ranking = evaluate.evaluate(
        training_data.validation_cases,
        evaluate.model_scorer(model, torch.device("cpu")),
        training_data.mapping,
        config,
    ).ranking
    assert ranking["NDCG@10"] == pytest.approx(uninterrupted.val_ranking["NDCG@10"][-1])
    resumed = training.train(
        replace(
            config,
            output=str(tmp_path / "b"),
            resume=str(tmp_path / "a/checkpoints/checkpoint_epoch_2.pth"),
        )
    )
    assert reproducible(resumed.to_dict()) == pytest.approx(
        reproducible(uninterrupted.to_dict()), abs=1e-6
    )


def test_cpu_bf16_covers_the_training_steps_only():
    cpu = torch.device("cpu")
    plain = replace(TrainConfig(), cpu_bf16=False)  # on by default
    assert devices.training_autocast_dtype(plain, cpu) is None
    bf16 = replace(plain, cpu_bf16=True)
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert devices.training_autocast_dtype(bf16, cpu) == (torch.bfloat16 if native else None)
    assert devices.autocast_dtype(bf16, cpu) is None  # evaluation stays float32 on the CPU


def test_compile_wraps_only_what_the_training_steps_call():
    shape = {"max_seq_len": 8, "hidden": 16, "layers": 1, "heads": 2, "ff_dim": 32}
    model = BERT4Rec(ModelConfig(num_items=10, dropout=0.0, **shape))
    cpu = torch.device("cpu")
    assert training.training_module(model, cpu, TrainConfig()) is model
    compiled = training.training_module(model, cpu, replace(TrainConfig(), compile=True))
    assert compiled is not model and compiled._orig_mod is model  # same weights, saved as is


def test_onednn_cache_is_bounded_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    tuning.bound_onednn_cache()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "500")
    tuning.bound_onednn_cache()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "500"


def test_train_leaves_the_process_alone_and_the_script_tunes_it(monkeypatch, planted_db, tmp_path):
    """train() from a notebook must not change the caller's threads or environment; the
    script (train_model.py) applies --threads and the CPU settings through tuning.py."""
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    threads = torch.get_num_threads()
    config = TrainConfig(
        db=str(planted_db),
        output=str(tmp_path),
        epochs=1,
        threads=1,
        hidden=16,
        heads=2,
        layers=1,
        max_seq_len=8,
        checkpoint_every=0,
    )
    training.train(config)
    assert torch.get_num_threads() == threads
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ
    try:
        applied = tuning.tune_for_training(config, keep_freed=False)
        assert torch.get_num_threads() == 1 and "1 threads" in applied
        assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"
    finally:
        torch.set_num_threads(threads)


# --- the user split's test users ---------------------------------------------------------------


def test_the_user_split_reports_its_test_users(reference):
    out, result = reference
    record = read_metrics(out)
    assert record["data"]["split"] == "user"
    assert (record["data"]["validation_users"], record["data"]["test_users"]) == (43, 11)
    assert "test users" in record["ranking_protocol"]
    assert set(record["test_ranking"]) == set(metrics.RANKING_METRICS)
    assert record["test_epoch"] == record["best_epoch"]
    assert record["test_popularity_baseline"] == record["baselines"]["popularity"]["test"]
    for name in ("popularity", "ItemKNN", "EASE", "EASE-recent"):
        assert set(record["baselines"][name]["test"]) == set(metrics.RANKING_METRICS), name
    assert set(record["blend"]["test"]) == set(metrics.RANKING_METRICS)
    assert "test" in record["blend"]["lead_over_ease"]
    assert "Test (11 held-out test users, never chosen on, full ranking" in result.stdout
    log = (out / "logs/training.log").read_text(encoding="utf-8")
    assert "43 validation (every choice is made on them) and 11 test users" in log


def _poison_test_users(source: Path, target: Path, config: TrainConfig) -> list[int]:
    """A copy of the store in which every test user watched their titles in reverse order:
    other targets, other histories. Returns the test users' ids."""
    target.write_bytes(source.read_bytes())
    split = training.training_data_for(config)
    conn = db.connect(target)
    for user in split.test:
        ids = [split.mapping.anime_id(int(i)) for i in user.items[::-1]]
        entries = [
            db.ListEntry(a, "COMPLETED", completed_at=f"2020-01-{day + 1:02d}")
            for day, a in enumerate(ids)
        ]
        db.store_user_list(conn, user.user_name, user.user_id, entries)
    conn.close()
    return [u.user_id for u in split.test]


def _without_test(entry: dict) -> dict:
    """A report entry without what is measured on test (and timings)."""
    kept = {k: v for k, v in entry.items() if k not in ("test", "seconds")}
    if "lead_over_ease" in kept:
        kept["lead_over_ease"] = {k: v for k, v in kept["lead_over_ease"].items() if k != "test"}
    return kept


def test_no_choice_reads_the_test_users(planted_db, tmp_path):
    """Poisoned test users (their lists reversed) change the test figures and nothing else:
    the epochs, the best one, EASE's lambda, EASE-recent's setting, the blend's share and the
    saved model are the same, so none of them was chosen on the test users."""
    clean = tiny_config(planted_db, tmp_path / "clean", epochs=3, checkpoint_every=0)
    poisoned_db = tmp_path / "poisoned.db"
    test_ids = _poison_test_users(planted_db, poisoned_db, clean)
    poisoned = replace(clean, db=str(poisoned_db), output=str(tmp_path / "poisoned"))
    assert [u.user_id for u in training.training_data_for(poisoned).test] == test_ids
    runs = [training.train(c) for c in (clean, poisoned)]
    a, b = (r.to_dict() for r in runs)
    assert reproducible(a) == reproducible(b)
    assert a["best_score"] == b["best_score"] and a["test_epoch"] == b["test_epoch"]
    for name in a["baselines"]:
        assert _without_test(a["baselines"][name]) == _without_test(b["baselines"][name]), name
    assert _without_test(a["blend"]) == _without_test(b["blend"])
    # the poison reached the test figures
    assert a["test_ranking"] != b["test_ranking"]
    assert a["baselines"]["EASE"]["test"] != b["baselines"]["EASE"]["test"]
    best = [
        checkpoint.load(tmp_path / run / "models/best_model.pth", kind="model")["model_state"]
        for run in ("clean", "poisoned")
    ]
    assert all(torch.equal(best[0][n], best[1][n]) for n in best[0])


def test_a_run_saved_before_test_users_resumes_as_it_trained(planted_db, tmp_path):
    """A checkpoint whose settings lack --test-fraction trained every held-out user as
    validation: it resumes so (same users, same fingerprint) and reports no test."""
    config = tiny_config(
        planted_db,
        tmp_path / "a",
        epochs=2,
        checkpoint_every=1,
        test_fraction=0,
        baselines=False,  # not what is checked here, and they take time
        distill=0.0,
    )
    uninterrupted = training.train(config)
    assert not uninterrupted.test_ranking
    path = tmp_path / "a/checkpoints/checkpoint_epoch_1.pth"
    older = checkpoint.load(path, kind="training")
    del older["train_config"]["test_fraction"]
    checkpoint.save(older, path)
    resumed_config = training.config_for_resume(str(path), {"output": str(tmp_path / "b")})
    assert resumed_config.test_fraction == 0.0
    resumed = training.train(resumed_config)
    assert reproducible(resumed.to_dict()) == pytest.approx(
        reproducible(uninterrupted.to_dict()), abs=1e-6
    )
    assert not resumed.test_ranking and "test_users" not in read_metrics(tmp_path / "b")["data"]


def test_few_users_are_told_why_training_keeps_less_than_nine_in_ten(tmp_path):
    config = tiny_config(_store_with(tmp_path, 50), tmp_path / "out", val_fraction=0.05)
    summary = training.training_data_for(config).summary()
    assert (summary["validation_users"], summary["test_users"]) == (5, 5)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    level = training.log.level
    training.log.addHandler(handler)
    training.log.setLevel(logging.INFO)
    try:
        training.log_data_summary(config, summary)
        many = replace(config, db=str(make_store(tmp_path / "many.db", users=200)))
        training.log_data_summary(many, training.training_data_for(many).summary())
    finally:
        training.log.removeHandler(handler)
        training.log.setLevel(level)
    notes = [line for line in lines if line.startswith("Note:")]
    assert notes == [
        "Note: only 50 users, so validation and test get at least 5 users each, more than "
        "--val-fraction 0.05 and --test-fraction 0.05 of them; 40 users (80%) are trained on"
    ]
