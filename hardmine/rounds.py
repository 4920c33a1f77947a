"""Run directory and round orchestration: configuration, split, train/evaluate steps.

A run directory holds ``config.json`` (the resolved configuration, versions,
seed and data fingerprint), ``split.csv``, ``manifest.json`` (steps completed)
and one ``round-RRR/`` folder per round. This module wires the other modules
together; the algorithms live in them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hardmine import __version__
from hardmine.data import ImageDataset, LoadReport, load_samples, make_or_load_split
from hardmine.errors import HardmineError
from hardmine.io import read_json, write_json
from hardmine.metrics import THRESHOLD_RULES, binary_metrics, choose_threshold, softmax
from hardmine.train import Callback, TrainConfig, fit, predict, resolve_device

# Options that change nothing about the results: ignored when comparing configurations.
RUNTIME_ONLY = {"device", "num_workers"}


@dataclass
class DataConfig:
    """Where the data is and how it maps to the binary task."""

    data: str = ""
    source: str = "auto"
    metadata: str | None = None
    positive: str | None = None
    negative: str | None = None
    skip_bad: bool = False
    verify: bool = True
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0


@dataclass
class ThresholdConfig:
    """How the decision threshold is chosen on validation data."""

    rule: str = "cost"
    cost_fn: float = 10.0
    cost_fp: float = 1.0
    target: float = 0.9

    def validate(self) -> None:
        if self.rule not in THRESHOLD_RULES:
            raise HardmineError(
                f"threshold rule {self.rule!r} is not valid; expected one of {', '.join(THRESHOLD_RULES)}"
            )
        if self.cost_fn <= 0 or self.cost_fp <= 0:
            raise HardmineError(f"costs must be positive; got {self.cost_fn} and {self.cost_fp}")

    def choose(self, labels: np.ndarray, prob_pos: np.ndarray) -> float:
        return choose_threshold(labels, prob_pos, self.rule, self.cost_fn, self.cost_fp, self.target)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"data": asdict(self.data), "train": asdict(self.train), "threshold": asdict(self.threshold)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        def build(kind, values):
            names = {f.name for f in fields(kind)}
            return kind(**{k: v for k, v in (values or {}).items() if k in names})

        data = build(DataConfig, raw.get("data"))
        data.split = tuple(data.split)
        return cls(data, build(TrainConfig, raw.get("train")), build(ThresholdConfig, raw.get("threshold")))


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {
        section: {k: v for k, v in values.items() if k not in RUNTIME_ONLY}
        for section, values in config.items()
        if section in ("data", "train", "threshold", "mining")
    }


def data_fingerprint(table: pd.DataFrame) -> str:
    """Hash of ids, labels and groups: changes when the data a run was made on changes."""
    digest = hashlib.sha256()
    for col in ("id", "label", "group"):
        digest.update("\x1f".join(table[col].astype(str)).encode())
    return digest.hexdigest()[:16]


def _versions() -> dict[str, str]:
    import torch
    import torchvision

    return {"hardmine": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__}  # fmt: skip


class Run:
    """An opened run directory with its data, split and configuration."""

    def __init__(self, root: Path, config: RunConfig, table: pd.DataFrame, split: pd.Series, report: LoadReport):
        self.root = root
        self.config = config
        self.table = table
        self.split = split
        self.load_report = report

    # ---------------------------------------------------------------- creation

    @classmethod
    def create(cls, root: str | os.PathLike, config: RunConfig, overwrite: bool = False) -> Run:
        """Open ``root`` for ``config``: a new run, or an existing one with the same config.

        An existing run with a different configuration is refused unless
        ``overwrite``, which deletes it first (only if it looks like a hardmine run).
        """
        root = Path(root)
        config.train.validate()
        config.threshold.validate()
        config_path = root / "config.json"
        if config_path.exists():
            saved = read_json(config_path)
            if _comparable(saved) != _comparable(config.to_dict()):
                if not overwrite:
                    diff = _first_difference(_comparable(saved), _comparable(config.to_dict()))
                    raise HardmineError(
                        f"{root} holds a run with a different configuration ({diff}); "
                        "use --overwrite to replace it or choose another --out"
                    )
                shutil.rmtree(root)
            elif overwrite:
                shutil.rmtree(root)
        elif root.exists() and any(root.iterdir()):
            raise HardmineError(f"{root} exists and is not a hardmine run directory; choose another --out")
        root.mkdir(parents=True, exist_ok=True)
        table, report = _load(config.data)
        fingerprint = data_fingerprint(table)
        if config_path.exists():
            saved = read_json(config_path)
            if saved.get("data_fingerprint") != fingerprint:
                raise HardmineError(
                    f"the data in {config.data.data} changed since {root} was made "
                    "(fingerprint differs); use --overwrite or another --out"
                )
        else:
            write_json(config_path, config.to_dict() | {"versions": _versions(), "seed": config.train.seed,
                                                        "data_fingerprint": fingerprint})  # fmt: skip
        split = make_or_load_split(table, root / "split.csv", config.data.split, config.data.split_seed)
        return cls(root, config, table, split, report)

    @classmethod
    def open(cls, root: str | os.PathLike) -> Run:
        """Re-open an existing run directory (reads its config and split)."""
        root = Path(root)
        config_path = root / "config.json"
        if not config_path.exists():
            raise HardmineError(f"{root} is not a hardmine run: {config_path.name} not found")
        config = RunConfig.from_dict(read_json(config_path))
        table, report = _load(config.data)
        if not (root / "split.csv").exists():
            raise HardmineError(f"{root}/split.csv is missing; the run is incomplete")
        split = make_or_load_split(table, root / "split.csv")
        return cls(root, config, table, split, report)

    # ---------------------------------------------------------------- helpers

    def round_dir(self, r: int) -> Path:
        return self.root / f"round-{r:03d}"

    def rounds_done(self) -> list[int]:
        return sorted(
            int(p.name.split("-")[1]) for p in self.root.glob("round-[0-9][0-9][0-9]") if (p / "metrics.json").exists()
        )

    def part(self, name: str) -> pd.DataFrame:
        return self.table[self.split == name].reset_index(drop=True)

    def dataset(self, name: str, train: bool = False) -> ImageDataset:
        return ImageDataset(self.part(name), self.config.train.image_size, train=train)

    def build_model(self):
        from hardmine.models import build_model

        return build_model(self.config.train.model, self.config.train.weights, seed=self.config.train.seed)

    def load_model(self, checkpoint: str | os.PathLike):
        from hardmine.models import build_model, load_weights

        model = build_model(self.config.train.model, "none")
        load_weights(model, checkpoint)
        return model


def _load(data: DataConfig):
    return load_samples(
        data.data, data.source, data.positive, data.negative, data.metadata,
        verify_images=data.verify, skip_bad=data.skip_bad,
    )  # fmt: skip


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            found = _first_difference(va, vb, f"{prefix}{key}.")
            if found:
                return found
        elif va != vb and not (isinstance(va, list) and isinstance(vb, tuple) and list(vb) == va):
            return f"{prefix}{key}: {va!r} then, {vb!r} now"
    return ""


# -------------------------------------------------------------------- steps


def train_round(
    run: Run,
    r: int,
    sample_weights: np.ndarray | None = None,
    init_checkpoint: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> dict[str, Any]:
    """Train round ``r`` into ``round-RRR/`` and evaluate it on validation.

    Returns the validation metrics (threshold tuned by the run's rule), also
    written to ``round-RRR/metrics.json``.
    """
    out = run.round_dir(r)
    model = run.load_model(init_checkpoint) if init_checkpoint else run.build_model()
    train_ds = run.dataset("train", train=True)
    val_ds = run.dataset("val")
    fit(model, train_ds, val_ds, run.config.train, out, sample_weights=sample_weights, callback=callback)
    return evaluate(run, r, "val", callback=callback)


def evaluate(
    run: Run,
    r: int,
    split: str = "val",
    checkpoint: str | os.PathLike | None = None,
    ci: bool = False,
    plots: bool = False,
    callback: Callback | None = None,
) -> dict[str, Any]:
    """Metrics of round ``r``'s model on ``split``.

    On ``val`` the threshold is tuned by the run's rule and saved in
    ``round-RRR/metrics.json``; on ``test`` that saved threshold is used (never
    tuned on test) and the result goes to ``round-RRR/metrics_test.json``.
    With ``plots``, ROC, PR and confusion-matrix PNGs are written beside them.
    """
    if split not in ("val", "test"):
        raise HardmineError(f"split {split!r} is not valid; expected val or test")
    out = run.round_dir(r)
    checkpoint = Path(checkpoint) if checkpoint else out / "model.pt"
    if not checkpoint.exists():
        raise HardmineError(f"checkpoint {checkpoint} not found; train round {r} first")
    model = run.load_model(checkpoint)
    ds = run.dataset(split)
    cfg = run.config.train
    device = resolve_device(cfg.device)
    logits, _ = predict(model, ds, cfg.batch_size * 2, device, cfg.amp, cfg.num_workers, callback=callback)
    prob = softmax(logits)[:, 1]
    labels = ds.labels
    if split == "val":
        threshold = run.config.threshold.choose(labels, prob)
    else:
        val_path = out / "metrics.json"
        if not val_path.exists():
            raise HardmineError(f"{val_path} not found: evaluate on val first to tune the threshold")
        threshold = float(read_json(val_path)["threshold"])
    metrics = binary_metrics(labels, prob, threshold, ci=ci)
    metrics["threshold_rule"] = run.config.threshold.rule
    write_json(out / ("metrics.json" if split == "val" else "metrics_test.json"), metrics)
    if plots:
        from hardmine.plots import evaluation_plots

        evaluation_plots(labels, prob, threshold, out, split)
    return metrics
