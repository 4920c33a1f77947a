"""The run folder: the one module that knows its layout.

::

    RUN/
      config.json     resolved configuration, versions, seed, data fingerprint, class names
      samples.csv     the sample table the run was made on (views never re-read the data source)
      split.csv       sample id, group, split
      manifest.json   steps completed (what resume reads)
      report.json     rounds on validation, best round, test metrics
      round-RRR/      model.pt metrics.json scores.csv embeddings.npy mined.csv weights.csv gallery/ ...

:class:`RunFolder` reads these files (no torch): thresholds, weights, scores,
the latest and best round, the saved sample table. :class:`Run` is an opened
run with its configuration, created or re-opened here; the steps that write
into it live in :mod:`hardmine.steps`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hardmine import __version__
from hardmine.config import RunConfig, ThresholdConfig, comparable, first_difference
from hardmine.errors import HardmineError
from hardmine.io import read_json, write_csv, write_json

CONFIG_FILE = "config.json"
SAMPLES_FILE = "samples.csv"
SPLIT_FILE = "split.csv"
MANIFEST_FILE = "manifest.json"
REPORT_FILE = "report.json"
TIMING_FILE = "timing.json"
REPORT_HTML = "report.html"
AUDIT_FILE = "split_audit.csv"
STEPS = ("train", "score", "mine", "report")
_ROUND_DIR = re.compile(r"round-(\d{3})$")


def round_dir(root: str | os.PathLike, r: int) -> Path:
    """``root/round-RRR``."""
    return Path(root) / f"round-{r:03d}"


def round_number(path: str | os.PathLike) -> int | None:
    """The round a ``round-RRR`` folder holds (None for any other name)."""
    match = _ROUND_DIR.match(Path(path).name)
    return int(match[1]) if match else None


@dataclass(frozen=True, order=True)
class Step:
    """One completed step of the round loop, recorded in ``manifest.json`` as ``rRRR:name``."""

    round: int
    name: str

    @property
    def key(self) -> str:
        return f"r{self.round:03d}:{self.name}"

    @classmethod
    def parse(cls, key: str) -> Step:
        match = re.fullmatch(r"r(\d{3,}):(\w+)", key)
        if not match or match[2] not in STEPS:
            raise HardmineError(f"manifest step {key!r} is not valid; expected rRRR:{'|'.join(STEPS)}")
        return cls(int(match[1]), match[2])


class Manifest:
    """``manifest.json``: the steps completed, the round a run aims for, per-round facts."""

    def __init__(self, root: str | os.PathLike):
        self.path = Path(root) / MANIFEST_FILE
        raw = read_json(self.path) if self.path.exists() else {}
        self.steps: list[Step] = [Step.parse(s) for s in raw.get("steps", [])]
        self.target: int = int(raw.get("target_round", -1))
        self.rounds: dict[str, dict[str, Any]] = dict(raw.get("rounds", {}))

    def done(self, step: Step) -> bool:
        return step in self.steps

    def mark(self, step: Step) -> None:
        if step not in self.steps:
            self.steps.append(step)
        self.save()

    def save(self) -> None:
        from hardmine import distributed

        if distributed.is_main():
            write_json(self.path, {"steps": [s.key for s in self.steps], "target_round": self.target,
                                   "rounds": self.rounds})  # fmt: skip

    def completed_rounds(self) -> list[int]:
        return sorted(s.round for s in self.steps if s.name == "train")


def selection_value(metrics: dict[str, Any], select_by: str, threshold: ThresholdConfig) -> float:
    """The value rounds are ranked by (higher = better). ``cost`` is minus the expected cost per sample."""
    if select_by == "cost":
        return -(threshold.cost_fn * metrics["fn"] + threshold.cost_fp * metrics["fp"]) / metrics["n"]
    value = metrics[select_by]
    return float("-inf") if value is None or value != value else float(value)


class RunFolder:
    """Read access to a run folder's files; no torch, no data source."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # ------------------------------------------------------------------ layout

    def round_dir(self, r: int) -> Path:
        return round_dir(self.root, r)

    def rounds_with(self, name: str) -> list[int]:
        """Rounds whose folder holds the file ``name``, ascending."""
        found = (round_number(p.parent) for p in self.root.glob(f"round-[0-9][0-9][0-9]/{name}"))
        return sorted(r for r in found if r is not None)

    def latest_round(self, requested: int | None = None, needs: str = "metrics.json") -> int:
        """``requested`` if given, else the latest round holding ``needs``."""
        if requested is not None:
            return requested
        done = self.rounds_with(needs)
        if not done:
            raise HardmineError(f"{self.root} has no round with {needs} yet: run `hardmine train` or `round` first")
        return done[-1]

    def _file(self, r: int, name: str, hint: str) -> Path:
        path = self.round_dir(r) / name
        if not path.exists():
            raise HardmineError(f"{path} not found: {hint}")
        return path

    # ------------------------------------------------------------------ run-level files

    def config_dict(self) -> dict[str, Any]:
        path = self.root / CONFIG_FILE
        if not path.exists():
            raise HardmineError(f"{self.root} is not a hardmine run: {CONFIG_FILE} not found")
        return read_json(path)

    def run_config(self) -> RunConfig:
        """The configuration the run was made with."""
        return RunConfig.from_dict(self.config_dict())

    def class_names(self) -> dict[int, str]:
        """``{1: positive name(s), 0: negative name(s)}`` as the run's data defined them."""
        classes = self.config_dict().get("classes") or {"positive": ["positive"], "negative": ["negative"]}
        return {1: "/".join(classes["positive"]), 0: "/".join(classes["negative"])}

    def samples(self) -> pd.DataFrame:
        """The saved sample table (``id, path, label, group, class_name`` and metadata columns)."""
        path = self.root / SAMPLES_FILE
        if not path.exists():
            raise HardmineError(f"{path} not found; the run predates it: re-create it with `hardmine round`")
        return pd.read_csv(path, dtype={"id": str, "group": str, "path": str, "class_name": str},
                           keep_default_na=False, na_values=[""])  # fmt: skip

    def record_wall_time(self, seconds: float) -> None:
        """Add ``seconds`` to the wall time spent building this run (``timing.json``)."""
        write_json(self.root / TIMING_FILE, {"wall_s": self.wall_time() + float(seconds)})

    def wall_time(self) -> float:
        """Seconds recorded by :meth:`record_wall_time` (0 when none)."""
        path = self.root / TIMING_FILE
        return float(read_json(path)["wall_s"]) if path.exists() else 0.0

    def epochs_trained(self) -> int:
        """Training epochs over all rounds (``history.jsonl`` lines; a head refit trains none)."""
        return sum(len(p.read_text().splitlines()) for p in self.root.glob("round-[0-9][0-9][0-9]/history.jsonl"))

    def report(self) -> dict[str, Any]:
        path = self.root / REPORT_FILE
        if not path.exists():
            raise HardmineError(f"{path} not found: run `hardmine round` first")
        return read_json(path)

    # ------------------------------------------------------------------ per-round files

    def model_path(self, r: int) -> Path:
        return self._file(r, "model.pt", f"train round {r} first")

    def features_path(self, r: int, split: str) -> Path:
        """Cached raw embeddings (input of the last layer) of round ``r``'s model on ``split``."""
        return self.round_dir(r) / f"features_{split}.npy"

    def external_preds_path(self, r: int) -> Path:
        """Round ``r``'s model's predictions on an external data set (``hardmine compare --external``)."""
        return self.round_dir(r) / "preds_external.csv"

    def val_metrics(self, r: int) -> dict[str, Any]:
        return read_json(self._file(r, "metrics.json", f"evaluate round {r} on val first"))

    def threshold(self, r: int) -> float:
        """The decision threshold round ``r`` tuned on validation (from its metrics.json)."""
        return float(self.val_metrics(r)["threshold"])

    def scores(self, r: int) -> pd.DataFrame:
        return pd.read_csv(self._file(r, "scores.csv", f"score round {r} first"), dtype={"id": str})

    def mined(self, r: int) -> pd.DataFrame:
        path = self._file(r, "mined.csv", f"mine round {r} first")
        return pd.read_csv(path, dtype={"id": str}, keep_default_na=False)

    def weights(self, r: int, ids: pd.Series) -> np.ndarray | None:
        """Round ``r``'s curriculum weights in the order of ``ids`` (None when not mined)."""
        path = self.round_dir(r) / "weights.csv"
        if not path.exists():
            return None
        frame = pd.read_csv(path, dtype={"id": str})
        weights = ids.map(dict(zip(frame["id"], frame["weight"], strict=True)))
        if weights.isna().any():
            raise HardmineError(f"{path} lacks weights for {int(weights.isna().sum())} training sample(s)")
        return weights.to_numpy(dtype=np.float64)

    def seed_mask(self, r: int, ids: pd.Series) -> np.ndarray | None:
        """(N,) bool: which of ``ids`` were seeds in round ``r`` (None when not mined)."""
        if not (self.round_dir(r) / "mined.csv").exists():
            return None
        mined = self.mined(r)
        return ids.isin(set(mined.loc[mined["role"] == "seed", "id"])).to_numpy()

    def best_round(self, rounds: list[int] | None = None) -> int:
        """The round with the best validation value (ties: AUROC, then the earlier round)."""
        config = self.run_config()
        rounds = rounds if rounds is not None else Manifest(self.root).completed_rounds()
        if not rounds:
            raise HardmineError(f"{self.root} has no completed round")

        def key(r: int):
            val = self.val_metrics(r)
            auroc = val["auroc"] if val["auroc"] is not None else float("-inf")
            return (selection_value(val, config.rounds.select_by, config.threshold), auroc, -r)

        return max(rounds, key=key)


