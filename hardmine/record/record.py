"""The run folder: the one module that knows its layout.

::

    RUN/
      config.json     resolved configuration, versions, seed, data fingerprint, class names
      samples.csv     the sample table the run was made on (views never re-read the data source)
      split.csv       sample id, group, split
      manifest.json   steps completed (what resume reads), size and SHA-256 of every step's outputs
      report.json     rounds on validation, best round, the model handed back, test metrics
      round-RRR/      model.pt metrics.json scores.csv embeddings.npy mined.csv weights.csv gallery/ ...
      reference/      the budget reference: round 0's recipe trained for the rounds' whole epoch
                      budget, itself a run folder (config, samples, split, manifest, round-000/)

:class:`RunFolder` reads these files (no torch): thresholds, weights, scores,
the latest and best round, the saved sample table. Every file name of a run is
spelled here and nowhere else. A run opened for writing, with its
configuration, sample table and split, is :class:`hardmine.run.opened.Run`;
the steps that write into it live in :mod:`hardmine.run.steps`.

Integrity: when a step is marked done, the manifest records the size and
SHA-256 of the files it wrote; :meth:`Manifest.verify` (run on every resume)
finds a damaged or missing output, deletes it and un-marks its step and every
later one so they are redone. The files a run starts with (config, sample
table, split) cannot be redone: damage there is one error naming the file.
Opening a run for writing (:mod:`hardmine.run.opened`) takes the run folder's
lock (:mod:`hardmine.record.lock`) and removes temporary files a killed process left behind.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError
from hardmine.core.io import file_digest, load_array, read_json, write_json
from hardmine.record.config import RunConfig, ThresholdConfig

CONFIG_FILE = "config.json"
SAMPLES_FILE = "samples.csv"
SPLIT_FILE = "split.csv"
MANIFEST_FILE = "manifest.json"
REPORT_FILE = "report.json"
TIMING_FILE = "timing.json"
REPORT_HTML = "report.html"
REFERENCE_DIR = "reference"
AUDIT_FILE = "split_audit.csv"
# a fit folder (a round, or an out-of-fold network), as hardmine.engine.train.fit writes it
MODEL_FILE = "model.pt"  # state dict of the best epoch on validation
CHECKPOINT_FILE = "last.pt"  # model, optimiser and scheduler after the latest epoch: the resume point
HISTORY_FILE = "history.jsonl"
DYNAMICS_FILE = "dynamics.npz"
METRICS_FILE = "metrics.json"  # validation metrics and the threshold tuned on them
OOF_DIR = "oof"  # round 0's networks trained out of fold, fold-K/ each a fit folder
# a round's scoring and mining outputs
SCORES_FILE = "scores.csv"
EMBEDDINGS_FILE = "embeddings.npy"
MINED_FILE = "mined.csv"
WEIGHTS_FILE = "weights.csv"
MINING_FILE = "mining.json"
SCORING_FILE = "scoring.json"
STEPS = ("train", "score", "mine", "report")
RUN_FILES = (CONFIG_FILE, SAMPLES_FILE, SPLIT_FILE)  # made once with the run; no step can redo them
# Round files that later steps read back; plots, pages and the mid-training resume point are not.
CHECKED_SUFFIXES = (".pt", ".npy", ".npz", ".csv", ".json", ".jsonl", ".parquet")
UNCHECKED = {CHECKPOINT_FILE}
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
    """``manifest.json``: the steps completed, the round a run aims for, per-round facts, output records."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.path = self.root / MANIFEST_FILE
        try:
            raw = read_json(self.path) if self.path.exists() else {}
        except HardmineError as exc:
            raise HardmineError(f"{exc}; delete it to redo every step, or start again in another --out") from None
        if not isinstance(raw, dict):
            raise HardmineError(f"{self.path} is damaged (holds {type(raw).__name__}, expected an object); "
                                "delete it to redo every step, or start again in another --out")  # fmt: skip
        self.steps: list[Step] = [Step.parse(s) for s in raw.get("steps", [])]
        self.target: int = int(raw.get("target_round", -1))
        self.rounds: dict[str, dict[str, Any]] = dict(raw.get("rounds", {}))
        # run-relative path -> {"size", "mtime_ns", "sha256", "step": step key, or None for RUN_FILES}
        self.files: dict[str, dict[str, Any]] = dict(raw.get("files", {}))
        # a run made before outputs were recorded: its files are first recorded as their round's
        # (a damaged one then redoes that round from its training, the safe side)
        self._unrecorded_run = bool(self.steps) and not any(f.get("step") for f in self.files.values())

    def done(self, step: Step) -> bool:
        return step in self.steps

    def mark(self, step: Step) -> None:
        """Record ``step`` as done, with every new or changed output file attributed to it."""
        if step not in self.steps:
            self.steps.append(step)
        self.record(step)
        self._unrecorded_run = False
        self.save()

    def record(self, step: Step | None = None) -> None:
        """Record new or changed round files as outputs of ``step``; without one, refresh the records of
        files a command rewrote outside the round loop (``hardmine evaluate`` rewrites ``metrics.json``)."""
        for name in RUN_FILES:
            path = self.root / name
            if name not in self.files and path.is_file():
                self.files[name] = _file_record(path, None)
        for path in sorted(self.root.glob("round-[0-9][0-9][0-9]/*")):
            if not _checked(path):
                continue
            rel = path.relative_to(self.root).as_posix()
            known = self.files.get(rel)
            stat = path.stat()
            if step is None and known is None:
                continue  # written outside any step: the next step marked owns it
            if known is None or (known["size"], known["mtime_ns"]) != (stat.st_size, stat.st_mtime_ns):
                owner = step.key if step is not None else known["step"]
                if known is None and self._unrecorded_run:
                    r = round_number(path.parent)
                    owner = next((s.key for s in self.steps if s.round == r), owner)
                self.files[rel] = _file_record(path, owner)

    def refresh(self) -> None:
        """Re-record the outputs a command rewrote outside the round loop, and save (a later resume trusts them)."""
        self.record()
        self.save()

    def save(self) -> None:
        from hardmine.core import ranks

        if ranks.is_main():
            write_json(self.path, {"steps": [s.key for s in self.steps], "target_round": self.target,
                                   "rounds": self.rounds, "files": self.files})  # fmt: skip

    def completed_rounds(self) -> list[int]:
        return sorted(s.round for s in self.steps if s.name == "train")

    def damage(self, name: str) -> str | None:
        """What is wrong with recorded file ``name`` (run-relative): None when it is as recorded."""
        known = self.files[name]
        path = self.root / name
        if not path.is_file():
            return "missing"
        stat = path.stat()
        if stat.st_size != known["size"]:
            return f"{stat.st_size} bytes, {known['size']} recorded"
        if stat.st_mtime_ns != known["mtime_ns"]:
            if file_digest(path) != known["sha256"]:
                return "contents differ from the recorded checksum"
            known["mtime_ns"] = stat.st_mtime_ns  # copied or touched, same bytes
        return None

    def check_run_files(self) -> None:
        """Raise :class:`HardmineError` when config, sample table or split differ from their records."""
        for name in RUN_FILES:
            if name in self.files:
                problem = self.damage(name)
                if problem:
                    raise HardmineError(f"{self.root / name} is damaged ({problem}) and cannot be rebuilt; "
                                        "restore it, or start again in another --out")  # fmt: skip

    def verify(self) -> list[str]:
        """Find damaged step outputs; delete them and un-mark their steps and every later step.

        Returns one line per damaged file (empty when the run is intact). Raises
        :class:`HardmineError` when a file the run started with is damaged.
        """
        self.check_run_files()
        damaged = {}
        for name, known in self.files.items():
            if known["step"] is not None:
                problem = self.damage(name)
                if problem:
                    damaged[name] = (problem, Step.parse(known["step"]))
        if not damaged:
            return []
        positions = [self.steps.index(step) for _, step in damaged.values() if step in self.steps]
        first = min(positions, default=len(self.steps))
        redo = self.steps[first:]
        self.steps = self.steps[:first]
        for name in damaged:
            (self.root / name).unlink(missing_ok=True)
            del self.files[name]
        for step in redo:
            if step.name == "train":  # training restarts from scratch, not from the damaged round's last epoch
                (round_dir(self.root, step.round) / CHECKPOINT_FILE).unlink(missing_ok=True)
        self.save()
        return [f"{self.root / name} is damaged ({problem}); redoing round {step.round}'s {step.name} step "
                "and the steps after it" for name, (problem, step) in damaged.items()]  # fmt: skip


