"""The run folder's layout: every file and folder name of a run, spelled here and nowhere else.

::

    RUN/
      config.json     resolved configuration, versions, seed, data fingerprint, class names
      samples.csv     the sample table the run was made on (views never re-read the data source)
      split.csv       sample id, group, split
      manifest.json   steps completed (what resume reads), size and SHA-256 of every step's outputs
      report.json     rounds on validation, best round, the model handed back, test metrics
      round-RRR/      model.pt metrics.json scores.csv embeddings.npy mined.csv weights.csv gallery/ ...
      queries/NNN/    every query as asked: query.csv, query.json, label/ (the latest also at RUN/query.csv)
      reference/      the equal-epochs reference: round 0's recipe trained for the rounds' whole epoch
                      budget, itself a run folder (config, samples, split, manifest, round-000/)

The integrity records are :mod:`hardmine.record.manifest`; the readers are
:class:`hardmine.record.record.RunFolder`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hardmine.record.lock import LOCK_FILE

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
FOLD_SETTINGS_FILE = "settings.json"  # what an oof/ folder's networks were trained with
# a round's scoring and mining outputs
SCORES_FILE = "scores.csv"
EMBEDDINGS_FILE = "embeddings.npy"
MINED_FILE = "mined.csv"
WEIGHTS_FILE = "weights.csv"
MINING_FILE = "mining.json"
SCORING_FILE = "scoring.json"
STEPS = ("train", "score", "mine", "report")
RUN_FILES = (CONFIG_FILE, SAMPLES_FILE, SPLIT_FILE)  # made once with the run; no step can redo them
UPDATE_SUFFIX = ".new"  # a run file's new content while the run files are replaced together
UPDATE_JOURNAL = "run-files.journal"  # written once every new run file is complete: the update's commit point
# Round files that later steps read back; plots, pages and the mid-training resume point are not.
CHECKED_SUFFIXES = (".pt", ".npy", ".npz", ".csv", ".json", ".jsonl", ".parquet")
UNCHECKED = {CHECKPOINT_FILE}
_ROUND_DIR = re.compile(r"round-(\d{3})$")


def round0_trained_files() -> tuple[str, ...]:
    """What training round 0 and evaluating it leave in ``round-000/`` (the resume point aside): what a
    run that shares another's round 0 copies (its test evaluation, when present, comes along)."""
    return (MODEL_FILE, HISTORY_FILE, DYNAMICS_FILE, METRICS_FILE, preds_file("val"), metrics_file("test"),
            preds_file("test"))  # fmt: skip


def round_dir(root: str | os.PathLike, r: int) -> Path:
    """``root/round-RRR``."""
    return Path(root) / f"round-{r:03d}"


def round_number(path: str | os.PathLike) -> int | None:
    """The round a ``round-RRR`` folder holds (None for any other name)."""
    match = _ROUND_DIR.match(Path(path).name)
    return int(match[1]) if match else None


def metrics_file(split: str) -> str:
    """A round's metrics on ``split``: ``metrics.json`` on validation (where its threshold is tuned)."""
    return METRICS_FILE if split == "val" else f"metrics_{split}.json"


def preds_file(split: str) -> str:
    """A round's model's predictions on ``split`` (``external``: another data set, ``hardmine compare``)."""
    return f"preds_{split}.csv"


def features_file(split: str) -> str:
    """A round's cached raw embeddings of ``split`` (head refits)."""
    return f"features_{split}.npy"


GALLERY_DIR = "gallery"
THUMBS_DIR = "thumbs"  # a gallery's or a labeling page's thumbnails, beside its index.html
HARDEST_PNG = "hardest.png"  # a gallery's contact sheet of its hardest cards (gallery --png)
GALLERY_PAGE = "index.html"
QUERY_FILE = "query.csv"  # the latest query: pool images to label next, in pick order
QUERY_INFO = "query.json"  # how the latest query was made: pool, method, budget, round, threshold
ANSWERS_FILE = "labeled.csv"  # the answers `hardmine label` added to this run's training split, in order
ORACLE_ANSWERS_FILE = "oracle-answers.csv"  # a simulated oracle's answers to the latest query (benchmarks only)
LABEL_DIR = "label"  # the labeling page of the latest query (index.html, thumbs/)
DECISIONS_FILE = "decisions.json"  # review decisions `gallery --serve` keeps for the run's galleries (by image id)
DISAGREEMENTS_FILE = "disagreements.csv"  # answers `hardmine label` took that disagree with the model that asked
QUERIES_DIR = "queries"  # every query kept: queries/NNN/ holds batch NNN's query.csv, query.json and label/
LEARNING_CURVE_PNG = "learning_curve.png"  # an active-learning run's learning curve (report.html shows it)
ROUNDS_PNG = "rounds.png"  # the selection metric per round (report.html shows it)
# a compare folder (hardmine compare --out): method/seed-S/ run folders and these tables
COMPARE_FILE = "compare.csv"  # mean and spread per method
COMPARE_RUNS_FILE = "compare_runs.csv"  # one row per method and seed
COMPARE_PAIRED_FILE = "compare_paired.csv"  # paired differences against the best baseline
COMPARE_PAIRED_PNG = "compare_paired.png"


def scores_png(split: str) -> str:
    """The score histogram of the handed-back model on ``split``."""
    return f"scores_{split}.png"