# ---------------------------------------------------------------------- an opened run


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


class Run(RunFolder):
    """An opened run directory with its configuration, sample table and split."""

    def __init__(self, root: Path, config: RunConfig, table: pd.DataFrame, split: pd.Series):
        super().__init__(root)
        self.config = config
        self.table = table
        self.split = split

    @classmethod
    def create(cls, root: str | os.PathLike, config: RunConfig, overwrite: bool = False) -> Run:
        """Open ``root`` for ``config``: a new run, or an existing one with the same config.

        The configuration is validated before anything is written. An existing
        run with a different configuration is refused unless ``overwrite``,
        which deletes it first (only if it looks like a hardmine run). Under
        torchrun, rank 0 does this and the others receive the result.
        """
        from hardmine import distributed

        config.validate()
        return distributed.on_main(lambda: cls._create(Path(root), config, overwrite))

    @classmethod
    def _create(cls, root: Path, config: RunConfig, overwrite: bool) -> Run:
        from hardmine.data import load_samples, make_or_load_split

        config_path = root / CONFIG_FILE
        if config_path.exists():
            # read back through the schema: an option added since the run was made counts at its default
            saved = comparable(RunConfig.from_dict(read_json(config_path)).to_dict())
            wanted = comparable(config.to_dict())
            if saved != wanted and not overwrite:
                raise HardmineError(
                    f"{root} holds a run with a different configuration ({first_difference(saved, wanted)}); "
                    "use --overwrite to replace it or choose another --out"
                )
            if overwrite:
                shutil.rmtree(root)
        elif root.exists() and any(root.iterdir()):
            raise HardmineError(f"{root} exists and is not a hardmine run directory; choose another --out")
        data = config.data
        table, report = load_samples(data.data, data.source, data.positive, data.negative, data.metadata,
                                     verify_images=data.verify, skip_bad=data.skip_bad)  # fmt: skip
        fingerprint = data_fingerprint(table)
        if config_path.exists():
            if read_json(config_path).get("data_fingerprint") != fingerprint:
                raise HardmineError(
                    f"the data in {data.data} changed since {root} was made "
                    "(fingerprint differs); use --overwrite or another --out"
                )
        else:
            root.mkdir(parents=True, exist_ok=True)
            write_csv(root / SAMPLES_FILE, table)
            facts = {"versions": _versions(), "seed": config.train.seed, "data_fingerprint": fingerprint,
                     "classes": {"positive": report.positive, "negative": report.negative}}  # fmt: skip
            write_json(config_path, config.to_dict() | facts)
        split = make_or_load_split(table, root / SPLIT_FILE, data.split, data.split_seed)
        return cls(root, config, table, split)

    @classmethod
    def open(cls, root: str | os.PathLike) -> Run:
        """Re-open an existing run directory from its saved config, sample table and split."""
        from hardmine.data import make_or_load_split

        folder = RunFolder(root)
        config = folder.run_config()
        if not (folder.root / SPLIT_FILE).exists():
            raise HardmineError(f"{folder.root / SPLIT_FILE} is missing; the run is incomplete")
        table = folder.samples()
        return cls(folder.root, config, table, make_or_load_split(table, folder.root / SPLIT_FILE))

    def run_config(self) -> RunConfig:
        return self.config

    def part(self, name: str) -> pd.DataFrame:
        """The rows of split ``name`` (train, val or test), index reset."""
        return self.table[self.split == name].reset_index(drop=True)

    def dataset(self, name: str, train: bool = False):
        from hardmine.data import ImageDataset

        cfg = self.config.train
        return ImageDataset(self.part(name), cfg.image_size, train=train, augment=cfg.augment)

    def build_model(self):
        from hardmine.models import build_model

        return build_model(self.config.train.model, self.config.train.weights, seed=self.config.train.seed)

    def load_model(self, checkpoint: str | os.PathLike):
        from hardmine.models import build_model, load_weights

        model = build_model(self.config.train.model, "none")
        load_weights(model, checkpoint)
        return model
