"""The configuration schema of a run: one dataclass per concern, validated once.

A :class:`RunConfig` is what ``config.json`` holds: data, training, threshold,
scoring, mining and round options. Every section validates itself and raises
:class:`hardmine.core.errors.HardmineError` naming the bad value and the valid
choices; :meth:`RunConfig.validate` checks them all before anything is written
or trained (the names of plug-ins a floor above registers, ``--strategy`` and
``--update``, are checked there: :func:`hardmine.strategies.check_rounds`, which
:func:`hardmine.run.opened.validate` runs with it). Defaults that depend on the
rest are resolved in ``__post_init__``, so ``config.json`` holds concrete values:
the model's weights and image size, the update mode of a frozen backbone, and the
data source's ``--trusted`` rule. No torch here.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from hardmine.core.errors import HardmineError
from hardmine.core.metrics import COST_FN, COST_FP, METRIC_KEYS, THRESHOLD_RULES, check_costs, choose_threshold
from hardmine.core.mining import MiningConfig
from hardmine.data.images import AUGMENTS
from hardmine.data.sources import source_names, source_trust
from hardmine.record.layout import SPLIT_FILE

LOSSES = ("ce", "weighted-ce", "focal")
CLASS_WEIGHTING = ("inverse", "effective")
SAMPLING = ("none", "oversample")
SCHEDULES = ("onecycle", "cosine")
APPLY = ("sampler", "loss")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SCORE_SOURCES = ("insample", "oof", "dynamics")
TRIAGE_EVIDENCE = ("head", "networks")  # what the label suspicion is built from (see hardmine.core.suspicion)
SELECT_BY = ("sens_at_spec90", "auprc", "auroc", "cost")
# Smallest input a model reduces without error (tiny: four 2x poolings; torchvision models: 32 px).
MIN_IMAGE_SIZE = {"tiny": 16, "other": 32}
DEFAULT_MODEL = "efficientnet_lite0"
PRETRAINED_IMAGE_SIZE, TINY_IMAGE_SIZE = 224, 64
MAX_IMAGE_SIZE = 4096
# Options that change nothing about the results: ignored when comparing configurations.
# ("amp" was the precision switch of runs made before --precision)
RUNTIME_ONLY = {"device", "num_workers", "precision", "threads", "amp"}


def check_choice(name: str, value: Any, valid: tuple[str, ...]) -> None:
    """Raise :class:`HardmineError` unless ``value`` is one of ``valid``."""
    if value not in valid:
        raise HardmineError(f"{name}={value!r} is not valid; expected one of {', '.join(valid)}")


def check_number(option: str, value: float, *, low: float = 0.0, above: bool = False, high: float = math.inf) -> None:
    """Raise :class:`HardmineError` unless ``value`` is a finite number >= ``low`` (> ``low`` with ``above``)
    and at most ``high``."""
    ok = math.isfinite(value) and (value > low if above else value >= low)
    if not ok:
        raise HardmineError(f"{option} {value} is not valid; expected a finite number {'>' if above else '>='} {low:g}")
    if value > high:
        raise HardmineError(f"{option} {value} is not valid; expected a value up to {high:g}")


# upper bounds of counts and rates: far above any sensible run, low enough that a typo (1e12 epochs, an lr of
# 1e308) is one line instead of a crash or a run that never ends
MAX_EPOCHS = 100_000
MAX_WORKERS = 1024
MAX_THREADS = 4096
MAX_BATCH = 1 << 20
MAX_SEED = 2**32 - 1  # what numpy and torch both take
MAX_LR = 100.0


def check_count(option: str, value: int, low: int, high: int) -> None:
    """Raise :class:`HardmineError` unless ``low <= value <= high``, naming both bounds."""
    if not low <= value <= high:
        raise HardmineError(f"{option} {value} is not valid; expected {low} to {high}")


def check_device(name: str) -> None:
    """Raise :class:`HardmineError` unless ``name`` is auto, cpu, mps, cuda or cuda:N."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise HardmineError(f"--device {name!r} is not valid; expected auto, cpu, mps, cuda or cuda:N")


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
    split_from: str | None = None  # an earlier run whose split this run takes (same test lesions)

    def validate(self) -> None:
        check_choice("source", self.source, source_names())
        split = np.asarray(self.split, dtype=float)
        if split.shape != (3,) or (split < 0).any() or abs(split.sum() - 1) > 1e-6:
            raise HardmineError(f"split fractions {list(self.split)} must be three values summing to 1")
        check_count("--split-seed", self.split_seed, 0, MAX_SEED)
        if self.split_from is not None and not (Path(self.split_from) / SPLIT_FILE).is_file():
            raise HardmineError(f"--split-from {self.split_from} holds no {SPLIT_FILE}; expected an earlier run's "
                                "folder")  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that decides how a model is trained (JSON-serialisable)."""

    # the default: an ImageNet-pretrained EfficientNet-Lite0 at its native 224 px (README, "The model")
    model: str = DEFAULT_MODEL
    weights: str | None = None  # None: the model's own default (imagenet; none for the tiny model)
    image_size: int | None = None  # None: the model's own default (224; 64 for the tiny model)
    augment: str = "dermoscopy"  # dermoscopy | light | none (see hardmine.data.sources.build_transform)
    epochs: int = 20
    freeze_epochs: int = 0
    # keep the starting (pretrained) backbone: round 0 fits the head on its cached embeddings, no epochs
    frozen: bool = False
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    loss: str = "ce"
    class_weighting: str = "inverse"
    focal_gamma: float = 2.0
    sampling: str = "oversample"
    apply: str = "sampler"
    monitor: str = "auroc"
    seed: int = 0
    device: str = "auto"
    num_workers: int | None = None
    precision: str = "auto"  # autocast: auto (bf16 on GPUs that run it natively, else fp16; fp32 on CPU)
    threads: int | None = None  # torch CPU threads (None: the cores free when the run starts)

    def __post_init__(self) -> None:
        # a config always holds concrete values (config.json says what was trained)
        if self.weights is None:
            self.weights = "none" if self.model == "tiny" else "imagenet"
        if self.image_size is None:
            self.image_size = TINY_IMAGE_SIZE if self.model == "tiny" else PRETRAINED_IMAGE_SIZE

    def probability_prior(self, positive_share: float) -> float:
        """The positive share a model trained this way has its probabilities at: 0.5 when training sees the
        classes as if 50:50 (oversampling, or inverse class-weighted CE), else the data's ``positive_share``."""
        balanced = self.sampling == "oversample" or (self.loss == "weighted-ce" and self.class_weighting == "inverse")
        return 0.5 if balanced else positive_share

    def validate(self) -> None:
        choices = {
            "loss": LOSSES, "class_weighting": CLASS_WEIGHTING, "sampling": SAMPLING,
            "schedule": SCHEDULES, "apply": APPLY, "monitor": METRIC_KEYS,
        }  # fmt: skip
        for name, valid in choices.items():
            check_choice(name, getattr(self, name), valid)
        check_choice("augment", self.augment, AUGMENTS)
        check_count("--epochs", self.epochs, 1, MAX_EPOCHS)
        check_count("--freeze-epochs", self.freeze_epochs, 0, MAX_EPOCHS)
        check_count("--batch-size", self.batch_size, 1, MAX_BATCH)
        check_number("--lr", self.lr, above=True, high=MAX_LR)
        check_number("--weight-decay", self.weight_decay)
        check_number("--focal-gamma", self.focal_gamma)
        check_count("--seed", self.seed, 0, MAX_SEED)
        self._validate_model()
        smallest = MIN_IMAGE_SIZE["tiny" if self.model == "tiny" else "other"]
        if not smallest <= self.image_size <= MAX_IMAGE_SIZE:
            raise HardmineError(f"--image-size {self.image_size} is not valid for model {self.model}; expected "
                                f"{smallest} to {MAX_IMAGE_SIZE} pixels")  # fmt: skip
        check_device(self.device)
        if self.num_workers is not None:
            check_count("--workers", self.num_workers, 0, MAX_WORKERS)
        check_choice("precision", self.precision, PRECISIONS)
        if self.threads is not None:
            check_count("--threads", self.threads, 1, MAX_THREADS)

    def _validate_model(self) -> None:
        if self.weights == "imagenet" and self.model == "tiny":
            raise HardmineError("--weights imagenet: the tiny model has no ImageNet weights; use none or a PATH")
        if self.frozen and self.weights == "none":
            raise HardmineError("--frozen keeps the starting backbone, and --weights none starts from random "
                                "weights; use --weights imagenet (or a PATH) with --frozen")  # fmt: skip
        if self.weights not in ("none", "imagenet") and not Path(self.weights).is_file():
            raise HardmineError(f"--weights {self.weights}: file not found; expected none, imagenet or a state "
                                "dict file")  # fmt: skip


