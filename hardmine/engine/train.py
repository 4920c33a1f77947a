"""The training loop: imbalance levers, fine-tuning schedule, checkpoints, progress.

Library code never prints: progress goes to an optional ``callback(event, info)``
with events ``fit_start`` (the epoch it starts from: above 0 on resume, ``total_epochs`` when
a finished training is found), ``epoch_start``, ``batch`` (its ``loss`` a 0-d tensor on the device:
reading it waits for the device) and ``epoch_end``.

Speed: one training and one validation loader per fit (worker processes start once), no host
sync inside an epoch, autocast by ``config.precision`` (fp16 with a GradScaler), channels-last and
cuDNN autotuning on CUDA.

Files written to ``out_dir`` (each atomically):

* ``last.pt``: model, optimiser and scheduler state after the latest epoch (resume point)
* ``model.pt``: the state dict of the best epoch by ``monitor`` on validation
* ``history.jsonl``: one JSON line per epoch (train loss, val metrics, lr)
* ``dynamics.npz``: per-epoch loss and p(true label) of every training sample,
  recorded from the training forward passes at no extra cost (NaN if not drawn)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from hardmine.core.curriculum import class_balance_weights
from hardmine.core.errors import HardmineError, damage_reason
from hardmine.core.io import atomic_path, write_bytes
from hardmine.core.metrics import binary_metrics, softmax
from hardmine.engine import distributed
from hardmine.engine.datasets import EpochSeeded
from hardmine.engine.inference import Callback, autocast_dtype, forward, make_loader, rank_shard, to_device
from hardmine.engine.losses import class_weights, per_sample_loss, weighted_mean
from hardmine.engine.runtime import Engine
from hardmine.engine.sampler import CurriculumSampler, EpochShuffle, SeededBatches
from hardmine.record.config import TrainConfig
from hardmine.record.layout import CHECKPOINT_FILE, DYNAMICS_FILE, HISTORY_FILE, MODEL_FILE


@dataclass
class FitResult:
    best_epoch: int
    best_value: float
    history: list[dict[str, Any]] = field(default_factory=list)
    model_path: Path | None = None


def fit(
    model: torch.nn.Module,
    train_ds,
    val_ds,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    sample_weights: np.ndarray | None = None,
    callback: Callback | None = None,
    resume: bool = True,
) -> FitResult:
    """Train ``model`` (a :class:`hardmine.engine.models.Classifier`) and keep the best epoch.

    Parameters
    ----------
    train_ds, val_ds : datasets yielding ``(image, label, index)``; both need ``.labels``.
    config : the training options.
    out_dir : where checkpoints, history and dynamics go.
    sample_weights : (N_train,) curriculum weights (mean 1); applied through the
        sampler or the loss according to ``config.apply``.
    resume : continue from ``out_dir/last.pt`` when it exists.

    Returns
    -------
    FitResult with the best epoch, its monitor value and the per-epoch history.
    """
    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    engine = Engine(config)
    device = engine.device
    world = distributed.world_size()
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    labels = np.asarray(train_ds.labels)
    n_train = len(labels)
    if sample_weights is not None:
        sample_weights = np.asarray(sample_weights, dtype=np.float64)
        if sample_weights.shape != (n_train,):
            raise HardmineError(f"sample_weights has shape {sample_weights.shape}; expected ({n_train},)")
    counts = np.bincount(labels, minlength=2)
    cw = torch.tensor(class_weights(counts, config.class_weighting), dtype=torch.float32).to(device)
    draw_weights = _draw_weights(labels, config, sample_weights)
    sampler = None if draw_weights is None else CurriculumSampler(draw_weights, seed=config.seed)
    if sampler is None and world > 1:
        sampler = DistributedSampler(train_ds, shuffle=True, seed=config.seed)
    steps_per_epoch = math.ceil((len(sampler) if sampler is not None else n_train) / config.batch_size)
    loss_weights = (
        torch.as_tensor(sample_weights, dtype=torch.float32)
        if sample_weights is not None and config.apply == "loss"
        else None
    )
    total_epochs = config.freeze_epochs + config.epochs
    state = _TrainState(total_epochs, n_train)
    optimizer = scheduler = net = None
    if resume and (out / CHECKPOINT_FILE).exists():
        ckpt = _read_checkpoint(out / CHECKPOINT_FILE)
        model.load_state_dict(ckpt["model"])
        state.load(ckpt, out)
    if callback:
        callback("fit_start", {"start_epoch": state.next_epoch, "total_epochs": total_epochs})
    # One loader per fit: its workers (if any) start once and serve every epoch; the sampler draws each
    # epoch's order from set_epoch, the dataset each sample's augmentation from (epoch, index).
    if sampler is None:
        sampler = EpochShuffle(n_train, seed=config.seed)
    train_ds = EpochSeeded(train_ds, config.seed)
    loader = make_loader(train_ds, config.batch_size, device, config.num_workers, SeededBatches(sampler),
                         config.image_size, persistent=True)  # fmt: skip
    val_loader = make_loader(rank_shard(val_ds), config.batch_size * 2, device, config.num_workers,
                             image_size=config.image_size, persistent=True)  # fmt: skip
    precision = Precision(config.precision, device)
    for epoch in range(state.next_epoch, total_epochs):
        frozen = epoch < config.freeze_epochs
        if optimizer is None or epoch == config.freeze_epochs:
            _set_trainable(model, frozen)
            # DDP fixes the trainable parameters when it wraps: wrap again at each phase.
            net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
            optimizer, scheduler = _make_optimizer(model, config, frozen, steps_per_epoch)
            # The saved optimiser belongs to the saved phase: not reusable across the unfreeze.
            same_phase = epoch != config.freeze_epochs or epoch == 0
            if epoch == state.next_epoch and state.optim_state is not None and same_phase:
                optimizer.load_state_dict(state.optim_state)
                scheduler.load_state_dict(state.sched_state)
                precision.load_state_dict(state.scaler_state)
        torch.manual_seed(config.seed * 100_003 + epoch + 7919 * distributed.rank())  # dropout and the like
        sampler.set_epoch(epoch)
        if callback:
            callback(
                "epoch_start", {"epoch": epoch, "total_epochs": total_epochs, "steps": len(loader), "frozen": frozen}
            )
        train_loss = train_epoch(
            net, model, loader, optimizer, scheduler, precision, config, cw, loss_weights, state, epoch, callback
        )
        state.reduce_epoch(epoch)
        val_logits, _ = engine.predict(model, val_ds, loader=val_loader)
        val_prob = softmax(val_logits)[:, 1]
        val = binary_metrics(np.asarray(val_ds.labels), val_prob)
        value = val[config.monitor]
        record = {"epoch": epoch, "frozen": frozen, "train_loss": train_loss,
                  "lr": optimizer.param_groups[0]["lr"], "val": val}  # fmt: skip
        improved = not math.isnan(value) and (state.best_value is None or value > state.best_value)
        if improved:
            state.best_value, state.best_epoch = float(value), epoch
        state.history.append(record)
        state.next_epoch = epoch + 1
        if distributed.is_main():
            if improved:
                save_state(out / MODEL_FILE, model.state_dict())
            _append_history(out / HISTORY_FILE, state.history)
            _save_dynamics(out / DYNAMICS_FILE, state)
            best_value = float("nan") if state.best_value is None else state.best_value
            checkpoint = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": precision.state_dict(),
                "next_epoch": epoch + 1,
                "best_epoch": state.best_epoch,
                "best_value": best_value,
            }
            save_state(out / CHECKPOINT_FILE, checkpoint)
        distributed.barrier()
        if callback:
            callback("epoch_end", record | {"improved": improved})
    if state.best_epoch is None:  # every epoch's monitor was NaN: keep the last model
        if distributed.is_main():
            save_state(out / MODEL_FILE, model.state_dict())
        distributed.barrier()
        state.best_epoch, state.best_value = total_epochs - 1, float("nan")
    return FitResult(state.best_epoch, state.best_value, state.history, out / MODEL_FILE)


def _draw_weights(labels, config: TrainConfig, sample_weights) -> np.ndarray | None:
    """Per-sample draw probabilities (unnormalised) or None for plain shuffling."""
    w = class_balance_weights(labels) if config.sampling == "oversample" else None
    if sample_weights is not None and config.apply == "sampler":
        w = sample_weights if w is None else w * sample_weights
    return w


class _TrainState:
    def __init__(self, total_epochs: int, n_train: int):
        self.next_epoch = 0
        self.best_epoch: int | None = None
        self.best_value: float | None = None
        self.history: list[dict] = []
        self.n_train = n_train
        self.losses = np.full((total_epochs, n_train), np.nan, dtype=np.float32)
        self.p_true = np.full((total_epochs, n_train), np.nan, dtype=np.float32)
        self.optim_state = None
        self.sched_state = None
        self.scaler_state: dict[str, Any] = {}

    def reduce_epoch(self, epoch: int) -> None:
        """Combine the ranks' records of one epoch (a mean where a sample was drawn on several)."""
        for values in (self.losses, self.p_true):
            row = values[epoch].astype(np.float64)
            seen = np.isfinite(row)
            sums = distributed.all_reduce_sum(np.where(seen, row, 0.0))
            counts = distributed.all_reduce_sum(seen.astype(np.float64))
            with np.errstate(invalid="ignore", divide="ignore"):
                values[epoch] = np.where(counts > 0, sums / counts, np.nan)

    def load(self, ckpt: dict, out: Path) -> None:
        """Take up the state of ``out``'s resume point and its history and dynamics; any of them damaged is
        one :class:`HardmineError` naming the file (deleting the resume point restarts the round cleanly)."""
        hint = f"delete {out / CHECKPOINT_FILE} to restart this round's training from its first epoch"
        try:
            self._load(ckpt, out)
        except (KeyError, TypeError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # .npz: a zip
            detail = str(exc).splitlines()[0][:120] if str(exc) else "no detail"
            raise HardmineError(f"the resume point in {out} is damaged ({type(exc).__name__}: {detail}); "
                                f"{hint}") from None

    def _load(self, ckpt: dict, out: Path) -> None:
        self.next_epoch = int(ckpt["next_epoch"])
        self.best_epoch = int(ckpt["best_epoch"]) if ckpt["best_epoch"] is not None else None
        best = float(ckpt["best_value"])
        self.best_value = None if math.isnan(best) else best
        self.optim_state, self.sched_state = ckpt["optimizer"], ckpt["scheduler"]
        self.scaler_state = ckpt.get("scaler") or {}
        history_path = out / HISTORY_FILE
        if history_path.exists():
            lines = history_path.read_text().splitlines()
            self.history = [json.loads(line) for line in lines][: self.next_epoch]
        dyn = out / DYNAMICS_FILE
        if dyn.exists():
            with np.load(dyn, allow_pickle=False) as data:
                rows = min(self.next_epoch, len(data["loss"]), len(self.losses))
                if data["loss"].ndim == 2 and data["loss"].shape[1] == self.losses.shape[1]:
                    self.losses[:rows] = data["loss"][:rows]
                    self.p_true[:rows] = data["p_true"][:rows]


def _make_optimizer(model, config: TrainConfig, frozen: bool, steps_per_epoch: int):
    params = model.head_parameters() if frozen else list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, steps_per_epoch)
    phase_epochs = config.freeze_epochs if frozen else config.epochs
    total = steps_per_epoch * phase_epochs
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    # Resuming mid-phase: the scheduler is fast-forwarded by load_state_dict.
    return optimizer, scheduler


