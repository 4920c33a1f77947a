"""The run record's readers: every file of a run folder read back, with no torch and no data source.

:class:`RunFolder` reads thresholds, weights, scores, the latest and best
round, the saved sample table, the equal-epochs reference and the model the run
hands back. Names come from :mod:`hardmine.record.layout`; the integrity of
what is read, from :mod:`hardmine.record.manifest` (a reader compares sizes,
a resume checksums). A run opened for writing, with its configuration, sample
table and split, is :class:`hardmine.run.opened.Run`; the steps that write
into it live in :mod:`hardmine.run.steps`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError
from hardmine.core.io import load_array, read_json, write_json
from hardmine.core.metrics import expected_cost
from hardmine.record.config import RunConfig, ThresholdConfig
from hardmine.record.layout import (
    ANSWERS_FILE,
    CONFIG_FILE,
    DYNAMICS_FILE,
    EMBEDDINGS_FILE,
    GALLERY_DIR,
    GALLERY_PAGE,
    HISTORY_FILE,
    LABEL_DIR,
    METRICS_FILE,
    MINED_FILE,
    MINING_FILE,
    MODEL_FILE,
    OOF_DIR,
    QUERIES_DIR,
    QUERY_FILE,
    QUERY_INFO,
    REFERENCE_DIR,
    REPORT_FILE,
    RUN_FILES,
    SAMPLES_FILE,
    SCORES_FILE,
    SCORING_FILE,
    TIMING_FILE,
    WEIGHTS_FILE,
    features_file,
    metrics_file,
    preds_file,
    query_dir,
    round_dir,
    round_number,
)
from hardmine.record.manifest import Manifest, Step


def selection_value(metrics: dict[str, Any], select_by: str, threshold: ThresholdConfig) -> float:
    """The value rounds are ranked by (higher = better). ``cost`` is minus the expected cost per sample."""
    if select_by == "cost":
        return -expected_cost(metrics["fn"], metrics["fp"], threshold.cost_fn, threshold.cost_fp) / metrics["n"]
    value = metrics[select_by]
    return float("-inf") if value is None or value != value else float(value)


# every column of a query.csv that is text, whatever it looks like (an all-digit id or digest stays a string)
QUERY_TYPES = {"id": str, "group": str, "path": str, "neighbours": str, "sha256": str}


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
            trained = self.rounds_with(MODEL_FILE)
            if r not in trained:  # a round that does not exist: saying how to evaluate it would mislead
                raise HardmineError(f"{self.root} has no round {r}; its rounds: "
                                    f"{', '.join(map(str, trained)) or 'none yet'}")  # fmt: skip
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

    def identity(self) -> str:
        """The run's own identity (``run_id`` in config.json, made with the run): what keys the browser's
        stored decisions, so two runs in folders of the same name never share them. Older runs: the folder
        name."""
        return str(self.config_dict().get("run_id") or self.root.name)

    def class_names(self) -> dict[int, str]:
        """``{1: positive name(s), 0: negative name(s)}`` as the run's data defined them."""
        classes = self.config_dict().get("classes") or {"positive": ["positive"], "negative": ["negative"]}
        return {1: "/".join(classes["positive"]), 0: "/".join(classes["negative"])}

    def samples(self) -> pd.DataFrame:
        """The saved sample table (``id, path, label, group, class_name`` and metadata columns)."""
        path = self.root / SAMPLES_FILE
        if not path.exists():
            raise HardmineError(f"{path} not found; the run predates it: re-create it with `hardmine round`")
        return _read_csv(path, dtype={"id": str, "group": str, "path": str, "class_name": str},
                           keep_default_na=False, na_values=[""])  # fmt: skip

    def record_wall_time(self, seconds: float) -> None:
        """Add ``seconds`` to the wall time spent building this run (``timing.json``)."""
        write_json(self.root / TIMING_FILE, {"wall_s": self.wall_time() + float(seconds)})

    def wall_time(self) -> float:
        """Seconds recorded by :meth:`record_wall_time` (0 when none)."""
        path = self.root / TIMING_FILE
        return float(read_json(path)["wall_s"]) if path.exists() else 0.0

    def epochs_trained(self) -> int:
        """Training epochs over all rounds and the equal-epochs reference (``history.jsonl`` lines; a head refit
        trains none)."""
        histories = [*self.root.glob(f"round-[0-9][0-9][0-9]/{HISTORY_FILE}"),
                     *self.root.glob(f"{REFERENCE_DIR}/round-[0-9][0-9][0-9]/{HISTORY_FILE}")]  # fmt: skip
        return sum(len(p.read_text().splitlines()) for p in histories)

    def report(self) -> dict[str, Any]:
        path = self.root / REPORT_FILE
        if not path.exists():
            raise HardmineError(f"{path} not found: run `hardmine round` first")
        report = read_json(path)
        if not isinstance(report, dict):
            raise HardmineError(f"{path} is damaged (holds {type(report).__name__}, expected an object); "
                                "`hardmine round --out RUN --resume` writes it again")  # fmt: skip
        return report

    # ------------------------------------------------------------------ per-round files

    def model_path(self, r: int) -> Path:
        return self._file(r, MODEL_FILE, f"train round {r} first")

    def verified_model_path(self, r: int) -> Path:
        """:meth:`model_path`, after checking that the model and the run's own files are as the manifest
        recorded them (full checksums: a same-size damaged or swapped model, or an edited config.json with
        other class names, would otherwise give other predictions without a word)."""
        path = self.model_path(r)
        manifest = Manifest(self.root)
        manifest.check_run_files()
        for checked in (path, self.metrics_path(r)):  # the model, and the threshold it decides at
            name = checked.relative_to(self.root).as_posix()
            problem = manifest.damage(name) if name in manifest.files else None
            if problem:
                raise HardmineError(f"{checked} is damaged ({problem}); `hardmine round --out RUN --resume` redoes "
                                    "its round")  # fmt: skip
        return path

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
        return self.round_dir(r) / features_file(split)

    def metrics_path(self, r: int, split: str = "val") -> Path:
        """Round ``r``'s metrics on ``split``: ``metrics.json`` on validation (where its threshold is tuned),
        ``metrics_<split>.json`` otherwise."""
        return self.round_dir(r) / metrics_file(split)

    def preds_path(self, r: int, split: str) -> Path:
        """Round ``r``'s model's predictions on ``split`` (``id, label, prob_pos``)."""
        return self.round_dir(r) / preds_file(split)

    def preds(self, r: int, split: str) -> pd.DataFrame:
        """Round ``r``'s predictions on ``split``, indexed by sample id (``label, prob_pos``); a damaged file is
        one :class:`HardmineError` naming it."""
        path = self._file(r, preds_file(split), f"evaluate round {r} on {split} first")
        return _read_csv(path, dtype={"id": str}).set_index("id")

    def paired_on(self, a: int, b: int, metrics, split: str = "val") -> dict[str, dict[str, Any]]:
        """Round ``a`` minus round ``b`` on ``split`` per metric name of ``core.paired.METRICS``, from their saved
        predictions, bootstrapped over the split's lesions (:func:`~hardmine.core.paired.paired_differences`)."""
        from hardmine.core.paired import paired_differences

        first, second = self.preds(a, split), self.preds(b, split)
        groups = self.samples().set_index("id")["group"].reindex(first.index).fillna("").to_numpy()
        return paired_differences(first["label"].to_numpy(), groups, first["prob_pos"].to_numpy(),
                                  second.loc[first.index, "prob_pos"].to_numpy(), tuple(metrics),
                                  seed=self.run_config().train.seed)  # fmt: skip

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
        return self.round_dir(r) / GALLERY_DIR / GALLERY_PAGE

    def query_path(self) -> Path:
        """The latest query (``hardmine query``): ``id, path, group, prob_pos, reason``, in pick order."""
        return self.root / QUERY_FILE

    def query_info_path(self) -> Path:
        """How the latest query was made (pool, method, budget, round, threshold)."""
        return self.root / QUERY_INFO

    def query(self) -> pd.DataFrame:
        """The latest query's picks (see :meth:`query_path`)."""
        path = self.query_path()
        if not path.exists():
            raise HardmineError(f"{path} not found: pick images first with `hardmine query RUN --pool POOL --budget B`")
        return _read_csv(path, dtype=QUERY_TYPES, keep_default_na=False)

    def batches(self) -> list[int]:
        """The numbers of the queries kept in ``queries/NNN/`` (every query since batches were kept), in order."""
        folder = self.root / QUERIES_DIR
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / QUERY_FILE).is_file())

    def batch_query(self, batch: int) -> pd.DataFrame:
        """Batch ``batch``'s picks as asked (the columns of :meth:`query`)."""
        return _read_csv(query_dir(self.root, batch) / QUERY_FILE, dtype=QUERY_TYPES, keep_default_na=False)

    def answers_path(self) -> Path:
        """The answers ``hardmine label`` added to this run's training split."""
        return self.root / ANSWERS_FILE

    def answered_ids(self) -> set[str]:
        """Ids of the training images that joined this run from the labeling page."""
        path = self.answers_path()
        return set(_read_csv(path, dtype={"image_id": str})["image_id"]) if path.exists() else set()

    def label_page_path(self) -> Path:
        """The labeling page of the latest query; its thumbnails sit beside it."""
        return self.root / LABEL_DIR / GALLERY_PAGE

    def external_preds_path(self, r: int) -> Path:
        """Round ``r``'s model's predictions on an external data set (``hardmine compare --external``)."""
        return self.round_dir(r) / preds_file("external")

    def embeddings(self, r: int) -> np.ndarray:
        """(N, D) L2-normalised training embeddings of round ``r`` (rows as in ``scores.csv``), memory-mapped."""
        return load_array(self._file(r, EMBEDDINGS_FILE, f"run `hardmine score` for round {r} first"), mmap=True)

    def val_metrics(self, r: int) -> dict[str, Any]:
        return read_json(self._file(r, METRICS_FILE, f"evaluate round {r} on val first"))

    def threshold(self, r: int) -> float:
        """The decision threshold round ``r`` tuned on validation (from its metrics.json)."""
        return float(self.val_metrics(r)["threshold"])

    def scores(self, r: int) -> pd.DataFrame:
        return _read_csv(self._file(r, SCORES_FILE, f"score round {r} first"), dtype={"id": str})

    def mined(self, r: int) -> pd.DataFrame:
        path = self._file(r, MINED_FILE, f"mine round {r} first")
        return _read_csv(path, dtype={"id": str}, keep_default_na=False)

    def weights(self, r: int, ids: pd.Series) -> np.ndarray | None:
        """Round ``r``'s curriculum weights in the order of ``ids`` (None when not mined)."""
        path = self.weights_path(r)
        if not path.exists():
            return None
        frame = _read_csv(path, dtype={"id": str})
        weights = ids.map(dict(zip(frame["id"], frame["weight"], strict=True)))
        answered = ids.isin(self.answered_ids()) & weights.isna()
        weights[answered] = 1.0  # labeled after round r was mined: no curriculum weight yet
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
        """The round with the best validation value of ``select_by``; ties broken by validation AUPRC, then
        AUROC, then the earlier round.

        A round worse than round 0 on validation AUPRC and AUROC both is passed over unless its selection
        value beats round 0's beyond the paired 95% interval over validation lesions: a tie or a lucky
        operating point on a few positives never hands back a model that ranks worse.
        """
        config = self.run_config()
        rounds = rounds if rounds is not None else Manifest(self.root).completed_rounds()
        if not rounds:
            raise HardmineError(f"{self.root} has no completed round")

        def number(value) -> float:
            return float("-inf") if value is None or value != value else float(value)

        def key(r: int):
            val = self.val_metrics(r)
            return (selection_value(val, config.rounds.select_by, config.threshold), number(val.get("auprc")),
                    number(val.get("auroc")), -r)  # fmt: skip

        if 0 in rounds:
            base = self.val_metrics(0)

            def ranks_worse(r: int) -> bool:
                val = self.val_metrics(r)
                return all(number(val.get(m)) < number(base.get(m)) for m in ("auprc", "auroc"))

            select_by = config.rounds.select_by
            rounds = [r for r in rounds if r == 0 or not ranks_worse(r) or self._beats_round0(r, select_by)]
        return max(rounds, key=key)

    def _beats_round0(self, r: int, select_by: str) -> bool:
        """Whether round ``r`` is better than round 0 on validation ``select_by`` beyond the paired interval over
        validation lesions (False for a metric the paired bootstrap does not know, such as ``cost``)."""
        from hardmine.core.paired import METRICS

        if select_by not in METRICS or not all(self.preds_path(q, "val").exists() for q in (0, r)):
            return False
        return self.paired_on(r, 0, (select_by,))[select_by]["verdict"] == "better"

    def reference(self) -> RunFolder | None:
        """The equal-epochs reference (``RUN/reference/``, an ordinary run folder) once its round 0 is trained."""
        folder = RunFolder(self.root / REFERENCE_DIR)
        try:
            return folder if Manifest(folder.root).done(Step(0, "train")) else None
        except HardmineError:
            return None  # a damaged reference is rebuilt by the next `hardmine round`

    def returned(self) -> tuple[RunFolder, int]:
        """The model the run hands back, as (folder, round): the equal-epochs reference when ``report.json``
        says no round beat it on validation, else the best round on validation."""
        report = self.report() if (self.root / REPORT_FILE).exists() else {}
        if report:  # which model the report hands back: only as recorded (an edited best round is refused)
            manifest = Manifest(self.root)
            problem = manifest.damage(REPORT_FILE) if REPORT_FILE in manifest.files else None
            if problem:
                raise HardmineError(f"{self.root / REPORT_FILE} is damaged ({problem}); `hardmine round --out RUN "
                                    "--resume` writes it again")  # fmt: skip
        reference = self.reference() if report.get("returned") == "reference" else None
        if reference is not None:
            return reference, 0
        if "best_round" in report:  # the report's word, not whichever rounds still have their metrics
            try:
                best = int(report["best_round"])
            except (TypeError, ValueError):
                raise HardmineError(f"{self.root / REPORT_FILE} is damaged (best_round {report['best_round']!r}); "
                                    "`hardmine round --out RUN --resume` writes it again") from None  # fmt: skip
            self._file(best, METRICS_FILE, f"the report hands back round {best}; --resume redoes its evaluation")
            return self, best
        return self, self.best_round(self.rounds_with(METRICS_FILE))


def _read_csv(path: Path, **options: Any) -> pd.DataFrame:
    """``pd.read_csv`` of a run file; one that cannot be read (not UTF-8, cut mid-row) is one
    :class:`HardmineError` naming it."""
    try:
        return pd.read_csv(path, **options)
    except (UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        hint = ("restore it, or start again in another --out" if path.name in RUN_FILES else
                "`hardmine round --out RUN --resume` redoes the step that wrote it")  # fmt: skip
        raise HardmineError(f"{path} is damaged ({str(exc).splitlines()[0]}); {hint}") from None

