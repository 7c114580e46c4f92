"""train_model.py as torchrun starts it in each process, with test hooks set by environment:

- WRITES_DIR: each rank appends every file it writes (and the log it opens) to
  WRITES_DIR/rank<N>.txt, so a test can tell which rank wrote what.
- FAIL_RANK: that rank raises an error in its second training epoch, as a bug or a full disk
  on one process would.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import train_model
from bert4rec import distributed, files
from bert4rec import train as training

RANK = int(os.environ["RANK"])


def record_writes(folder: Path) -> None:
    def note(path: os.PathLike[str] | str) -> None:
        with open(folder / f"rank{RANK}.txt", "a", encoding="utf-8") as handle:
            handle.write(os.fspath(path) + "\n")

    write_with, logging_to = files.write_with, training.logging_to

    def noted_write_with(path, write):
        note(path)
        return write_with(path, write)

    def noted_logging_to(path):
        note(path)
        return logging_to(path)

    files.write_with = noted_write_with
    training.logging_to = noted_logging_to


def fail_in_second_epoch() -> None:
    run_epoch = training.run_epoch
    calls = {"n": 0}

    def failing_run_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # training and validation of epoch 1, then epoch 2's training
            raise RuntimeError(f"planted failure on rank {RANK}")
        return run_epoch(*args, **kwargs)

    training.run_epoch = failing_run_epoch


if __name__ == "__main__":
    if os.environ.get("WRITES_DIR"):
        record_writes(Path(os.environ["WRITES_DIR"]))
    if os.environ.get("FAIL_RANK") == str(RANK):
        fail_in_second_epoch()
    sys.exit(distributed.leave(train_model.main(sys.argv[1:])))
