"""Run directory and round orchestration: configuration, split, train/evaluate steps.

A run directory holds ``config.json`` (the resolved configuration, versions,
seed and data fingerprint), ``split.csv``, ``manifest.json`` (steps completed)
and one ``round-RRR/`` folder per round. This module wires the other modules
together; the algorithms live in them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hardmine import __version__, distributed
from hardmine.data import ImageDataset, LoadReport, load_samples, make_or_load_split
from hardmine.errors import HardmineError
from hardmine.io import read_json, write_csv, write_json, write_parquet_if_available
from hardmine.metrics import THRESHOLD_RULES, binary_metrics, choose_threshold, softmax
from hardmine.mining import MiningConfig
from hardmine.scoring import SCORE_SOURCES
from hardmine.train import Callback, TrainConfig, fit, predict, resolve_device

# Options that change nothing about the results: ignored when comparing configurations.
RUNTIME_ONLY = {"device", "num_workers"}
SELECT_BY = ("sens_at_spec90", "auprc", "auroc", "cost")


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
class ScoringConfig:
    """Where the training-set probabilities that drive mining come from."""

    source: str = "insample"  # insample | oof | dynamics (see hardmine.scoring)
    oof_folds: int = 4
    tta: bool = False
    embedding_dtype: str = "float32"
    audit_sim: float = 0.98  # cosine similarity above which a cross-split pair is listed

    def validate(self) -> None:
        if self.source not in SCORE_SOURCES:
            raise HardmineError(
                f"score source {self.source!r} is not valid; expected one of {', '.join(SCORE_SOURCES)}"
            )
        if self.source == "oof" and self.oof_folds < 2:
            raise HardmineError(f"--oof needs at least 2 folds; got {self.oof_folds}")


@dataclass
class RoundsConfig:
    """How rounds follow each other."""

    round_epochs: int | None = None  # epochs of each fine-tuning round (default: a quarter of train.epochs)
    round_lr: float | None = None  # peak learning rate when fine-tuning (default: train.lr / 3)
    from_scratch: bool = False
    select_by: str = "sens_at_spec90"
    guard_tol: float = 0.02

    def validate(self) -> None:
        if self.select_by not in SELECT_BY:
            raise HardmineError(f"--select-by {self.select_by!r} is not valid; expected one of {', '.join(SELECT_BY)}")
        if self.round_epochs is not None and self.round_epochs < 1:
            raise HardmineError(f"--round-epochs must be at least 1; got {self.round_epochs}")

    def epochs_per_round(self, train_epochs: int) -> int:
        """Epochs of each mining round: fine-tuning needs a fraction of round 0's budget (all of it from scratch)."""
        if self.from_scratch:
            return train_epochs
        return self.round_epochs or max(1, train_epochs // 4)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    rounds: RoundsConfig = field(default_factory=RoundsConfig)

    SECTIONS = ("data", "train", "threshold", "scoring", "mining", "rounds")

    def to_dict(self) -> dict[str, Any]:
        return {name: asdict(getattr(self, name)) for name in self.SECTIONS}

    def validate(self) -> None:
        try:
            self.train.validate()
            self.threshold.validate()
            self.scoring.validate()
            self.mining.validate()
            self.rounds.validate()
        except ValueError as exc:
            raise HardmineError(str(exc)) from None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        kinds = {"data": DataConfig, "train": TrainConfig, "threshold": ThresholdConfig,
                 "scoring": ScoringConfig, "mining": MiningConfig, "rounds": RoundsConfig}  # fmt: skip
        parts = {}
        for name, kind in kinds.items():
            names = {f.name for f in fields(kind)}
            parts[name] = kind(**{k: v for k, v in (raw.get(name) or {}).items() if k in names})
        parts["data"].split = tuple(parts["data"].split)
        return cls(**parts)


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    config = json.loads(json.dumps(config))  # as it reads back from config.json (tuples become lists)
    return {
        section: {k: v for k, v in values.items() if k not in RUNTIME_ONLY}
        for section, values in config.items()
        if section in RunConfig.SECTIONS
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
        Under torchrun, rank 0 does this and the others receive the result.
        """
        return distributed.on_main(lambda: cls._create(Path(root), config, overwrite))

    @classmethod
    def _create(cls, root: Path, config: RunConfig, overwrite: bool) -> Run:
        config.validate()
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
        elif va != vb:
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
    Per-sample probabilities go to ``round-RRR/preds_<split>.csv``.
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
    device = resolve_device(distributed.local_device(cfg.device))
    logits, _ = predict(model, ds, cfg.batch_size * 2, device, cfg.amp, cfg.num_workers, callback=callback)
    prob = softmax(logits)[:, 1]
    labels = ds.labels
    if split == "val":
        threshold = run.config.threshold.choose(labels, prob)
    else:
        threshold = round_threshold(run, r)
    metrics = binary_metrics(labels, prob, threshold, ci=ci)
    metrics["threshold_rule"] = run.config.threshold.rule
    if distributed.is_main():
        write_csv(out / f"preds_{split}.csv", pd.DataFrame({"id": ds.table["id"], "label": labels, "prob_pos": prob}))
        write_json(out / ("metrics.json" if split == "val" else "metrics_test.json"), metrics)
        if plots:
            from hardmine.plots import evaluation_plots

            evaluation_plots(labels, prob, threshold, out, split)
    distributed.barrier()
    return metrics


# -------------------------------------------------------------------- scoring and mining


def score_round(
    run: Run,
    r: int,
    scoring: ScoringConfig | None = None,
    audit: bool = False,
    callback: Callback | None = None,
) -> dict[str, Any]:
    """Score the training split with round ``r``'s model.

    Writes ``round-RRR/scores.csv`` (training rows in split order; the score
    columns, plus ``confidence, variability, forgetting, dynamics`` from the
    recorded training dynamics and ``prob_pos_oof`` with out-of-fold scoring)
    and ``round-RRR/embeddings.npy`` (same row order, L2-normalised). With
    ``audit``, also embeds val and test and writes ``RUN/split_audit.csv``.
    Returns a summary (rows, embedding width, audit pair count).
    """
    from hardmine.index import near_duplicate_pairs
    from hardmine.scoring import dynamics_scores, out_of_fold_logits, score_dataset, score_table

    scoring = scoring or run.config.scoring
    scoring.validate()
    out = run.round_dir(r)
    model = run.load_model(_checkpoint(run, r))
    cfg = run.config.train
    threshold = round_threshold(run, r)
    train_part = run.part("train")
    ds = ImageDataset(train_part, cfg.image_size, train=False)
    device = distributed.local_device(cfg.device)
    table, emb, center = score_dataset(model, ds, train_part["id"], threshold, device, cfg.batch_size * 2,
                                       scoring.tta, cfg.amp, cfg.num_workers, scoring.embedding_dtype,
                                       callback=callback, embeddings_path=out / "embeddings.npy")  # fmt: skip
    dynamics_path = out / "dynamics.npz"
    if dynamics_path.exists():
        with np.load(dynamics_path, allow_pickle=False) as data:
            if data["loss"].shape[1] == len(table):
                dyn = dynamics_scores(data["loss"], data["p_true"])
                table = pd.concat([table, dyn], axis=1)
    if scoring.source == "oof":
        logits = out_of_fold_logits(train_part, cfg, scoring.oof_folds, out / "oof", seed=cfg.seed, callback=callback)
        table["prob_pos_oof"] = score_table(train_part["id"], ds.labels, logits, threshold)["prob_pos"]
    if distributed.is_main():
        write_csv(out / "scores.csv", table)
        write_parquet_if_available(out / "scores.parquet", table)
    summary: dict[str, Any] = {"rows": len(table), "embedding_dim": int(emb.shape[1]), "source": scoring.source}
    if audit:
        parts, ids, embs = [], [], []
        for name in ("train", "val", "test"):
            part = run.part(name)
            if name == "train":
                part_emb = emb
            else:
                _, part_emb, _ = score_dataset(model, ImageDataset(part, cfg.image_size), part["id"], threshold,
                                               device, cfg.batch_size * 2, amp=cfg.amp,
                                               num_workers=cfg.num_workers, center=center)  # fmt: skip
            parts.append(np.full(len(part), name, dtype=object))
            ids.append(part["id"].to_numpy())
            embs.append(np.asarray(part_emb, dtype=np.float32))
        all_emb, all_ids, all_parts = np.concatenate(embs), np.concatenate(ids), np.concatenate(parts)

        def audit_pairs() -> int:
            pairs = near_duplicate_pairs(all_emb, all_ids, all_parts, scoring.audit_sim)
            write_csv(run.root / "split_audit.csv", pairs)
            return len(pairs)

        summary["audit_pairs"] = distributed.on_main(audit_pairs)
    distributed.barrier()
    return summary


def mining_inputs(scores: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The P(positive) that drives mining for a score source, and the dynamics hardness if recorded."""
    dynamics = scores["dynamics"].to_numpy() if "dynamics" in scores else None
    if source == "oof":
        if "prob_pos_oof" not in scores:
            raise HardmineError("scores.csv has no prob_pos_oof column: score with --source oof first")
        return scores["prob_pos_oof"].to_numpy(), dynamics
    if source == "dynamics":
        if "confidence" not in scores:
            raise HardmineError("scores.csv has no training-dynamics columns (dynamics.npz missing)")
        conf = scores["confidence"].to_numpy()
        return np.where(scores["label"].to_numpy() == 1, conf, 1 - conf), dynamics
    return scores["prob_pos"].to_numpy(), dynamics


def mine_round(run: Run, r: int, mining: MiningConfig | None = None, source: str | None = None) -> dict[str, Any]:
    """Mine round ``r``'s scores: writes ``mined.csv``, ``weights.csv`` and ``mining.json``.

    The weights are the curriculum for training round ``r + 1``; they are
    smoothed with round ``r - 1``'s weights and "persistent" triage looks at
    the seeds of earlier rounds. Under torchrun, rank 0 mines (faiss) and the
    others receive the summary.
    """
    return distributed.on_main(lambda: _mine_round(run, r, mining, source))


def _mine_round(run: Run, r: int, mining: MiningConfig | None, source: str | None) -> dict[str, Any]:
    from hardmine.mining import mine

    mining = mining or run.config.mining
    source = source or run.config.scoring.source
    out = run.round_dir(r)
    scores_path, emb_path = out / "scores.csv", out / "embeddings.npy"
    if not scores_path.exists() or not emb_path.exists():
        raise HardmineError(f"{scores_path} or {emb_path.name} missing: run `hardmine score` for round {r} first")
    scores = pd.read_csv(scores_path, dtype={"id": str})
    emb = np.load(emb_path, allow_pickle=False, mmap_mode="r")
    train_part = run.part("train")
    if (
        len(scores) != len(emb)
        or len(scores) != len(train_part)
        or (scores["id"].to_numpy() != train_part["id"].to_numpy()).any()
    ):
        raise HardmineError(
            f"{scores_path} ({len(scores)} rows) does not match embeddings ({len(emb)}) "
            f"or the training split ({len(train_part)})"
        )
    prob, dynamics = mining_inputs(scores, source)
    previous = _read_weights(run, r - 1, train_part) if r > 0 else None
    history = [_seed_mask(run, q, train_part) for q in range(r)]
    history = np.array([h for h in history if h is not None]) if any(h is not None for h in history) else None
    threshold = round_threshold(run, r)
    try:
        result = mine(train_part["label"].to_numpy(), prob, emb, threshold, mining, train_part["group"].to_numpy(),
                      triage_prob=prob, dynamics=dynamics, hard_history=history, previous_weights=previous)  # fmt: skip
    except ValueError as exc:
        raise HardmineError(f"mining round {r}: {exc}") from None
    write_csv(out / "mined.csv", result.frame(train_part["id"].to_numpy()))
    write_csv(out / "weights.csv", pd.DataFrame({"id": train_part["id"], "weight": result.weights}))
    summary = result.stats | {"message": result.message, "threshold": threshold, "source": source}
    write_json(out / "mining.json", summary)
    return summary


def _checkpoint(run: Run, r: int) -> Path:
    path = run.round_dir(r) / "model.pt"
    if not path.exists():
        raise HardmineError(f"{path} not found: train round {r} first")
    return path


def round_threshold(run: Run, r: int) -> float:
    """The decision threshold round ``r`` tuned on validation (from its metrics.json)."""
    path = run.round_dir(r) / "metrics.json"
    if not path.exists():
        raise HardmineError(f"{path} not found: evaluate round {r} on val first")
    return float(read_json(path)["threshold"])


def _read_weights(run: Run, r: int, train_part: pd.DataFrame) -> np.ndarray | None:
    path = run.round_dir(r) / "weights.csv"
    if not path.exists():
        return None
    frame = pd.read_csv(path, dtype={"id": str})
    weights = train_part["id"].map(dict(zip(frame["id"], frame["weight"], strict=True)))
    if weights.isna().any():
        raise HardmineError(f"{path} lacks weights for {int(weights.isna().sum())} training sample(s)")
    return weights.to_numpy(dtype=np.float64)


def _seed_mask(run: Run, r: int, train_part: pd.DataFrame) -> np.ndarray | None:
    path = run.round_dir(r) / "mined.csv"
    if not path.exists():
        return None
    mined = pd.read_csv(path, dtype={"id": str})
    return train_part["id"].isin(set(mined.loc[mined["role"] == "seed", "id"])).to_numpy()


# -------------------------------------------------------------------- the round loop


class Manifest:
    """``manifest.json``: the steps completed, what resume reads."""

    def __init__(self, root: Path):
        self.path = root / "manifest.json"
        raw = read_json(self.path) if self.path.exists() else {}
        self.steps: list[str] = list(raw.get("steps", []))
        self.target: int = int(raw.get("target_round", -1))
        self.rounds: dict[str, dict[str, Any]] = dict(raw.get("rounds", {}))

    def done(self, step: str) -> bool:
        return step in self.steps

    def mark(self, step: str) -> None:
        if step not in self.steps:
            self.steps.append(step)
        self.save()

    def save(self) -> None:
        if distributed.is_main():
            write_json(self.path, {"steps": self.steps, "target_round": self.target, "rounds": self.rounds})

    def completed_rounds(self) -> list[int]:
        return sorted(int(s[1:4]) for s in self.steps if s.endswith(":train"))


def selection_value(metrics: dict[str, Any], select_by: str, threshold: ThresholdConfig) -> float:
    """The value rounds are ranked by (higher = better). ``cost`` is minus the expected cost per sample."""
    if select_by == "cost":
        return -(threshold.cost_fn * metrics["fn"] + threshold.cost_fp * metrics["fp"]) / metrics["n"]
    value = metrics[select_by]
    return float("-inf") if value is None or value != value else float(value)


def best_round(run: Run, rounds: list[int]) -> int:
    """The round with the best validation value (ties: AUROC, then the earlier round)."""
    cfg = run.config

    def key(r: int):
        val = read_json(run.round_dir(r) / "metrics.json")
        auroc = val["auroc"] if val["auroc"] is not None else float("-inf")
        return (selection_value(val, cfg.rounds.select_by, cfg.threshold), auroc, -r)

    return max(rounds, key=key)


def mining_round_train_config(config: RunConfig) -> TrainConfig:
    """How a mining round trains: fine-tunes for ``epochs_per_round`` at ``round_lr``
    (default a third of the peak LR), unless ``from_scratch``; the curriculum weights
    replace oversampling when they carry the class balance (both would square it)."""
    rounds = config.rounds
    train = config.train
    if not rounds.from_scratch:
        train = replace(train, epochs=rounds.epochs_per_round(train.epochs), freeze_epochs=0,
                        lr=rounds.round_lr or train.lr / 3)  # fmt: skip
    if config.mining.balance:
        train = replace(train, sampling="none")
    return train


def run_rounds(
    run: Run,
    n: int,
    resume: bool = False,
    init_checkpoint: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> dict[str, Any]:
    """Train round 0 if missing, then ``n`` mining rounds; finish with the report.

    Each mining round r: score and mine round r-1, train round r on its weights
    (fine-tuned from round r-1's best checkpoint, or from the best round when
    r-1 made the selection metric worse by more than ``guard_tol``; from
    scratch with ``from_scratch``), evaluate on validation. Every step is
    recorded in ``manifest.json``; an interrupted run continues from the last
    completed step with ``resume`` (up to the round it was aiming for) or by
    calling again (which adds ``n`` rounds after the completed ones).

    Returns the report (also written to ``report.json``).
    """
    if n < 0:
        raise HardmineError(f"--n must be >= 0; got {n}")
    manifest = Manifest(run.root)
    completed = manifest.completed_rounds()
    if resume and manifest.target >= 0:
        target = manifest.target
    else:
        target = (completed[-1] if completed else 0) + n
    manifest.target = target
    distributed.barrier()  # every rank has read the manifest before rank 0 rewrites it
    manifest.save()
    note = callback or (lambda event, info: None)
    cfg = run.config

    def score_and_mine(q: int) -> None:
        steps = (("score", lambda: score_round(run, q, audit=q == 0, callback=callback)),
                 ("mine", lambda: mine_round(run, q)))  # fmt: skip
        for step, fn in steps:
            if not manifest.done(f"r{q:03d}:{step}"):
                note("step", {"round": q, "step": step})
                fn()
                manifest.mark(f"r{q:03d}:{step}")

    for r in range(0, target + 1):
        if r > 0:
            score_and_mine(r - 1)
        if manifest.done(f"r{r:03d}:train"):
            continue
        note("step", {"round": r, "step": "train"})
        info: dict[str, Any] = {"worse": False}
        if r == 0:
            init = init_checkpoint
            weights = None
            round_cfg = cfg
        else:
            previous = manifest.rounds.get(str(r - 1), {})
            source = best_round(run, manifest.completed_rounds()) if previous.get("worse") else r - 1
            init = None if cfg.rounds.from_scratch else run.round_dir(source) / "model.pt"
            info["init_round"] = None if init is None else source
            weights = _read_weights(run, r - 1, run.part("train"))
            round_cfg = replace(cfg, train=mining_round_train_config(cfg))
        round_run = Run(run.root, round_cfg, run.table, run.split, run.load_report)
        metrics = train_round(round_run, r, sample_weights=weights, init_checkpoint=init, callback=callback)
        if r > 0:
            best = best_round(run, manifest.completed_rounds())
            best_value = selection_value(read_json(run.round_dir(best) / "metrics.json"), cfg.rounds.select_by,
                                         cfg.threshold)  # fmt: skip
            value = selection_value(metrics, cfg.rounds.select_by, cfg.threshold)
            info["worse"] = bool(value < best_value - cfg.rounds.guard_tol)
        manifest.rounds[str(r)] = info
        manifest.mark(f"r{r:03d}:train")
        note("round_end", {"round": r, "val": metrics} | info)
    score_and_mine(target)  # the last round too, so its gallery exists and a later call can go on
    if not manifest.done(f"r{target:03d}:report"):
        note("step", {"round": target, "step": "report"})
    report = write_report(run, callback)
    manifest.mark(f"r{target:03d}:report")
    return report


def write_report(run: Run, callback: Callback | None = None) -> dict[str, Any]:
    """Choose the best round on validation, evaluate it and round 0 on test, write ``report.json``."""
    distributed.barrier()
    manifest = Manifest(run.root)
    rounds = manifest.completed_rounds()
    if not rounds:
        raise HardmineError(f"{run.root} has no completed round")
    best = best_round(run, rounds)
    rows = []
    for r in rounds:
        row: dict[str, Any] = {"round": r, "val": read_json(run.round_dir(r) / "metrics.json")}
        row.update(manifest.rounds.get(str(r), {}))
        mining_path = run.round_dir(r - 1) / "mining.json"
        row["mining"] = read_json(mining_path) if r > 0 and mining_path.exists() else None
        rows.append(row)
    test = {}
    for r in sorted({0, best}):
        path = run.round_dir(r) / "metrics_test.json"
        test[r] = read_json(path) if path.exists() and _newer(path, run.round_dir(r) / "model.pt") else \
            evaluate(run, r, "test", callback=callback)  # fmt: skip
    report = {
        "rounds": rows,
        "best_round": best,
        "select_by": run.config.rounds.select_by,
        "test": test[best],
        "test_round0": test[0],
    }
    if distributed.is_main():
        write_json(run.root / "report.json", report)
    distributed.barrier()
    return report


def _newer(a: Path, b: Path) -> bool:
    return a.stat().st_mtime_ns >= b.stat().st_mtime_ns
