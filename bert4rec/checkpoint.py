"""Saving and loading models and training checkpoints.

Two kinds of file, both a dict saved with torch.save and read back with weights_only=True (no
code runs when a file is loaded):

- kind "model" (output/models/best_model.pth, final_model.pth): what a recommender needs.
  format, version, kind, epoch, model_config (ModelConfig as a dict), model_state,
  item_mapping (ItemMapping.to_dict()), train_config (TrainConfig as a dict),
  data_fingerprint, metrics (that epoch's validation figures).
- kind "training" (output/checkpoints/checkpoint_epoch_N.pth): all of the above plus
  optimizer_state, scheduler_state, scaler_state, history (TrainingHistory.to_dict()) and rng_state
  (python, numpy, torch and this process's cuda generator); with --ema-decay also
  averaged_state and trained_model_state (model_state is then the average). Training reseeds
  dropout from (seed, epoch, rank) every epoch, so --resume continues exactly without the rng
  states on any number of processes; they are kept for whatever else draws random numbers.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from . import files
from .data import ItemMapping
from .model import BERT4Rec, ModelConfig

# The output layout (the original design's), named once: train.py writes it, recommend.py and
# demo.py find its files.
MODELS_DIR = "models"
PLOTS_DIR = "plots"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
LOG_FILE = "training.log"
# The models/ files.
BEST_MODEL_FILE = "best_model.pth"  # the best epoch (--select-by): the one to use
FINAL_MODEL_FILE = "final_model.pth"  # the last epoch
MAPPING_JSON_FILE = "item_mappings.json"  # what loaders read
MAPPING_PICKLE_FILE = "item_mappings.pkl"  # the original design's format
TRAINING_CONFIG_FILE = "training_config.json"
BLEND_FILE = "ease_blend.pth"  # EASE's weights and share, when blending won (blending.py)

CHECKPOINT_FILE = "checkpoint_epoch_{}.pth"  # in checkpoints/, by the epoch it was saved after
_CHECKPOINT_NAME = re.compile(re.escape(CHECKPOINT_FILE).replace(r"\{\}", r"(\d+)"))

CHECKPOINT_FORMAT = "bert4rec-checkpoint"
CHECKPOINT_VERSION = 1


class OutputPaths:
    """The original design's output layout under one folder (--output)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models = root / MODELS_DIR
        self.plots = root / PLOTS_DIR
        self.checkpoints = root / CHECKPOINTS_DIR
        self.logs = root / LOGS_DIR
        self.log_file = self.logs / LOG_FILE

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / CHECKPOINT_FILE.format(epoch)

    def saved_checkpoints(self) -> list[tuple[int, Path]]:
        """(epoch, path) of the checkpoints in checkpoints/, the furthest epoch first."""
        if not self.checkpoints.is_dir():
            return []
        found = [
            (int(match.group(1)), path)
            for path in self.checkpoints.iterdir()
            if (match := _CHECKPOINT_NAME.fullmatch(path.name)) and path.is_file()
        ]
        return sorted(found, reverse=True)


class CheckpointError(Exception):
    """A checkpoint is missing, damaged or does not fit. The message says what to do."""


def save(payload: dict, path: str | os.PathLike[str]) -> None:
    files.write_with(path, lambda handle: torch.save(payload, handle))


def load(path: str | os.PathLike[str], kind: str | None = None) -> dict:
    """Read a file written by save(), on the CPU; CheckpointError when it is not one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or unsafe content
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot read {path}: the file is damaged or was not saved by train_model.py "
            f"({reason[:200]}). Use another checkpoint or start a new run without --resume."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint saved by train_model.py.")
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was saved by a newer version of this program; update it.")
    if kind is not None and payload.get("kind") != kind:
        hint = (
            " It is a trained model (best/final), which holds no optimizer state; resume from "
            "output/checkpoints/checkpoint_epoch_N.pth instead."
            if kind == "training"
            else ""
        )
        raise CheckpointError(f"{path} is not a {kind} file.{hint}")
    return payload


def model_payload(
    model: BERT4Rec,
    mapping: ItemMapping,
    *,
    epoch: int,
    train_config: dict,
    data_fingerprint: str,
    metrics: dict,
) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": "model",
        "epoch": epoch,
        "model_config": model.config.to_dict(),
        "model_state": model.state_dict(),
        "item_mapping": mapping.to_dict(),
        "train_config": train_config,
        "data_fingerprint": data_fingerprint,
        "metrics": metrics,
    }


def training_payload(
    model_part: dict,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    history: dict,
    averaged: torch.nn.Module | None = None,
    trained_model: torch.nn.Module | None = None,
) -> dict:
    """A model payload plus everything --resume needs to continue exactly. With a weight
    average (--ema-decay) model_state holds the average, as in the model files, and
    trained_model_state the weights the optimiser steps."""
    payload = {
        **model_part,
        "kind": "training",
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": scheduler.state_dict(),
        "scaler_state": scaler.state_dict(),
        "history": history,
        "rng_state": capture_rng(),
    }
    if averaged is not None:
        payload["averaged_state"] = averaged.state_dict()
        payload["trained_model_state"] = trained_model.state_dict()
    return payload


def capture_rng() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        # numpy's state holds an ndarray, which weights_only loading refuses; store a tensor.
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_initialized():
        # This process's GPU only: under torchrun reading every GPU's generator would open a
        # context on each, and a file from an 8-GPU machine must load on a 1-GPU one.
        state["cuda"] = [torch.cuda.get_rng_state()]
    return state


def restore_rng(state: dict) -> None:
    random.setstate(_as_tuples(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"][0])  # older files hold every GPU's: take the first


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class LoadedModel(NamedTuple):
    model: BERT4Rec
    mapping: ItemMapping
    payload: dict


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedModel:
    """A trained model (any kind of file above) ready for inference, with its item mapping."""
    payload = load(path)
    try:
        config = ModelConfig(**payload["model_config"])
        mapping = ItemMapping.from_dict(payload["item_mapping"])
        if mapping.num_items != config.num_items:
            raise ValueError(
                f"the mapping has {mapping.num_items} titles, the model {config.num_items}"
            )
        model = BERT4Rec(config)
        model.load_state_dict(payload["model_state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{os.fspath(path)} does not hold a usable model ({exc}).") from exc
    return LoadedModel(model.to(device).eval(), mapping, payload)
