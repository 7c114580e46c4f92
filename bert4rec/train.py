"""The training loop: data -> model -> per-epoch training, validation and ranking -> outputs.

`train(config)` is the whole of stage 3 and can be called from Python (it returns the
TrainingHistory).
Output layout (under config.output):

    models/       best_model.pth, final_model.pth, item_mappings.pkl / .json, training_config.json
    plots/        loss_curve.png, accuracy_curve.png, combined_metrics.png, learning_curve.png,
                  training_metrics.json
    checkpoints/  checkpoint_epoch_10.pth, checkpoint_epoch_20.pth, ...
    logs/         training.log

Every file is written atomically. Reproducibility: the user split, the batch order and the masks
depend only on the seed and the epoch (data.BERT4RecDataset); dropout uses torch's generator,
is seeded from (seed, epoch, rank) each epoch, so a resumed run repeats an uninterrupted one
exactly. Under torchrun the work is shared over processes; see distributed.py.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import (
    baselines,
    blending,
    checkpoint,
    commands,
    data,
    devices,
    distill,
    distributed,
    evaluate,
    files,
    metrics,
    plots,
    worlds,
)
from . import config as config_module
from .checkpoint import OutputPaths
from .config import TrainConfig
from .data import BERT4RecDataset, TrainingData
from .metrics import RANKING_METRICS, TOP_K, TrainingHistory
from .model import BERT4Rec, ModelConfig, hide_shown_titles
from .vocab import PAD_INDEX

log = logging.getLogger("bert4rec.train")
EMBEDDING_INIT_STD = 0.02  # BERT's, as model._init_weights

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]"
RANKING_PROTOCOL = (
    "next-title ranking on validation users: each user's last title is hidden and replaced by "
    "MASK, the whole catalogue is ranked (full ranking, no sampled negatives) with the user's "
    "other titles excluded; ties count against the hidden title"
)
USER_TEST_PROTOCOL = (
    ". Test figures rank the last title of each test user the same way; test users are held "
    "out like the validation users but nothing is chosen on them: they rank best_model.pth "
    "(the epoch chosen on validation, --select-by), the baselines at the settings chosen on "
    "validation and the blend at the share chosen on validation"
)
LEAVE_ONE_OUT_PROTOCOL = (
    "leave-one-out over all users: the last title of each user is the test target, the one "
    "before it the validation target, the rest is trained on; the target is replaced by MASK "
    "after the titles before it, the whole catalogue is ranked (full ranking, no sampled "
    "negatives) with the user's other titles excluded; ties count against the target. Test "
    "figures are of best_model.pth, the epoch chosen on validation alone (--select-by)"
)


class TrainingError(Exception):
    """Training cannot start or go on. The message says what to do."""


class NothingToTrain(Exception):
    """--resume auto found this very training finished; the message (already logged) says
    where its model is."""


class TrainingInterrupted(Exception):
    """Ctrl-C: the last finished epoch was saved (when there was one) and can be resumed."""

    def __init__(self, message: str, checkpoint_path: Path | None) -> None:
        super().__init__(message)
        self.checkpoint_path = checkpoint_path


# --- setup -------------------------------------------------------------------------------------


def select_device(config: TrainConfig) -> torch.device:
    """--device and --gpu (devices.select_device), and one GPU per process under torchrun."""
    try:
        device = devices.select_device(config.device, config.gpu)
    except devices.DeviceError as exc:
        raise TrainingError(str(exc)) from None
    problem = distributed.device_problem(device.type)  # [distributed] one GPU per process, no mps
    if problem:
        raise TrainingError(problem)
    return device


def training_module(model: BERT4Rec, device: torch.device, config: TrainConfig) -> torch.nn.Module:
    """What the training steps call: `model` itself, DistributedDataParallel around it under
    torchrun, compiled with --compile. Checkpoints and evaluation always use `model`, which
    holds the same weights. Shapes are declared dynamic from the start, because every batch
    has its own length and number of masked titles."""
    module = distributed.wrap_model(model, device)  # [distributed]
    return torch.compile(module, dynamic=True) if config.compile else module


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_config_for(config: TrainConfig, num_items: int) -> ModelConfig:
    return ModelConfig(
        num_items=num_items,
        max_seq_len=config.max_seq_len,
        hidden=config.hidden,
        layers=config.layers,
        heads=config.heads,
        ff_dim=config.resolved_ff_dim,
        dropout=config.dropout,
        dropout_masks=config.dropout_masks,
    )


@torch.no_grad()
def start_at_cooccurrence(model: BERT4Rec, training: TrainingData) -> None:
    """Title embeddings from co-occurrence (baselines.pmi_embeddings) at BERT's starting
    size (standard deviation 0.02): similar titles start in similar directions."""
    n = training.mapping.num_items
    vectors = baselines.pmi_embeddings(training.train_sequences, n, model.config.hidden)
    vectors *= EMBEDDING_INIT_STD / max(float(vectors.std()), 1e-12)
    model.item_embedding.weight[1 : n + 1] = torch.from_numpy(vectors)


def optimizer_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay weight matrices and embeddings only, never biases or LayerNorm gains (nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to min_ratio at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup * total)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, warmup, config.min_lr_ratio)
    )


def weight_average(model: BERT4Rec, decay: float) -> AveragedModel | None:
    """An exponential moving average of the weights (None when decay is 0): the last step's
    weights jitter from one batch to the next, their average less so."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