def fold_dir(oof_dir: str | os.PathLike, fold: int) -> Path:
    """``oof_dir/fold-K``: the fit folder of out-of-fold network ``fold``."""
    return Path(oof_dir) / f"fold-{fold}"


def query_dir(root: str | os.PathLike, batch: int) -> Path:
    """``root/queries/NNN``: batch ``batch``'s query, as it was asked."""
    return Path(root) / QUERIES_DIR / f"{batch:03d}"


def foreign_entries(root: str | os.PathLike) -> list[str]:
    """Files (and links) anywhere under run folder ``root`` that hardmine does not write there, as paths
    relative to it, sorted.

    ``--overwrite`` replaces a run only when this is empty: a folder holding anything else, at any depth
    (a note in a round folder, a ``.git`` folder, a round folder of the user's own), is not hardmine's to
    delete. What hardmine writes is the layout below, spelled here and checked by name.
    """
    root = Path(root)
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            relative = (here / name).relative_to(root).as_posix()
            if not is_run_file(relative):
                found.append(relative)
        for name in [d for d in dirs if not (here / d).is_symlink()]:
            relative = (here / name).relative_to(root).as_posix()
            if not _our_folder(relative):  # a folder of the user's, empty or not, is named as a whole
                found.append(relative + "/")
                dirs.remove(name)
    return sorted(found)


def _our_folder(relative: str) -> bool:
    """Whether a folder relative to a run folder is one hardmine makes (an equal-epochs reference is a run folder)."""
    if relative == REFERENCE_DIR or relative.startswith(REFERENCE_DIR + "/"):
        return relative == REFERENCE_DIR or _our_folder(relative.removeprefix(REFERENCE_DIR + "/"))
    return any(pattern.fullmatch(relative) for pattern in _OUR_FOLDERS)


def is_run_file(relative: str) -> bool:
    """Whether a path relative to a run folder is one hardmine writes (an equal-epochs reference is a run folder)."""
    if relative.startswith(REFERENCE_DIR + "/"):
        return is_run_file(relative.removeprefix(REFERENCE_DIR + "/"))
    folder, _, name = relative.rpartition("/")
    temporary = _TMP.fullmatch(name)
    if temporary:
        return is_run_file(f"{folder}/{temporary['name']}".lstrip("/"))
    return any(pattern.fullmatch(relative) for pattern in _OURS)


def _names(*names: str) -> str:
    return "|".join(re.escape(name) for name in names)


# an atomic write's temporary beside its target, left by a kill: .NAME.RANDOM[SUFFIX].tmp (core.io.atomic_path)
_TMP = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]{8}(\.[a-z]+)?\.tmp")
_PLOTS = r"(rounds|learning_curve|(roc|pr|confusion|scores)_[a-z]+)\.png"
_FIT = (_names(MODEL_FILE, CHECKPOINT_FILE, HISTORY_FILE, DYNAMICS_FILE, METRICS_FILE)
        + r"|metrics_[a-z]+\.json|preds_[a-z]+\.csv")  # fmt: skip
_ROUND = (_FIT + "|" + _names(SCORES_FILE, EMBEDDINGS_FILE, MINED_FILE, WEIGHTS_FILE, MINING_FILE, SCORING_FILE)
          + r"|(scores|mined)\.parquet|features_[a-z]+\.npy|" + _PLOTS)  # fmt: skip
_PAGE = rf"index\.html|{THUMBS_DIR}/[0-9a-f]{{6,16}}\.jpg"  # a gallery's or a labeling page's page and thumbnails
_OUR_FOLDERS = [re.compile(pattern) for pattern in (
    r"round-\d{3}", rf"round-\d{{3}}/{GALLERY_DIR}(/{THUMBS_DIR})?", rf"round-\d{{3}}/{OOF_DIR}(/fold-\d+)?",
    rf"{LABEL_DIR}(/{THUMBS_DIR})?", rf"{QUERIES_DIR}(/\d{{3}}(/{LABEL_DIR}(/{THUMBS_DIR})?)?)?",
)]  # fmt: skip
_OURS = [re.compile(pattern) for pattern in (
    "(" + _names(CONFIG_FILE, SAMPLES_FILE, SPLIT_FILE, MANIFEST_FILE, REPORT_FILE, TIMING_FILE, REPORT_HTML,
                 AUDIT_FILE, QUERY_FILE, QUERY_INFO, ANSWERS_FILE, ORACLE_ANSWERS_FILE, DISAGREEMENTS_FILE,
                 DECISIONS_FILE, UPDATE_JOURNAL, LOCK_FILE, *(n + UPDATE_SUFFIX for n in RUN_FILES))
    + "|" + _PLOTS + ")",
    rf"round-\d{{3}}/({_ROUND})",
    rf"round-\d{{3}}/{GALLERY_DIR}/({_PAGE}|{_names(HARDEST_PNG)})",
    rf"round-\d{{3}}/{OOF_DIR}/({_names(FOLD_SETTINGS_FILE)}|fold-\d+/({_FIT}))",
    rf"{LABEL_DIR}/({_PAGE})",
    rf"{QUERIES_DIR}/\d{{3}}/({_names(QUERY_FILE, QUERY_INFO)}|{LABEL_DIR}/({_PAGE}))",
)]  # fmt: skip