@dataclass
class ThresholdConfig:
    """How the decision threshold is chosen on validation data."""

    rule: str = "cost"
    cost_fn: float = COST_FN
    cost_fp: float = COST_FP
    target: float = 0.9

    def validate(self) -> None:
        check_choice("threshold rule", self.rule, THRESHOLD_RULES)
        check_costs(self.cost_fn, self.cost_fp)
        if not 0 < self.target <= 1:
            raise HardmineError(f"target sensitivity {self.target} must be in (0, 1]")

    def choose(self, labels: np.ndarray, prob_pos: np.ndarray) -> float:
        return choose_threshold(labels, prob_pos, self.rule, self.cost_fn, self.cost_fp, self.target)


@dataclass
class ScoringConfig:
    """Where the training-set probabilities that drive mining come from."""

    source: str = "insample"  # insample | oof | dynamics (see hardmine.engine.scoring)
    # label-suspicion evidence: head (out-of-fold head on the round's embeddings) | networks (trained out of fold)
    triage: str = "head"
    oof_folds: int = 4
    oof_epochs: int | None = None  # epochs of each out-of-fold network (default: round 0's --epochs)
    tta: bool = False
    embedding_dtype: str = "float32"
    audit_sim: float = 0.98  # cosine similarity above which a cross-split pair is listed

    def validate(self) -> None:
        check_choice("score source", self.source, SCORE_SOURCES)
        check_choice("triage evidence", self.triage, TRIAGE_EVIDENCE)
        check_choice("embedding dtype", self.embedding_dtype, ("float32", "float16"))
        if self.trains_networks() and self.oof_folds < 2:
            raise HardmineError(f"--oof needs at least 2 folds; got {self.oof_folds}")
        if self.oof_epochs is not None:
            check_count("--oof-epochs", self.oof_epochs, 1, MAX_EPOCHS)
        if not 0 < self.audit_sim <= 1:
            raise HardmineError(f"--audit-sim {self.audit_sim} is not valid; expected a cosine similarity in (0, 1]")

    def trains_networks(self) -> bool:
        """Whether scoring trains networks out of fold: for the seeds (``oof``) or for the triage (``networks``);
        either way their probabilities are the label-suspicion evidence."""
        return self.source == "oof" or self.triage == "networks"