def make_loader(dataset: BERT4RecDataset, config: TrainConfig, device: torch.device) -> DataLoader:
    # batch_size=None: the dataset already yields whole padded, masked batches.
    return DataLoader(
        dataset, batch_size=None, num_workers=config.workers, pin_memory=device.type == "cuda"
    )


def training_data_for(config: TrainConfig) -> TrainingData:
    """The store's sequences, split as configured."""
    return data.prepare_training_data(
        config.db,
        min_items=config.min_items,
        val_fraction=config.val_fraction,
        seed=config.seed,
        split=config.split,
        test_fraction=config.test_fraction,
    )


def make_datasets(
    config: TrainConfig, training: TrainingData
) -> tuple[BERT4RecDataset, BERT4RecDataset | None]:
    """(training batches, reshuffled and remasked each epoch; validation batches, fixed, or
    None for leave-one-out, whose validation is the next-title ranking alone)."""
    common = {
        "max_seq_len": config.max_seq_len,
        "batch_size": config.batch_size,
        "mask_prob": config.mask_prob,
        "last_item_mask_prob": config.last_item_mask_prob,
        "mask_index": training.mapping.mask_index,
        "length_buckets": config.length_buckets,
    }
    train_set = BERT4RecDataset(
        training.train_sequences * config.masked_copies,  # masks differ per batch, so per copy
        seed=config.seed,
        shuffle=True,
        random_windows=config.random_windows,
        **common,
    )
    if config.split == "leave-one-out":
        return train_set, None
    val_set = BERT4RecDataset(
        training.validation_sequences, seed=config.seed + 1, shuffle=False, **common
    )
    return train_set, val_set


def config_for_resume(path: str, given: dict[str, Any]) -> TrainConfig:
    """The settings of a resumed run: the checkpoint's, overridden by the flags given again."""
    saved = checkpoint.load(path, kind="training")
    return config_module.from_saved({**saved["train_config"], **given, "resume": path})


def check_resumable(payload: dict, config: TrainConfig, training: TrainingData) -> None:
    differing = settings_differ(payload, config)
    if differing:
        raise checkpoint.CheckpointError(
            f"{config.resume} was trained with other settings: {differing}. Leave those flags "
            "out to continue that run, or start a new run without --resume."
        )
    if payload["data_fingerprint"] != training.fingerprint():
        raise checkpoint.CheckpointError(
            f"{config.resume} was trained on other data: the catalogue, the users or their "
            f"lists in {config.db} changed since. Resume with the database it was trained on, "
            "or start a new run without --resume."
        )
    if payload["epoch"] >= config.epochs:
        raise TrainingError(
            f"{config.resume} has already trained {payload['epoch']} of {config.epochs} epochs; "
            "give a larger --epochs to train further."
        )


def settings_differ(payload: dict, config: TrainConfig) -> str | None:
    """The settings a saved file was trained with that `config` changes ("--hidden 64 (now
    32), ..."), among those a resumed run must keep; None when it keeps them all."""
    saved = config_module.from_saved(payload["train_config"])
    differing = [
        name
        for name in config_module.resume_fixed_fields()
        if getattr(saved, name) != getattr(config, name)
    ]
    return (
        ", ".join(
            f"--{n.replace('_', '-')} {getattr(saved, n)} (now {getattr(config, n)})"
            for n in differing
        )
        or None
    )


def resolve_resume(config: TrainConfig, paths: OutputPaths, training: TrainingData) -> TrainConfig:
    """--resume auto and none made concrete: the furthest checkpoint in the output folder
    trained with these settings on this data (the run carries on), else a new run, saying why.
    NothingToTrain when the output folder's final model is this very training, finished."""
    if config.resume == config_module.RESUME_NEW:
        return replace(config, resume=None)
    if config.resume != config_module.RESUME_AUTO:
        return config
    fingerprint = training.fingerprint()
    finished_model = paths.models / checkpoint.FINAL_MODEL_FILE
    finished = saved_run_differs(finished_model, config, fingerprint, kind="model")
    if finished is None:
        message = (
            f"Nothing to train: {finished_model} holds this very training (the same settings "
            f"and data), finished; the model to use is {paths.models / checkpoint.BEST_MODEL_FILE}"
            ". To train it again from the start add --resume none; to train longer, a larger "
            "--epochs."
        )
        log.info(message)
        raise NothingToTrain(message)
    why_new = []  # why the furthest checkpoint cannot be carried on from
    for _, path in paths.saved_checkpoints():
        differs = saved_run_differs(path, config, fingerprint, kind="training")
        if differs is None:
            log.info(f"Carrying on from {path}: the same settings and data (--resume auto).")
            return replace(config, resume=str(path))
        why_new.append(f"{path} {differs}")
    why_new.append(f"no checkpoint in {paths.checkpoints} to carry on from")
    log.info(f"Starting a new run (--resume auto): {why_new[0]}.")
    return replace(config, resume=None)


