"""Every training setting and its default, in one place.

`TrainConfig` is the single source of truth: `train_model.py --help` is generated from it,
`output/models/training_config.json` is `asdict(config)`, and `flags_markdown()` renders the table
docs/COMMANDS.md shows (docs/make_commands.py writes it). To add a setting, add one field with its
help text; nothing else needs to change.

Field metadata:
- help: the sentence `--help` shows (the default is appended automatically).
- type / choices / metavar: for argparse, where the default alone does not say.
- shown_default: how --help and docs/COMMANDS.md show a default that is not a plain value.
- on_resume: "free" for settings that may change when a run is resumed (how long to train,
  where to write, which device); every other setting must match the checkpoint, because it
  changes what the network is or what it learns from.
- missing_means: for a setting added after runs were saved, the value those runs trained with;
  a checkpoint whose settings lack it resumes with that value (from_saved), not the default.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from .packed_dropout import DROPOUT_MASKS
from .paths import DEFAULT_DB_PATH, DEFAULT_OUTPUT_DIR

DEVICES = ("auto", "cpu", "cuda", "mps")
SPLITS = ("user", "leave-one-out")  # see bert4rec/data.py
SELECTIONS = ("val-loss", "NDCG@10")  # see metrics.TrainingHistory.record_epoch
DISTILL_TEACHERS = ("auto", "EASE")  # see bert4rec/distill.py
LEAVE_ONE_OUT_MIN_ITEMS = 3  # a title to train on, a validation and a test target
# --resume's words besides a checkpoint's path (train.resolve_resume).
RESUME_AUTO = "auto"  # the furthest checkpoint of the same settings and data, if any
RESUME_NEW = "none"  # a new run, whatever the output folder holds
# The user split gives validation and test at least this many users each, or a tenth of the
# users when there are fewer than 50 (so training keeps at least 80% of them): on the ~50
# users of a first run their 5% shares would be 2 users, whose figures say nothing.
MIN_HELD_OUT_USERS = 5


def _setting(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class TrainConfig:
    # --- where the data comes from and where the results go
    db: str = _setting(
        DEFAULT_DB_PATH, "SQLite store built by the data stages", metavar="PATH", on_resume="free"
    )
    output: str = _setting(
        DEFAULT_OUTPUT_DIR,
        "folder for models/, plots/, checkpoints/ and logs/",
        metavar="DIR",
        on_resume="free",
    )
    # --- how long and on what
    epochs: int = _setting(200, "number of passes over the training users", on_resume="free")
    batch_size: int = _setting(
        64,
        "users (sequences) per training step, in all: under torchrun the processes share each "
        "batch, so steps per epoch and the learning-rate schedule stay the same",
    )
    device: str = _setting(
        "auto",
        "where to train: auto picks cuda, then mps, then cpu",
        choices=DEVICES,
        on_resume="free",
    )
    gpu: bool = _setting(
        False,
        "train on the CUDA GPU (same as --device cuda); stops if none is usable",
        on_resume="free",
    )
    amp: bool = _setting(
        True,
        "mixed precision on CUDA: bf16 on Ampere and newer GPUs, fp16 with loss scaling on "
        "Volta and Turing, off on older GPUs (slower there); no effect on cpu or mps",
        on_resume="free",
    )
    cpu_bf16: bool = _setting(
        True,
        "train in bfloat16 mixed precision on a CPU that computes it natively (AVX512-BF16 or "
        "AMX; float32 elsewhere); evaluation stays float32",
        on_resume="free",
    )
    workers: int = _setting(
        0,
        "DataLoader worker processes building batches (0 = in the training process, "
        "fastest on small CPUs: batches are built with a few array operations)",
        on_resume="free",
    )
    threads: int = _setting(
        0, "CPU threads PyTorch may use (0 = its default, one per core)", on_resume="free"
    )
    compile: bool = _setting(
        False,
        "compile the training steps with torch.compile (needs a C++ compiler on the CPU; the "
        "first batches are slow while it compiles); evaluation runs uncompiled",
        on_resume="free",
    )
    length_buckets: bool = _setting(
        True,
        "build each batch from sequences of similar length, so almost no time goes into "
        "padding (which sequences meet in a batch still changes every epoch)",
    )
    # --- the sequences
    random_windows: bool = _setting(
        False,
        "a history longer than --max-seq-len trains on a window of that many titles drawn anew "
        "each epoch, instead of always its newest ones, so all of it is learned from",
    )
    split: str = _setting(
        "user",
        "user: hold out users for validation (every choice: best epoch, the baselines' "
        "settings, the blend) and for test (reported, never chosen on), one user in 20 each by "
        "default, so training keeps the original design's 9 in 10; leave-one-out: every user's "
        "last title is the test target and the one before it the validation target, the rest is "
        "trained on (the published benchmarks' protocol)",
        choices=SPLITS,
    )
    max_seq_len: int = _setting(200, "most recent titles of each user the model sees")
    min_items: int = _setting(
        5,
        "users with fewer watched catalogue titles are left out (and counted); leave-one-out "
        "needs at least 3",
    )
    val_fraction: float = _setting(
        0.05,
        "share of users held out for validation, on which the best epoch, EASE's lambda and "
        "the blend's share are chosen (--split user; at least 5 users, or a tenth of the users "
        "when fewer than 50)",
    )
    test_fraction: float = _setting(
        0.05,
        "share of users held out for test, never trained or chosen on: the best model, the "
        "baselines and the blend are reported on them once training ends (--split user; at "
        "least 5 users, or a tenth of the users when fewer than 50; 0 = no test users)",
        missing_means=0.0,
    )
    mask_prob: float = _setting(
        0.15, "share of each training sequence masked (at least one title per sequence)"
    )
    masked_copies: int = _setting(
        1,
        "each epoch trains on this many copies of every training sequence, each masked anew "
        "(the original BERT4Rec's dupe factor): more optimiser steps per epoch for few users",
    )
    last_item_mask_prob: float = _setting(
        0.1,
        "share of sequences that mask only their last title instead, the next-title case "
        "recommendations use",
    )
    exclude_seen: bool = _setting(
        True,
        "training ranks each hidden title only against the titles its sequence does not show, "
        "as evaluation and recommendations do (a user's own titles are never candidates "
        "there), instead of against the whole catalogue; the reported loss stays the plain one",
        missing_means=False,
    )
    # --- the network
    hidden: int = _setting(256, "hidden size (item and position embeddings, attention)")
    layers: int = _setting(2, "Transformer encoder blocks")
    heads: int = _setting(4, "attention heads per block (must divide --hidden)")
    ff_dim: int | None = _setting(
        None, "feed-forward inner size", type=int, shown_default="4 x --hidden, as in BERT"
    )
    dropout: float = _setting(0.1, "dropout on embeddings, attention and feed-forward outputs")
    dropout_masks: str = _setting(
        "packed",
        "how dropout draws its masks: packed takes four 16-bit numbers from each 64-bit random "
        "draw when training on a CPU (about 1.7x faster steps there; GPUs keep torch's fused "
        "dropout), torch uses torch's dropout everywhere; the two draw different masks",
        choices=DROPOUT_MASKS,
    )
    popularity_init: bool = _setting(
        True,
        "start the output bias at each title's log count in the training data, so training "
        "starts from the popularity ranking instead of stalling near it",
    )
    cooccurrence_init: bool = _setting(
        True,
        "start the title embeddings from which titles the training users hold together (a "
        "truncated SVD of their pointwise mutual information), scaled to the usual starting "
        "size, instead of at random",
    )
    distill: float = _setting(
        0.5,
        "share of the training loss that learns an item-item teacher's ranking of the hidden "
        "titles (knowledge distillation from EASE or EASE-recent fitted on the other users, see "
        "--distill-teacher and bert4rec/distill.py; needs --baselines, costs 5 EASE fits at the "
        "start; 0 = off); the saved model is the network alone",
    )
    distill_teacher: str = _setting(
        "auto",
        "what --distill learns from: auto = the item-item model that ranks the validation "
        "targets best, EASE-recent at its chosen decay (each visible title weighs "
        "exp(-(distance - 1) / decay) by its distance to the masked title: ordered lists) or "
        "EASE when no decay wins (unordered lists); EASE = EASE, every visible title alike",
        choices=DISTILL_TEACHERS,
        missing_means="EASE",
    )
    distill_min_lead: float = _setting(
        2.0,
        "--distill is used only when its teacher ranks the validation targets above the "
        "popularity baseline by at least this many standard errors of the per-user NDCG@10 "
        "difference; otherwise training goes without it and the log says why (0 = always used)",
        missing_means=0.0,
    )
    distill_temperature: float = _setting(
        0.02, "softmax temperature of the teacher's scores when --distill is on (lower: sharper)"
    )
    # --- the optimiser
    lr: float = _setting(1e-3, "peak learning rate of AdamW")
    weight_decay: float = _setting(0.01, "AdamW weight decay (weight matrices only)")
    warmup: float = _setting(
        0.05, "share of all training steps spent warming the learning rate up from 0"
    )
    min_lr_ratio: float = _setting(
        0.1, "after warm-up the learning rate decays (cosine) to this share of --lr"
    )
    grad_clip: float = _setting(1.0, "clip the gradient norm to this (0 = off)")
    ema_decay: float = _setting(
        0.0,
        "keep an exponential moving average of the weights, updated every step with this decay "
        "(0.995 averages about the last 200 steps); validation, best_model.pth and "
        "final_model.pth then use the averaged weights (0 = off)",
    )
    seed: int = _setting(42, "seed for the user split, shuffling, masking and initialisation")
    # --- checkpoints and stopping
    checkpoint_every: int = _setting(
        10,
        "save output/checkpoints/checkpoint_epoch_N.pth every N epochs (0 = never)",
        on_resume="free",
    )
    select_by: str = _setting(
        "NDCG@10",
        "what makes an epoch the best one, kept as best_model.pth: the lowest validation loss, "
        "or the highest validation NDCG@10 of next-title ranking (what the benchmarks report)",
        choices=SELECTIONS,
    )
    patience: int = _setting(
        20,
        "stop when the --select-by figure has not improved for this many epochs, and for "
        "--patience-steps training steps "
        "(0 = off: train all --epochs; best_model.pth keeps the best epoch anyway)",
        on_resume="free",
    )
    patience_steps: int = _setting(
        500,
        "early stopping also waits this many training steps since the best epoch: with few "
        "users an epoch is a few steps, and 20 of them are too few for the network to get "
        "going (0 = --patience epochs alone)",
        on_resume="free",
    )
    baselines: bool = _setting(
        True,
        "at the start, fit ItemKNN, EASE and EASE-recent beside the popularity baseline (their "
        "settings chosen on validation) and rank the same "
        "validation (and test) targets with them; EASE inverts a titles x titles matrix, or a "
        "users x users one when there are fewer users (about 18 s for 5,000 users and 3,000 "
        "titles on 2 cores, 4 s for 500 users and 5,000 titles; skipped past 12,000 titles)",
        on_resume="free",
    )
    blend: bool = _setting(
        True,
        "after training, choose what recommendations score with on the validation targets: "
        "the best model alone, EASE or EASE-recent alone (item-item models fitted in seconds; "
        "EASE-recent weighs the newest titles most), or the model mixed with either at a "
        "share; saved in models/ease_blend.pth unless the model alone won",
    )
    blend_min_lead: float = _setting(
        2.0,
        "a mix of the model and EASE (or EASE-recent) is used only when its validation NDCG@10 "
        "leads the best of the model, EASE and EASE-recent alone by this many standard errors "
        "of the per-target difference (a few hundred targets give a lead of one by chance); "
        "otherwise that one alone is used (0 = the best on validation, however small its lead)",
        on_resume="free",
    )
    resume: str | None = _setting(
        None,
        "continue a run from a checkpoint file (output/checkpoints/checkpoint_epoch_N.pth), "
        f"whose settings are used unless given again; {RESUME_AUTO}: carry on from the "
        "furthest checkpoint in the output folder trained with the settings given (defaults "
        "included) on the same data, else start anew saying why, and train nothing when that "
        f"training already finished (3_train_model and run_all use it); {RESUME_NEW}: a new run",
        type=str,
        metavar="PATH",
        shown_default="none",
        on_resume="free",
    )

    @property
    def resolved_ff_dim(self) -> int:
        return self.ff_dim if self.ff_dim is not None else 4 * self.hidden

    def validate(self) -> None:
        """Raise ValueError naming the flag when a value cannot work."""
        positive = (
            "epochs",
            "batch_size",
            "max_seq_len",
            "hidden",
            "layers",
            "heads",
            "lr",
            "masked_copies",
            "distill_temperature",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"--{_flag(name)} must be positive (got {getattr(self, name)})")
        for name in (
            "workers",
            "threads",
            "checkpoint_every",
            "patience",
            "patience_steps",
            "weight_decay",
            "grad_clip",
            "blend_min_lead",
            "distill_min_lead",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"--{_flag(name)} cannot be negative (got {getattr(self, name)})")
        shares = ("last_item_mask_prob", "warmup", "min_lr_ratio", "dropout", "distill")
        for name in shares:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{_flag(name)} must be between 0 and 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("--ema-decay must be at least 0 and below 1")
        if not 0.0 < self.mask_prob <= 1.0:
            raise ValueError("--mask-prob must be above 0 and at most 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError("--val-fraction must be between 0 and 1 (exclusive)")
        if not 0.0 <= self.test_fraction < 1.0 - self.val_fraction:
            raise ValueError(
                "--test-fraction must be at least 0 and below 1 - --val-fraction (training "
                "needs users too)"
            )
        if self.min_items < 2:
            raise ValueError("--min-items must be at least 2 (one title to hide, one to show)")
        if self.max_seq_len < 2:
            raise ValueError("--max-seq-len must be at least 2")
        if self.hidden % self.heads:
            raise ValueError(f"--hidden {self.hidden} must be divisible by --heads {self.heads}")
        if self.distill and self.random_windows:
            raise ValueError(
                "--distill cannot be used with --random-windows: the teacher tells users apart "
                "by their newest title, which a random window may leave out"
            )
        if self.ff_dim is not None and self.ff_dim <= 0:
            raise ValueError("--ff-dim must be positive")
        if self.device not in DEVICES:
            raise ValueError(f"--device must be one of {', '.join(DEVICES)}")
        if self.distill_teacher not in DISTILL_TEACHERS:
            raise ValueError(f"--distill-teacher must be one of {', '.join(DISTILL_TEACHERS)}")
        if self.select_by not in SELECTIONS:
            raise ValueError(f"--select-by must be one of {', '.join(SELECTIONS)}")
        if self.split not in SPLITS:
            raise ValueError(f"--split must be one of {', '.join(SPLITS)}")
        if self.split == "leave-one-out" and self.min_items < LEAVE_ONE_OUT_MIN_ITEMS:
            raise ValueError(
                f"--min-items must be at least {LEAVE_ONE_OUT_MIN_ITEMS} with --split "
                "leave-one-out (a title to train on, a validation and a test target)"
            )


# Named sets of values for the fields above: `train_model.py --preset NAME`. Flags typed beside a
# preset win over its values; everything a preset leaves out keeps its default.
PRESETS: dict[str, dict[str, Any]] = {
    "ml1m": {
        # The BERT4Rec paper's MovieLens-1M network (Sun et al. 2019), but for its dropout of
        # 0.2: the defaults' 0.1 learns faster and ends higher on validation (docs/BENCHMARKS.md).
        "hidden": 64,
        "ff_dim": 256,
        "layers": 2,
        "heads": 2,
        "max_seq_len": 200,
        "mask_prob": 0.2,
        # The published full-ranking protocol, on the store bench/movielens.py imports.
        "split": "leave-one-out",
        "db": "data/ml1m.db",
        "output": "output/ml1m",
        # How we train it, to pass the published quality within an hour on 2 CPU cores
        # (bench/bench_ml1m.py measures it; docs/BENCHMARKS.md tells how it was chosen).
        "epochs": 130,
        "batch_size": 64,
        "lr": 4e-3,
        # Validate and keep an average of the weights (of about the last 500 steps): smoother,
        # and ahead of the raw weights for most of a run.
        "ema_decay": 0.998,
        "popularity_init": True,
        # The titles' starting embeddings from co-occurrence and the loss over unseen titles
        # are the defaults' (so not written here); measured without a teacher.
        "distill": 0.0,
        "patience": 0,
        "length_buckets": True,
        "cpu_bf16": True,
        # The validation loss bottoms out long before the ranking stops improving.
        "select_by": "NDCG@10",
    },
}


def _flag(name: str) -> str:
    return name.replace("_", "-")


def resume_fixed_fields() -> tuple[str, ...]:
    """The settings a resumed run must share with its checkpoint."""
    return tuple(f.name for f in fields(TrainConfig) if f.metadata.get("on_resume") != "free")


def _default(f: Any) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()


def _shown_default(f: Any) -> str:
    default = _default(f)
    if "shown_default" in f.metadata:
        return f.metadata["shown_default"]
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, and --preset. Defaults are SUPPRESSed so the namespace
    holds only the flags the user typed (resuming needs to know which settings were given
    again)."""
    parser.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=argparse.SUPPRESS,
        help="start from a named set of the settings below; flags given beside it win. "
        + "; ".join(f"{name}: {describe_preset(name)}" for name in PRESETS),
    )
    for f in fields(TrainConfig):
        default = _default(f)
        meta = f.metadata
        help_text = f"{meta['help']} (default: {_shown_default(f)})"
        flag = f"--{_flag(f.name)}"
        if isinstance(default, bool):
            # A switch that is off by default is only turned on; one that is on gets --no-X.
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(flag, action=action, default=argparse.SUPPRESS, help=help_text)
            continue
        value_type = meta.get("type", type(default))
        parser.add_argument(
            flag,
            type=value_type,
            choices=meta.get("choices"),
            default=argparse.SUPPRESS,
            metavar=None if "choices" in meta else meta.get("metavar", _METAVARS[value_type]),
            help=help_text,
        )


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user typed on the command line (see add_arguments), over the values of
    the --preset given with them."""
    names = {f.name for f in fields(TrainConfig)}
    typed = {k: v for k, v in vars(args).items() if k in names}
    return {**PRESETS.get(getattr(args, "preset", ""), {}), **typed}


def describe_preset(name: str) -> str:
    """The preset as the flags one would type for it: a switch as --x or --no-x (a switch that
    is off by default and off in the preset needs no flag), every other setting as --x VALUE."""
    typed = (_typed_flag(k, v) for k, v in PRESETS[name].items())
    return " ".join(flag for flag in typed if flag)


def _typed_flag(name: str, value: Any) -> str:
    if not isinstance(value, bool):
        return f"--{_flag(name)} {value}"
    if value:
        return f"--{_flag(name)}"
    on_by_default = _default(next(f for f in fields(TrainConfig) if f.name == name))
    return f"--no-{_flag(name)}" if on_by_default else ""


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """A config from a dict such as a saved training_config.json; unknown keys are ignored so
    files written by a newer version still load, missing keys take today's defaults."""
    names = {f.name for f in fields(TrainConfig)}
    return replace(TrainConfig(), **{k: v for k, v in values.items() if k in names})


def from_saved(values: dict[str, Any]) -> TrainConfig:
    """The settings of a saved run (a checkpoint's): like from_dict, but a setting the file
    lacks came later, so it takes the value that run trained with (missing_means) where one is
    declared."""
    older = {
        f.name: f.metadata["missing_means"]
        for f in fields(TrainConfig)
        if "missing_means" in f.metadata and f.name not in values
    }
    return from_dict({**older, **values})


def to_dict(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)


def flags_markdown() -> str:
    """The table of train_model.py flags in docs/COMMANDS.md, generated from the defaults above."""
    rows = ["| flag | default | meaning |", "| --- | --- | --- |"]
    for f in fields(TrainConfig):
        rows.append(f"| `--{_flag(f.name)}` | {_shown_default(f)} | {f.metadata['help']} |")
    return "\n".join(rows)