@dataclass
class RoundsConfig:
    """How rounds follow each other."""

    strategy: str = "head"  # a name in hardmine.strategies.STRATEGIES (checked by strategies.check_rounds)
    # epochs of each finetune round (default: a quarter of train.epochs) or retrain round (default: train.epochs)
    round_epochs: int | None = None
    round_lr: float | None = None  # peak learning rate when fine-tuning (default: train.lr / 3)
    select_by: str = "sens_at_spec90"
    guard_tol: float = 0.02
    # also train round 0's recipe for the rounds' whole epoch budget; hand it back when no round beats it
    reference: bool = True
    # how an active-learning step trains on every answer so far: a name in hardmine.strategies.UPDATES
    # (None: RunConfig makes it head for a frozen backbone, else finetune)
    update: str | None = None
    # weight a step's training by the mining curriculum of the step before (hard cases up, suspects out)
    step_curriculum: bool = False

    def validate(self) -> None:
        """The options' own checks; the strategy and update names are the strategies floor's
        (:func:`hardmine.strategies.check_rounds`, which :func:`hardmine.run.opened.validate` runs too)."""
        check_choice("--select-by", self.select_by, SELECT_BY)
        if self.round_epochs is not None:
            check_count("--round-epochs", self.round_epochs, 1, MAX_EPOCHS)
        if self.round_lr is not None:
            check_number("--round-lr", self.round_lr, above=True, high=MAX_LR)
        check_number("--guard-tol", self.guard_tol)


# options renamed since runs were made: a saved config.json of an older run keeps its value
RENAMED = {("rounds", "budget_guard"): "reference"}

SECTIONS: dict[str, type] = {
    "data": DataConfig, "train": TrainConfig, "threshold": ThresholdConfig,
    "scoring": ScoringConfig, "mining": MiningConfig, "rounds": RoundsConfig,
}  # fmt: skip