def saved_run_differs(
    path: Path, config: TrainConfig, fingerprint: str, *, kind: str
) -> str | None:
    """Why the run saved in `path` is not the one `config` asks for, or None when it is: the
    same settings, the same data and, for a finished model, at least config.epochs asked for
    (a checkpoint must have epochs left to train)."""
    if not path.is_file():
        return "is missing"
    try:
        saved = checkpoint.load(path, kind=kind)
    except checkpoint.CheckpointError as exc:
        return f"cannot be read ({exc})"
    differing = settings_differ(saved, config)
    if differing:
        return f"was trained with other settings: {differing}"
    if saved["data_fingerprint"] != fingerprint:
        return f"was trained on other data (the store {config.db} changed since)"
    asked = saved["train_config"].get("epochs", 0)
    if kind == "model" and asked < config.epochs:
        return f"trained {asked} epochs, fewer than --epochs {config.epochs}"
    if kind == "training" and saved["epoch"] >= config.epochs:
        return f"has already trained {saved['epoch']} of the {config.epochs} epochs"
    return None


# --- one epoch ---------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    loss: float
    accuracy: dict[int, float]
    sequences: int
    seconds: float

    @property
    def sequences_per_second(self) -> float:
        return self.sequences / self.seconds if self.seconds > 0 else 0.0


def progress(loader: DataLoader, description: str) -> tqdm:
    # ascii bars ("#") render in every console, the Windows code pages included.
    return tqdm(
        loader,
        desc=description,
        ascii=True,
        bar_format=BAR_FORMAT,
        file=sys.stderr,
        disable=not distributed.is_main_process(),  # [distributed] one bar, rank 0's
    )


def run_epoch(
    model: BERT4Rec,
    loader: DataLoader,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    *,
    description: str,
    step: Any = None,
    teacher: distill.Teacher | None = None,
    exclude_seen: bool = False,
) -> PhaseResult:
    """One pass over `loader`: loss and Top-K accuracy over every masked position. With `step`
    (a callable taking the loss) it trains; without, it only evaluates. With a `teacher` the
    step minimises its mix of the masked-title loss and the loss against its soft targets
    (distill.Teacher.step_loss_sum); with `exclude_seen` (--exclude-seen) both rank the hidden
    titles against the titles the sequence does not show (model.hide_shown_titles). The loss
    and accuracy reported stay the original design's, over the whole catalogue."""
    model.train(step is not None)
    accuracy = metrics.TopKAccuracy(TOP_K)
    loss_sum = torch.zeros((), device=device)
    sequences = 0
    started = time.perf_counter()
    with torch.set_grad_enabled(step is not None):
        for inputs, labels in progress(loader, description):
            sequences += distributed.shared_rows(labels)  # [distributed] not placeholder rows
            inputs = inputs.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            targets = labels[labels != PAD_INDEX]
            with devices.autocast(device, amp_dtype):
                logits = model(inputs, labels)
            # [distributed] summed, then divided by the masked positions of every rank; only
            # reported when the step minimises another loss, so no graph is kept for it
            steps_on_plain = step is not None and not exclude_seen
            batch_loss_sum = distributed.summed_loss(
                logits if steps_on_plain else logits.detach(), targets
            )
            if step is not None:
                step_logits, step_loss_sum = logits, batch_loss_sum
                if exclude_seen:
                    step_logits = hide_shown_titles(logits, inputs, labels)
                    step_loss_sum = distributed.summed_loss(step_logits, targets)
                if teacher is not None:
                    step_loss_sum = teacher.step_loss_sum(
                        step_loss_sum, step_logits, inputs, labels
                    )
                step(distributed.mean_over_ranks(step_loss_sum, targets.numel()))
            # Summed on the device and read once per epoch: no step waits for the GPU.
            loss_sum += batch_loss_sum.detach()
            accuracy.update(logits, targets)
    loss_sum, accuracy, sequences = distributed.sum_phase(loss_sum, accuracy, sequences)
    mean_loss = loss_sum.item() / max(1, accuracy.positions)
    return PhaseResult(mean_loss, accuracy.result(), sequences, time.perf_counter() - started)


