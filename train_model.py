"""Stage 3: train BERT4Rec on the watch lists in data/bert.db.

    train_model.py --epochs 200 --batch-size 64 --gpu
    train_model.py --resume auto     carry on from the furthest checkpoint of the same settings
    train_model.py --resume output/checkpoints/checkpoint_epoch_10.pth

Every flag and its default comes from bert4rec/config.py (TrainConfig). Outputs go to output/
(models/, plots/, checkpoints/, logs/); see bert4rec/train.py.
"""

from __future__ import annotations

import argparse
import sys

from bert4rec import config, db, distributed, tuning
from bert4rec.checkpoint import CheckpointError
from bert4rec.data import DataError
from bert4rec.train import (
    NothingToTrain,
    TrainingError,
    TrainingInterrupted,
    config_for_resume,
    train,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train the BERT4Rec anime recommender on the users stored by load_users.py."
    )
    config.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    given = config.given_settings(args)
    try:
        if given.get("resume") not in (None, config.RESUME_AUTO, config.RESUME_NEW):
            settings = config_for_resume(given["resume"], given)
        else:
            settings = config.from_dict(given)
        settings.validate()
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    tuning.tune_for_training(settings)  # this process is ours: allocator, threads, oneDNN
    try:
        train(settings)
    except NothingToTrain:
        return 0  # the message is already on the console
    except TrainingInterrupted:
        return 130  # the message is already on the console
    except KeyboardInterrupt:
        print("\nInterrupted before training started; nothing was saved.", file=sys.stderr)
        return 130
    except (db.DatabaseError, DataError, CheckpointError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run() -> int:
    """The command line, also installed as `bert4rec-train`."""
    return distributed.leave(main())


if __name__ == "__main__":
    sys.exit(run())