def _checked(path: Path) -> bool:
    return (path.is_file() and not path.name.startswith(".") and path.suffix in CHECKED_SUFFIXES
            and path.name not in UNCHECKED)  # fmt: skip


def _file_record(path: Path, step: str | None) -> dict[str, Any]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_digest(path), "step": step}


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

    def latest_round(self, requested: int | None = None, needs: str = METRICS_FILE) -> int:
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
        # only the size here (cheap on every read); a resume compares checksums (Manifest.verify)
        known = Manifest(self.root).files.get(path.relative_to(self.root).as_posix())
        if known and known["size"] != path.stat().st_size:
            raise HardmineError(f"{path} is damaged ({path.stat().st_size} bytes, {known['size']} recorded); "
                                "`hardmine round --out RUN --resume` redoes its step")  # fmt: skip
        return path

    # ------------------------------------------------------------------ run-level files

    def config_dict(self) -> dict[str, Any]:
        path = self.root / CONFIG_FILE
        if not path.exists():
            raise HardmineError(f"{self.root} is not a hardmine run: {CONFIG_FILE} not found")
        raw = read_json(path)
        if not isinstance(raw, dict) or not isinstance(raw.get("train"), dict):
            raise HardmineError(f"{path} is damaged (it holds no run configuration); restore it, or start "
                                "again in another --out")  # fmt: skip
        return raw

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
        """Training epochs over all rounds and the budget reference (``history.jsonl`` lines; a head refit
        trains none)."""
        histories = [*self.root.glob(f"round-[0-9][0-9][0-9]/{HISTORY_FILE}"),
                     *self.root.glob(f"{REFERENCE_DIR}/round-[0-9][0-9][0-9]/{HISTORY_FILE}")]  # fmt: skip
        return sum(len(p.read_text().splitlines()) for p in histories)

    def report(self) -> dict[str, Any]:
        path = self.root / REPORT_FILE
        if not path.exists():
            raise HardmineError(f"{path} not found: run `hardmine round` first")
        return read_json(path)

    # ------------------------------------------------------------------ per-round files

    def model_path(self, r: int) -> Path:
        return self._file(r, MODEL_FILE, f"train round {r} first")

    def dynamics_path(self, r: int) -> Path:
        """Round ``r``'s training dynamics (per-epoch loss and p(true label) of every training image)."""
        return self.round_dir(r) / DYNAMICS_FILE

    def oof_dir(self) -> Path:
        """Where round 0's networks trained out of fold live (every round reuses them)."""
        return self.round_dir(0) / OOF_DIR

    def is_trained(self, r: int) -> bool:
        """Whether round ``r`` holds a model and its validation metrics."""
        return all((self.round_dir(r) / name).exists() for name in (MODEL_FILE, METRICS_FILE))

    def features_path(self, r: int, split: str) -> Path:
        """Cached raw embeddings (input of the last layer) of round ``r``'s model on ``split``."""
        return self.round_dir(r) / f"features_{split}.npy"

    def metrics_path(self, r: int, split: str = "val") -> Path:
        """Round ``r``'s metrics on ``split``: ``metrics.json`` on validation (where its threshold is tuned),
        ``metrics_<split>.json`` otherwise."""
        return self.round_dir(r) / (METRICS_FILE if split == "val" else f"metrics_{split}.json")

    def preds_path(self, r: int, split: str) -> Path:
        """Round ``r``'s model's predictions on ``split`` (``id, label, prob_pos``)."""
        return self.round_dir(r) / f"preds_{split}.csv"

    def scores_path(self, r: int) -> Path:
        """Round ``r``'s per-image scores of the training split (``scores.parquet`` beside it when pyarrow is there)."""
        return self.round_dir(r) / SCORES_FILE

    def embeddings_path(self, r: int) -> Path:
        """Round ``r``'s (N, D) L2-normalised training embeddings, rows as in the scores."""
        return self.round_dir(r) / EMBEDDINGS_FILE

    def mined_path(self, r: int) -> Path:
        """Round ``r``'s mined table (role and reasons of every training image)."""
        return self.round_dir(r) / MINED_FILE

    def weights_path(self, r: int) -> Path:
        """Round ``r``'s curriculum weights: what round ``r + 1`` trains with."""
        return self.round_dir(r) / WEIGHTS_FILE

    def scoring_path(self, r: int) -> Path:
        """Round ``r``'s scoring record: the scoring options and evidence settings the step ran with."""
        return self.round_dir(r) / SCORING_FILE

    def mining_path(self, r: int) -> Path:
        """Round ``r``'s mining summary (counts, threshold, score source)."""
        return self.round_dir(r) / MINING_FILE

    def gallery_path(self, r: int) -> Path:
        """Round ``r``'s gallery page; its thumbnails and contact sheet sit beside it."""
        return self.round_dir(r) / "gallery" / "index.html"

    def external_preds_path(self, r: int) -> Path:
        """Round ``r``'s model's predictions on an external data set (``hardmine compare --external``)."""
        return self.round_dir(r) / "preds_external.csv"

    def embeddings(self, r: int) -> np.ndarray:
        """(N, D) L2-normalised training embeddings of round ``r`` (rows as in ``scores.csv``), memory-mapped."""
        return load_array(self._file(r, EMBEDDINGS_FILE, f"run `hardmine score` for round {r} first"), mmap=True)

    def val_metrics(self, r: int) -> dict[str, Any]:
        return read_json(self._file(r, METRICS_FILE, f"evaluate round {r} on val first"))

    def threshold(self, r: int) -> float:
        """The decision threshold round ``r`` tuned on validation (from its metrics.json)."""
        return float(self.val_metrics(r)["threshold"])

    def scores(self, r: int) -> pd.DataFrame:
        return pd.read_csv(self._file(r, SCORES_FILE, f"score round {r} first"), dtype={"id": str})

    def mined(self, r: int) -> pd.DataFrame:
        path = self._file(r, MINED_FILE, f"mine round {r} first")
        return pd.read_csv(path, dtype={"id": str}, keep_default_na=False)

    def weights(self, r: int, ids: pd.Series) -> np.ndarray | None:
        """Round ``r``'s curriculum weights in the order of ``ids`` (None when not mined)."""
        path = self.weights_path(r)
        if not path.exists():
            return None
        frame = pd.read_csv(path, dtype={"id": str})
        weights = ids.map(dict(zip(frame["id"], frame["weight"], strict=True)))
        if weights.isna().any():
            raise HardmineError(f"{path} lacks weights for {int(weights.isna().sum())} training sample(s)")
        return weights.to_numpy(dtype=np.float64)

    def seed_mask(self, r: int, ids: pd.Series) -> np.ndarray | None:
        """(N,) bool: which of ``ids`` were seeds in round ``r`` (None when not mined)."""
        if not self.mined_path(r).exists():
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

    def reference(self) -> RunFolder | None:
        """The budget reference (``RUN/reference/``, an ordinary run folder) once its round 0 is trained."""
        folder = RunFolder(self.root / REFERENCE_DIR)
        try:
            return folder if Manifest(folder.root).done(Step(0, "train")) else None
        except HardmineError:
            return None  # a damaged reference is rebuilt by the next `hardmine round`

    def returned(self) -> tuple[RunFolder, int]:
        """The model the run hands back, as (folder, round): the budget reference when ``report.json``
        says no round beat it on validation, else the best round on validation."""
        report = self.report() if (self.root / REPORT_FILE).exists() else {}
        reference = self.reference() if report.get("returned") == "reference" else None
        if reference is not None:
            return reference, 0
        return self, self.best_round(self.rounds_with(METRICS_FILE))