def make_step(
    model: BERT4Rec,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    scaler: torch.amp.GradScaler,
    grad_clip: float,
    averaged: AveragedModel | None = None,
) -> Any:
    def step(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if averaged is not None:
            averaged.update_parameters(model)

    return step


def test_best_model(run: Run) -> None:
    """Rank the test targets (test users, or leave-one-out's last titles) with best_model.pth,
    the epoch chosen on validation alone."""
    cases = run.training.test_cases
    best = checkpoint.load(run.paths.models / checkpoint.BEST_MODEL_FILE, kind="model")
    run.scoring_model.load_state_dict(best["model_state"])
    scorer = evaluate.model_scorer(run.scoring_model, run.device)
    run.history.test_ranking = evaluate.evaluate(  # [distributed] rank 0 alone
        cases, scorer, run.training.mapping, run.config, shared=False
    ).ranking
    run.history.test_epoch = best["epoch"]
    log.info(
        f"\nTest ({_test_users(run)}, full ranking, best model of epoch "
        f"{best['epoch']}): {_format_ranking(run.history.test_ranking)}\n  Baselines on the same "
        f"test targets: {evaluate.describe_baselines(run.history.baselines, 'test')}"
    )


def fit_baselines(run: Run) -> None:
    """Popularity, ItemKNN, EASE and EASE-recent (baselines.BASELINE_NAMES) on the validation
    (and test) targets, once per run, each at the settings chosen on validation."""
    cases, test = run.cases, run.training.test_cases
    run.fitted = evaluate.fit_baselines(
        run.training.train_sequences, cases, test, run.training.mapping, run.config
    )
    history = run.history
    history.baselines = run.fitted.report
    history.popularity_baseline = history.baselines["popularity"]["validation"]
    if test is not None:
        history.test_popularity_baseline = history.baselines["popularity"]["test"]
    described = evaluate.describe_baselines(history.baselines, "validation")
    log.info(
        f"Baselines, next-title ranking on {len(cases.targets)} validation users (full ranking, "
        f"fitted on the training titles): {described}"
    )


def make_teacher(run: Run) -> distill.Teacher | None:
    """--distill: the cross-fitted teacher --distill-teacher picks from the baselines (EASE-recent
    at its chosen lambda and decay, or EASE), kept when it leads popularity on validation by
    --distill-min-lead standard errors (distill.choose_teacher); None when off, when EASE or the
    teacher is skipped, or when it is not kept (the log says why)."""
    config = run.config
    if not config.distill:
        return None
    fitted = run.fitted
    n = run.training.mapping.num_items
    skipped = fitted is None or fitted.ease is None
    reason = "EASE was skipped (see the baselines above)" if skipped else distill.too_large(n)
    if reason is not None:
        log.info(f"--distill: {reason}; training without a teacher")
        return None
    choice = distill.choose_teacher(
        fitted.report, fitted.validation_ranks, config.distill_teacher, config.distill_min_lead
    )
    if not choice.used:
        log.info(
            f"--distill: off, because its teacher, {choice.describe()}, ranks the validation "
            f"targets no clearer than popularity: {choice.evidence()}, below --distill-min-lead "
            f"{config.distill_min_lead:g}; training without a teacher"
        )
        return None
    started = time.perf_counter()
    teacher = distill.fit_teacher(
        run.training.train_sequences,
        n,
        choice.lam,
        config.distill_temperature,
        run.device,
        share=config.distill,
        decay=choice.decay,
    )
    log.info(
        f"Distillation: {config.distill:g} of the training loss learns {choice.describe()}; "
        f"temperature {config.distill_temperature:g}, {distill.FOLDS} folds cross-fitted in "
        f"{time.perf_counter() - started:.1f} s; chosen by --distill-teacher "
        f"{config.distill_teacher}, {choice.evidence()}"
    )
    return teacher


def blend_with_ease(run: Run) -> None:
    """After training: the scorer recommendations use, chosen on the validation targets among
    the best model alone, EASE and EASE-recent alone, and the model mixed with each
    (evaluate.fit_blend); saved for recommendations when it is not the model alone, removed
    otherwise (an older run's must not be used with this model)."""
    path = run.paths.models / checkpoint.BLEND_FILE
    parts = evaluate.item_item_parts(run.fitted) if run.fitted is not None else {}
    if not run.config.blend or not parts:
        path.unlink(missing_ok=True)
        return
    best = checkpoint.load(run.paths.models / checkpoint.BEST_MODEL_FILE, kind="model")
    run.scoring_model.load_state_dict(best["model_state"])
    result = evaluate.fit_blend(
        evaluate.model_scorer(run.scoring_model, run.device),
        parts,
        run.cases,
        run.training.test_cases,
        run.training.mapping,
        run.config,
        min_lead=run.config.blend_min_lead,
        shared=False,  # [distributed] rank 0 alone
    )
    run.history.blend = result
    share = result["ease_weight"]
    if share == 0:
        path.unlink(missing_ok=True)
        why = "no mix led it by enough" if "best_mix" in result else "nothing ranked better"
        used = f"the model alone ({why} on validation)"
    else:
        part = parts[result["part"]]
        chosen = blending.Blend(
            torch.from_numpy(part.weights),
            part.decay,
            result["part"],
            part.lam,
            share,
            run.training.fingerprint(),
            best["epoch"],
            tuple(parts),
        )
        blending.save(chosen, path)
        used = chosen.describe()
    test = f"; test {_format_ranking(result['test'])}" if "test" in result else ""
    mix = f" {describe_mix(result['best_mix'])}" if "best_mix" in result else ""
    log.info(
        f"Scorer for recommendations: validation {_format_ranking(result['validation'])}{test}."
        f"{mix} Recommendations use {used}. {describe_lead(result['lead_over_ease'])}"
    )


def describe_mix(mix: dict) -> str:
    """'The best mix on validation (the model with EASE-recent at 0.8) led EASE-recent alone by
    0.8 standard errors of NDCG@10, under the 2 asked (--blend-min-lead): not used.'"""
    alone = "the model alone" if mix["alone"] == "model" else f"{mix['alone']} alone"
    errors = mix["standard_errors"]
    by = f"{errors:.1f} standard errors" if errors is not None else f"{mix['lead']:+.4f}"
    verdict = "used" if mix["kept"] else "not used"
    return (
        f"The best mix on validation (the model with {mix['part']} at {mix['ease_weight']:g}) "
        f"led {alone} by {by} of NDCG@10, {'at least' if mix['kept'] else 'under'} the "
        f"{mix['min_lead']:g} asked (--blend-min-lead): {verdict}."
    )


def describe_lead(lead: dict[str, dict[str, dict[str, float]]]) -> str:
    """'Against EASE alone on the same targets: validation NDCG@10 +0.0037 (standard error
    0.0039), test ...': how far the blend's lead is from chance."""
    parts = []
    for part, figures in lead.items():
        for metric in ("NDCG@10",) if part == "validation" else ("HR@10", "NDCG@10"):
            entry = figures[metric]
            parts.append(
                f"{part} {metric} {entry['lead']:+.4f} (standard error "
                f"{entry['standard_error']:.4f})"
            )
    return "Against EASE alone on the same targets: " + ", ".join(parts) + "."


# --- logging -----------------------------------------------------------------------------------


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


@contextlib.contextmanager
def logging_to(path: Path):
    """Everything logged goes to the console (as printed) and to `path` (with timestamps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(_ConsoleFilter())
    logfile = logging.FileHandler(path, encoding="utf-8")
    logfile.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(console)
    log.addHandler(logfile)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        for handler in (console, logfile):
            log.removeHandler(handler)
            handler.close()


def logging_on_rank_0(path: Path) -> Any:
    """logging_to(path) in rank 0 (the only one in a plain run); the other ranks stay silent."""
    return logging_to(path) if distributed.is_main_process() else distributed.silenced(log)


def _best_baseline(report: dict[str, dict]) -> str:
    """'best baseline EASE HR@10 0.2300' on validation, for the per-epoch line."""
    measured = {name: e["validation"]["HR@10"] for name, e in report.items() if "validation" in e}
    if not measured:
        return "no baseline"
    name = max(measured, key=measured.__getitem__)
    return f"best baseline {name} HR@10 {measured[name]:.4f}"


def _format_ranking(values: dict[str, float]) -> str:
    return "  ".join(f"{name} {values[name]:.4f}" for name in ("HR@10", "NDCG@10", "MRR"))


def log_phase(prefix: str, result: PhaseResult) -> None:
    log.info(f"  {prefix} loss: {result.loss:.4f}")
    for k in TOP_K:
        log.info(f"  {prefix} Top-{k} acc: {result.accuracy[k]:.4f}")


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything one training run holds. A checkpoint saves and restores its state."""

    config: TrainConfig
    paths: OutputPaths
    device: torch.device
    amp_dtype: torch.dtype | None
    training: TrainingData
    cases: data.NextItemCases  # next-title ranking on the validation users
    model: BERT4Rec
    parallel_model: torch.nn.Module  # what training steps call (training_module)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    train_set: BERT4RecDataset
    train_loader: DataLoader
    val_loader: DataLoader | None  # None for leave-one-out (validated by ranking alone)
    history: TrainingHistory
    start_epoch: int = 1
    train_amp_dtype: torch.dtype | None = None  # the training steps' (training_autocast_dtype)
    averaged: AveragedModel | None = None  # --ema-decay (weight_average)
    fitted: evaluate.FittedBaselines | None = None  # fit_baselines, at the start
    teacher: distill.Teacher | None = None  # --distill (make_teacher), after fit_baselines

    @property
    def scoring_model(self) -> BERT4Rec:
        """The weights that are validated and saved as models: the average when kept."""
        return self.model if self.averaged is None else self.averaged.module

    @property
    def report(self) -> dict:
        """What training_metrics.json says besides the per-epoch series."""
        return {
            "data": self.training.summary(),
            "ranking_protocol": ranking_protocol(self.training),
            "device": str(self.device),
            "processes": distributed.world_size(),
        }

    @property
    def saved_settings(self) -> dict:
        """training_config.json and every model file's train_config: the settings, and the
        world the data came from (worlds.py), which recommend.py checks lists against."""
        return {**asdict(self.config), worlds.SETTINGS_FIELD: self.training.world}

    def model_file(self, epoch: int) -> dict:
        last = {"val_loss": self.history.val_losses[-1]}
        last.update({name: self.history.val_ranking[name][-1] for name in RANKING_METRICS})
        return checkpoint.model_payload(
            self.scoring_model,
            self.training.mapping,
            epoch=epoch,
            train_config=self.saved_settings,
            data_fingerprint=self.training.fingerprint(),
            metrics=last,
        )

    def training_file(self, epoch: int) -> dict:
        return checkpoint.training_payload(
            self.model_file(epoch),
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            history=self.history.to_dict(),
            averaged=self.averaged,
            trained_model=self.model,
        )

    def restore(self, payload: dict) -> None:
        self.model.load_state_dict(payload.get("trained_model_state") or payload["model_state"])
        if self.averaged is not None:
            self.averaged.load_state_dict(payload["averaged_state"])
        self.optimizer.load_state_dict(payload["optimizer_state"])
        self.scheduler.load_state_dict(payload["scheduler_state"])
        if payload["scaler_state"]:  # empty when saved without fp16 (cpu, bf16, another GPU)
            self.scaler.load_state_dict(payload["scaler_state"])
        self.history = TrainingHistory.from_dict(payload["history"])
        checkpoint.restore_rng(payload["rng_state"])
        self.start_epoch = payload["epoch"] + 1


def train(config: TrainConfig) -> TrainingHistory:
    """Train as configured (resuming from config.resume when set) and return the TrainingHistory.

    Raises db.DatabaseError, data.DataError, checkpoint.CheckpointError or TrainingError with a
    message for the user, ValueError for impossible settings, and TrainingInterrupted on
    Ctrl-C after saving the last finished epoch.
    """
    config.validate()
    paths = OutputPaths(Path(config.output))
    # [distributed] a process group under torchrun (entered before the second item is built)
    with distributed.process_group(), logging_on_rank_0(paths.log_file):
        try:
            run = start_run(config, paths)
            return train_epochs(run)
        except (TrainingError, checkpoint.CheckpointError, data.DataError) as exc:
            log.error(f"error: {exc}", extra={"file_only": True})
            raise


def start_run(config: TrainConfig, paths: OutputPaths) -> Run:
    """Device, data, model and optimiser; restored from config.resume when given."""
    device = distributed.device_for_rank(select_device(config))  # [distributed] cuda:LOCAL_RANK
    amp_dtype = devices.autocast_dtype(config, device)
    train_amp_dtype = devices.training_autocast_dtype(config, device)
    log.info(f"Device: {device}" + (f" (mixed precision {amp_dtype})" if amp_dtype else ""))
    if distributed.world_size() > 1:  # [distributed]
        log.info(
            f"Distributed: {distributed.world_size()} processes share each batch of "
            f"{config.batch_size} users"
        )
    if device.type == "cpu" and config.cpu_bf16:
        log.info(
            "Training steps in bfloat16 mixed precision (evaluation in float32)"
            if train_amp_dtype
            else "--cpu-bf16: this CPU has no native bfloat16; training in float32"
        )
    training = training_data_for(config)
    log_data_summary(config, training.summary())
    config = resolve_resume(config, paths, training)
    resumed = checkpoint.load(config.resume, kind="training") if config.resume else None
    if resumed is not None:
        check_resumable(resumed, config, training)
    elif any(paths.checkpoints.glob("checkpoint_epoch_*.pth")):
        log.info(
            f"Note: {paths.checkpoints} holds checkpoints of an earlier run; this run replaces "
            "them as it reaches the same epochs."
        )

    seed_everything(config.seed)
    model = BERT4Rec(model_config_for(config, training.mapping.num_items))
    if config.popularity_init:
        counts = np.bincount(
            np.concatenate(training.train_sequences), minlength=training.mapping.vocab_size
        )
        model.start_at_popularity(torch.from_numpy(counts))
    if config.cooccurrence_init:
        start_at_cooccurrence(model, training)
    model = model.to(device)
    train_set, val_set = make_datasets(config, training)
    optimizer = torch.optim.AdamW(optimizer_groups(model, config.weight_decay), lr=config.lr)
    run = Run(
        config=config,
        paths=paths,
        device=device,
        amp_dtype=amp_dtype,
        training=training,
        cases=training.validation_cases,
        model=model,
        parallel_model=training_module(model, device, config),
        optimizer=optimizer,
        scheduler=build_schedule(optimizer, config, len(train_set)),
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        train_set=train_set,
        train_loader=make_loader(distributed.share(train_set), config, device),  # [distributed]
        val_loader=None
        if val_set is None
        else make_loader(distributed.share(val_set), config, device),
        history=TrainingHistory(),
        train_amp_dtype=train_amp_dtype,
        averaged=weight_average(model, config.ema_decay),
    )
    if resumed is not None:
        run.restore(resumed)
        log.info(f"Resuming {config.resume} at epoch {run.start_epoch}/{config.epochs}")
        carry_best_model(run)
    log.info(
        f"Model: BERT4Rec (layers {config.layers}, heads {config.heads}, hidden {config.hidden}, "
        f"feed-forward {config.resolved_ff_dim}, max length {config.max_seq_len}): "
        f"{model.num_parameters():,} parameters. {len(train_set)} training steps per epoch "
        f"(batch {config.batch_size})."
    )
    fit_baselines(run)
    run.teacher = make_teacher(run)
    write_run_files(run)
    return run


def carry_best_model(run: Run) -> None:
    """A run resumed into another --output folder: bring along the best model of the epochs
    before the checkpoint (from the checkpoint's own run folder), since a later epoch may
    never beat it and the test and blend read it from this folder. Rank 0 only."""
    best_epoch = run.history.best_epoch
    target = run.paths.models / checkpoint.BEST_MODEL_FILE
    source = OutputPaths(Path(run.config.resume).resolve().parent.parent).models / target.name
    if not best_epoch or not distributed.is_main_process() or source == target.resolve():
        return
    saved = checkpoint.load(source, kind="model") if source.is_file() else None
    if saved is None or saved.get("epoch") != best_epoch:
        log.info(
            f"Note: the best model so far (epoch {best_epoch}) was not found beside "
            f"{run.config.resume} ({source}); {target} will hold the best epoch from now on."
        )
        run.history.forget_best()
        return
    checkpoint.save(saved, target)


def patience_epochs(config: TrainConfig, steps_per_epoch: int) -> int:
    """How many epochs without a better one end training: --patience, or more where that many
    epochs hold fewer than --patience-steps training steps."""
    return max(config.patience, math.ceil(config.patience_steps / max(1, steps_per_epoch)))


def train_epochs(run: Run) -> TrainingHistory:
    """The epochs from run.start_epoch on, then the final outputs."""
    config, history = run.config, run.history
    step = make_step(
        run.model, run.optimizer, run.scheduler, run.scaler, config.grad_clip, run.averaged
    )
    finished: dict | None = None  # state after the last epoch finished in this process (Ctrl-C)
    epoch = run.start_epoch - 1
    try:
        for epoch in range(run.start_epoch, config.epochs + 1):
            improved = train_one_epoch(run, epoch, step)
            save_epoch(run, epoch, improved)
            finished = copy.deepcopy(run.training_file(epoch))
            waited = patience_epochs(config, len(run.train_set))
            if config.patience and history.epochs_since_best() >= waited:
                log.info(
                    f"\nEarly stopping: no better epoch (--select-by {config.select_by}) for "
                    f"{waited} epochs (best: {history.describe_best()})."
                )
                break
    except KeyboardInterrupt:
        raise interrupted(run, epoch, finished) from None

    if distributed.is_main_process():  # [distributed]
        checkpoint.save(
            run.model_file(history.epochs_done), run.paths.models / checkpoint.FINAL_MODEL_FILE
        )
        if run.training.test_cases is not None:
            test_best_model(run)
        blend_with_ease(run)
        plots.write_all(history, run.paths.plots, run.report)
    log.info(
        f"\nTraining finished after {history.epochs_done} epochs. Best: "
        f"{history.describe_best()}: "
        f"{run.paths.models / checkpoint.BEST_MODEL_FILE} (the one to use). "
        f"Plots: {run.paths.plots}"
    )
    return history


def train_one_epoch(run: Run, epoch: int, step: Any) -> bool:
    """Train, validate, rank, print the original design's lines and record them; True on a new
    best."""
    log.info(f"\nEpoch {epoch}/{run.config.epochs}")
    log.info("-" * 40)
    learning_rate = run.scheduler.get_last_lr()[0]
    run.train_set.set_epoch(epoch)
    distributed.seed_dropout(run.config.seed, epoch)  # [distributed] no per-rank state to save
    trained = run_epoch(
        run.parallel_model,
        run.train_loader,
        run.device,
        run.train_amp_dtype,
        description="Training",
        step=step,
        teacher=run.teacher,
        exclude_seen=run.config.exclude_seen,
    )
    log_phase("Train", trained)
    log.info(
        f"  Train speed: {trained.sequences_per_second:.1f} sequences/s ({trained.seconds:.2f} s)"
    )
    stop_if_not_finite("training", trained.loss, epoch, run)
    scorer = evaluate.model_scorer(run.scoring_model, run.device)
    ranked = evaluate.evaluate(run.cases, scorer, run.training.mapping, run.config)
    ranking = ranked.ranking
    if run.val_loader is None:  # leave-one-out: the ranked targets are the validation
        validated = PhaseResult(
            ranked.loss, ranked.accuracy, len(run.cases.targets), ranked.seconds
        )
    else:
        validated = run_epoch(
            run.scoring_model, run.val_loader, run.device, run.amp_dtype, description="Validation"
        )
    log_phase("Val", validated)
    stop_if_not_finite("validation", validated.loss, epoch, run)
    log.info(
        f"  Val next-title ranking ({len(run.cases.targets)} users, full ranking): "
        f"{_format_ranking(ranking)}  ({_best_baseline(run.history.baselines)})"
    )
    improved = run.history.record_epoch(
        train_loss=trained.loss,
        train_accuracy=trained.accuracy,
        val_loss=validated.loss,
        val_accuracy=validated.accuracy,
        ranking=ranking,
        sequences_per_second=trained.sequences_per_second,
        seconds=trained.seconds + validated.seconds,
        learning_rate=learning_rate,
        select_by=run.config.select_by,
    )
    if improved:
        log.info("  New best model!")
    return improved


def save_epoch(run: Run, epoch: int, improved: bool) -> None:
    """best_model.pth on a new best; every checkpoint_every epochs a checkpoint and the plots;
    training_metrics.json every epoch (cheap, and lets a long run be watched). Rank 0 only."""
    if not distributed.is_main_process():  # [distributed]
        return
    if improved:
        checkpoint.save(run.model_file(epoch), run.paths.models / checkpoint.BEST_MODEL_FILE)
    every = run.config.checkpoint_every
    if every and epoch % every == 0:
        checkpoint.save(run.training_file(epoch), run.paths.checkpoint(epoch))
        plots.write_all(run.history, run.paths.plots, run.report)
    else:
        plots.write_metrics_json(run.history, run.paths.plots / plots.METRICS_FILE, run.report)


def write_run_files(run: Run) -> None:
    """The mapping and settings, written first so best_model.pth is usable from epoch 1 on.
    item_mappings.json is what loaders read; the pickle is the original design's
    format. Rank 0 only."""
    if not distributed.is_main_process():  # [distributed]
        return
    mapping = run.training.mapping.to_dict()
    files.write_pickle(run.paths.models / checkpoint.MAPPING_PICKLE_FILE, mapping)
    files.write_json(run.paths.models / checkpoint.MAPPING_JSON_FILE, mapping)
    files.write_json(run.paths.models / checkpoint.TRAINING_CONFIG_FILE, run.saved_settings)


def log_data_summary(config: TrainConfig, summary: dict) -> None:
    test_users = summary.get("test_users", 0) if config.split == "user" else 0
    parts = (
        f"{summary['train_users']} training, {summary['validation_users']} validation (every "
        f"choice is made on them) and {test_users} test users (reported, never chosen on)"
        if test_users
        else f"{summary['train_users']} training and {summary['validation_users']} validation users"
    )
    log.info(
        f"Data: {config.db}: {summary['catalogue_titles']} titles; {summary['users_loaded']} "
        f"users loaded, {summary['users_dropped_too_few_items']} left out (fewer than "
        f"{config.min_items} watched catalogue titles); {parts}; {summary['interactions']} "
        f"titles watched, {summary['mean_sequence_length']:.1f} per user"
    )
    if test_users:
        train, validation = summary["train_users"], summary["validation_users"]
        log_held_out_minimum(config, train, validation, test_users)


def log_held_out_minimum(config: TrainConfig, train: int, validation: int, test: int) -> None:
    """Say so when few users raised validation or test above their share (data.held_out_floor):
    the training share is then below the original design's 9 in 10."""
    users = train + validation + test
    shares = ((validation, config.val_fraction), (test, config.test_fraction))
    if all(count <= round(users * share) for count, share in shares):
        return
    log.info(
        f"Note: only {users} users, so validation and test get at least "
        f"{data.held_out_floor(users)} users each, more than --val-fraction "
        f"{config.val_fraction:g} and --test-fraction {config.test_fraction:g} of them; "
        f"{train} users ({train / users:.0%}) are trained on"
    )


def ranking_protocol(training: TrainingData) -> str:
    """How the ranking figures of training_metrics.json were measured, on which users."""
    if training.split == "leave-one-out":
        return LEAVE_ONE_OUT_PROTOCOL
    return RANKING_PROTOCOL + (USER_TEST_PROTOCOL if training.test else "")


def _test_users(run: Run) -> str:
    """'leave-one-out, 200 users' or '25 held-out test users' (the log line of the test)."""
    count = len(run.training.test)
    if run.training.split == "leave-one-out":
        return f"leave-one-out, {count} users"
    return f"{count} held-out test users, never chosen on"


def stop_if_not_finite(phase: str, loss: float, epoch: int, run: Run) -> None:
    if math.isfinite(loss):
        return
    amp = " or turn off mixed precision (--no-amp)" if run.amp_dtype else ""
    best = run.history.best_epoch
    kept = f" best_model.pth still holds epoch {best}." if best else ""
    raise TrainingError(
        f"the {phase} loss became {loss} in epoch {epoch}: training diverged. Lower --lr "
        f"(now {run.config.lr}){amp} and start again.{kept}"
    )


def interrupted(run: Run, epoch: int, finished: dict | None) -> TrainingInterrupted:
    """Save the last finished epoch (never a half-trained one) and say how to resume."""
    if finished is None:
        message = f"Interrupted in epoch {epoch}, before any epoch of this run finished."
        if run.config.resume:
            message += f" Nothing new to save; resume again from {run.config.resume}."
        log.info("\n" + message)
        return TrainingInterrupted(message, None)
    done = finished["epoch"]
    path = run.paths.checkpoint(done)
    if distributed.is_main_process():  # [distributed]
        checkpoint.save(finished, path)
        plots.write_all(TrainingHistory.from_dict(finished["history"]), run.paths.plots, run.report)
    message = (
        f"Interrupted in epoch {epoch}. Saved the state after epoch {done} to {path}.\n"
        f"Resume with: {commands.python('train_model.py', '--resume', str(path))}\n"
        f"({commands.launcher('3_train_model')} and {commands.launcher('run_all')} carry on "
        "by themselves: run the same command again.)"
    )
    log.info("\n" + message)
    return TrainingInterrupted(message, path)