def _set_trainable(model, frozen: bool) -> None:
    head = set(map(id, model.head_parameters()))
    for p in model.parameters():
        p.requires_grad_(not frozen or id(p) in head)


def train_epoch(net, model, loader, optimizer, scheduler, precision, config, cw, loss_weights, state, epoch,
                 callback):  # fmt: skip
    """One epoch; ``net`` is ``model`` or its DDP wrapper. Returns the mean training loss over all ranks.

    Nothing waits for the device inside the loop: per-sample records and the loss sum stay on the
    device and come to the host once, at the epoch's end; a ``batch`` callback gets the step's loss as
    a 0-d device tensor, so only a callback that reads it waits.
    """
    model.train()
    device = precision.device
    losses = torch.full((state.n_train,), float("nan"), device=device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    if loss_weights is not None:
        loss_weights = loss_weights.to(device)
    for step, (images, targets, index) in enumerate(loader):
        images = to_device(images, device)
        targets = targets.to(device, non_blocking=True)
        index = index.to(device, non_blocking=True)
        logits, _ = forward(net, images, device, precision.dtype)
        loss_vec = per_sample_loss(logits, targets, config.loss, cw, config.focal_gamma)
        loss = weighted_mean(loss_vec, loss_weights[index] if loss_weights is not None else None)
        optimizer.zero_grad(set_to_none=True)
        precision.step(loss, optimizer)
        scheduler.step()
        with torch.no_grad():
            losses[index] = per_sample_loss(logits.detach(), targets, "ce").float()
            total += loss.detach().double() * len(targets)
        count += len(targets)
        if callback:
            callback("batch", {"epoch": epoch, "step": step + 1, "steps": len(loader), "loss": loss.detach()})
    ce = losses.cpu().numpy()
    state.losses[epoch] = ce
    state.p_true[epoch] = np.exp(-ce)
    total, count = distributed.all_reduce_sum(np.array([float(total), count]))
    return float(total / max(count, 1))


class Precision:
    """Autocast and, for fp16, loss scaling (:func:`~hardmine.engine.inference.autocast_dtype` chooses the
    dtype); ``step`` is ``backward`` plus ``optimizer.step`` through the scaler when there is one."""

    def __init__(self, precision: str, device: torch.device):
        self.device = device
        self.dtype = autocast_dtype(precision, device)
        # fp16's narrow range underflows small gradients: scale the loss (bf16 has fp32's range)
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None

    def step(self, loss: torch.Tensor, optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The resume point, read with ``weights_only``; anything else is one error saying what to do."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
            raise ValueError("it holds no model state")
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for damaged or hostile files
        raise HardmineError(f"{path} is damaged or not a hardmine checkpoint ({damage_reason(exc)}); "
                            "delete it to restart this round's training from its first epoch") from None  # fmt: skip
    return ckpt


def save_state(path: Path, obj: Any) -> None:
    """``torch.save`` of ``obj`` to ``path``, atomically; a write that fails (a full disk: torch says only
    "enforce fail at inline_container.cc") is one :class:`HardmineError` naming the path, and the file
    that was there stays as it was."""
    try:
        with atomic_path(path, ".pt") as tmp:
            torch.save(obj, tmp)
    except RuntimeError as exc:
        free = shutil.disk_usage(Path(path).parent).free // 2**20
        raise HardmineError(f"cannot write {path} ({free} MiB free on its disk; {str(exc).splitlines()[0][:120]}); "
                            "free some space, then --resume") from None  # fmt: skip


def _append_history(path: Path, history: list[dict]) -> None:
    text = "".join(json.dumps(_nan_to_none(h)) + "\n" for h in history)
    write_bytes(path, text.encode())


def _nan_to_none(obj):
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def _save_dynamics(path: Path, state: _TrainState) -> None:
    with atomic_path(path, ".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, loss=state.losses, p_true=state.p_true)