@dataclass
class RunConfig:
    """The whole configuration of a run, as ``config.json`` holds it."""

    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    rounds: RoundsConfig = field(default_factory=RoundsConfig)

    def __post_init__(self) -> None:
        if self.rounds.update is None:  # a frozen backbone's steps refit the head; others fine-tune
            self.rounds = replace(self.rounds, update="head" if self.train.frozen else "finetune")
        if self.mining.trusted is None:  # the data source's own rule: HAM10000 trusts dx_type=histo
            data = self.data
            self.mining = replace(self.mining, trusted=source_trust(data.data, data.source, data.metadata))

    def to_dict(self) -> dict[str, Any]:
        return {name: asdict(getattr(self, name)) for name in SECTIONS}

    def validate(self) -> None:
        """Check every section; the first problem raises :class:`HardmineError`."""
        for name in SECTIONS:
            getattr(self, name).validate()
        rounds = self.rounds
        if self.train.frozen and (rounds.strategy, rounds.update) != ("head", "head"):
            raise HardmineError(f"--frozen keeps the backbone, so rounds and active-learning steps refit the head: "
                                f"--strategy head --update head (not --strategy {rounds.strategy} --update "
                                f"{rounds.update})")  # fmt: skip

    def unused_options(self) -> list[str]:
        """Options set to a value the rest of the configuration makes do nothing, one sentence each."""
        unused = []
        rounds = self.rounds
        if rounds.strategy == "head" and (rounds.round_epochs is not None or rounds.round_lr is not None):
            unused.append("--round-epochs and --round-lr do nothing with --strategy head (it trains no epochs)")
        if self.mining.quarantine != "suspicion" and self.mining.suspicion_threshold is not None:
            unused.append(f"--suspicion-threshold does nothing with --quarantine {self.mining.quarantine}")
        if self.train.frozen and (self.train.epochs != TrainConfig.epochs or self.train.freeze_epochs):
            unused.append("--epochs and --freeze-epochs do nothing with --frozen (the head is fitted, no epochs)")
        if self.data.split_from is not None and self.data.split_seed != 0:
            unused.append("--split-seed does nothing with --split-from (the earlier run's split is taken as it is)")
        return unused

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Rebuild from ``config.json`` (unknown keys, e.g. versions, are ignored)."""
        parts = {}
        for name, kind in SECTIONS.items():
            section = raw.get(name) or {}
            if not isinstance(section, dict):
                raise HardmineError(f"config section {name!r} holds {type(section).__name__}; expected an object")
            known = {f.name: f for f in fields(kind)}
            section = {RENAMED.get((name, k), k): v for k, v in section.items()}
            values = {k: v for k, v in section.items() if k in known}
            for key, value in values.items():
                spec = kind.__dataclass_fields__[key]
                _check_type(f"{name}.{key}", value, spec.default, spec.type)
            parts[name] = kind(**values)
        parts["data"].split = tuple(parts["data"].split)
        return cls(**parts)


def _check_type(name: str, value: Any, default: Any, annotation: Any = None) -> None:
    """Refuse a saved value whose type is not its option's (``image_size: "big"``); None is allowed where the
    default is None (other values then have the annotation's type), an int where a float is expected."""
    if default is MISSING or value is None and default is None:
        return
    if default is None:  # an optional option (``int | None``): its type is the annotation's first
        default = {"int": 0, "float": 0.0, "str": "", "bool": False}.get(str(annotation).split("|")[0].strip())
        if default is None:
            return
    expected = float if isinstance(default, float) else type(default)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected in (tuple, list):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, expected)
    if not ok:
        kind = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(expected, "a list")
        raise HardmineError(f"config value {name}={value!r} is not valid; expected {kind}")


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a configuration that decides results (runtime-only options dropped)."""
    config = json.loads(json.dumps(config))  # as it reads back from config.json (tuples become lists)
    return {
        section: {k: v for k, v in values.items() if k not in RUNTIME_ONLY}
        for section, values in config.items()
        if section in SECTIONS
    }


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """``"section.key: A then, B now"`` for every key where two nested dicts differ, in key order."""
    found: list[str] = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            found += differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            found.append(f"{prefix}{key}: {va!r} then, {vb!r} now")
    return found
