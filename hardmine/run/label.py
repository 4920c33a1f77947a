"""``hardmine label``: answers to a query join the labeled set, beside the data and in the run's training split.

The answers CSV (the labeling page's download: ``image_id, label``) is checked
whole before anything is written: every id must be in the run's latest query,
once, with a label among the run's classes or ``unsure``, and a lesion's images
must agree. Then the answers are kept beside the data
(:mod:`hardmine.data.answers`), and the labeled ones join this run's training
split (its validation and test splits stay as they are), so the next
``hardmine round`` trains on them. Like any training label, an answer goes
through the label-suspicion triage when that round is mined: annotators err too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine.core.errors import DataError
from hardmine.core.io import file_digest, read_json, unguard_formula, write_csv, write_json
from hardmine.data.answers import ID_COLUMNS, UNSURE, answers_folder, read_answers, record_answers
from hardmine.data.images import data_root, find_unreadable, read_csv, require_columns, why_unreadable
from hardmine.record.layout import (
    CONFIG_FILE,
    DISAGREEMENTS_FILE,
    QUERIES_DIR,
    QUERY_INFO,
    SAMPLES_FILE,
    SPLIT_FILE,
    query_dir,
)
from hardmine.record.manifest import Manifest
from hardmine.run.opened import Run, data_fingerprint

LABEL_COLUMNS = ("label", "answer")


@dataclass
class Labeled:
    """What ``hardmine label`` did: answers per value, the training split's new size, the model's disagreements."""

    counts: dict[str, int]
    added: int
    train_size: int
    disagreements: list[str]
    kept_in: Path
    batches: list[int]  # the kept batches the answers belong to
    disagreements_file: Path  # every answer that disagrees with the model that asked


def read_answers_csv(path: str | os.PathLike, run: Run) -> pd.DataFrame:
    """The answers in ``path`` as ``image_id, answer``, each checked against the run's queries (any kept batch).

    Raises :class:`DataError` naming the file and line of the first problem: a missing column, an
    empty file, an id that is not in the query (or already labeled), a label that is not a class of
    the run nor ``unsure``, an id answered twice, a lesion answered with both classes.
    """
    path = Path(path)
    frame = read_csv(path)
    id_col = next((c for c in ID_COLUMNS if c in frame), None)
    label_col = next((c for c in LABEL_COLUMNS if c in frame), None)
    if id_col is None or label_col is None:
        raise DataError(f"{path}: expected columns image_id (or id) and label (or answer) (found: "
                        f"{', '.join(frame.columns) or 'none'})")  # fmt: skip
    if frame.empty:
        raise DataError(f"{path} holds no answers")
    frame = frame.map(unguard_formula)  # the labeling page's download guards values a spreadsheet would run
    query = asked_images(run)
    asked = dict(zip(query["id"], query["group"], strict=True))
    classes = run.config_dict()["classes"]
    allowed = [*classes["positive"], *classes["negative"], UNSURE]
    labeled = set(run.table["id"])
    seen: dict[str, int] = {}
    for line, (image_id, answer) in enumerate(zip(frame[id_col].str.strip(), frame[label_col].str.strip(),
                                                  strict=True), start=2):  # line 1 is the header # fmt: skip
        where = f"{path} line {line}"
        if image_id in seen:
            raise DataError(f"{where}: {image_id} is answered twice (also on line {seen[image_id]})")
        seen[image_id] = line
        if image_id not in asked:
            known = "is already labeled in the run" if image_id in labeled else "is not in any query of the run"
            raise DataError(f"{where}: image id {image_id!r} {known} ({run.root / QUERIES_DIR})")
        if answer not in allowed:
            raise DataError(f"{where}: label {answer!r} for {image_id} is not valid; expected one of "
                            f"{', '.join(allowed)}")  # fmt: skip
    answers = pd.DataFrame({"image_id": frame[id_col].str.strip(), "answer": frame[label_col].str.strip()})
    answers["group"] = answers["image_id"].map(asked)
    positive = answers["answer"].isin(classes["positive"])
    decided = answers[answers["answer"] != UNSURE]
    both = decided.groupby("group")["answer"].apply(lambda a: a.isin(classes["positive"]).nunique() > 1)
    if both.any():
        lesion = both.index[both][0]
        shown = ", ".join(f"{i} ({a})" for i, a in decided.loc[decided["group"] == lesion, ["image_id", "answer"]]
                          .itertuples(index=False))  # fmt: skip
        raise DataError(f"{path}: lesion {lesion!r} is answered with both classes: {shown}; one lesion has one "
                        "diagnosis (answer unsure where it is not clear)")  # fmt: skip
    answers = answers.assign(label=np.where(positive, 1, 0))
    _check_known_lesions(answers[answers["answer"] != UNSURE], run, path)
    return answers


def _check_known_lesions(answers: pd.DataFrame, run: Run, path: Path) -> None:
    """An answered image of a lesion the run already holds must agree with that lesion's label and join it in
    the training split: a lesion has one diagnosis, and never spans two splits."""
    known = run.table.assign(split=run.split.to_numpy()).drop_duplicates("group").set_index("group")
    for image_id, group, label in zip(answers["image_id"], answers["group"], answers["label"], strict=True):
        if group not in known.index:
            continue
        held = known.at[group, "split"]
        if held != "train":
            raise DataError(f"{path}: {image_id} belongs to lesion {group!r}, which is in the run's {held} split; "
                            "an answer joins the training split, and a lesion never spans two (answer unsure)")
        if int(known.at[group, "label"]) != int(label):
            side = "positive" if label == 1 else "negative"
            raise DataError(f"{path}: {image_id} is answered {side}, but its lesion "
                            f"{group!r} is labeled {known.at[group, 'class_name']} in the run; one lesion has one "
                            "diagnosis (answer unsure, or relabel the lesion through the gallery)")  # fmt: skip


def asked_images(run: Run) -> pd.DataFrame:
    """Every image the run asked for: the kept batches' picks with their ``batch``, the ``threshold`` of the
    model that asked and the ``pool`` it was asked from (a run from before batches were kept: its latest
    query, batch None)."""
    batches = run.batches()
    if not batches:
        info = read_json(run.query_info_path()) if run.query_info_path().exists() else {}
        return run.query().assign(batch=None, threshold=float(info.get("threshold", 0.5)), pool=info.get("pool"))
    frames = []
    for batch in batches:
        info = read_json(query_dir(run.root, batch) / QUERY_INFO)
        frames.append(run.batch_query(batch).assign(batch=batch, threshold=float(info["threshold"]),
                                                    pool=info.get("pool")))  # fmt: skip
    return pd.concat(frames, ignore_index=True).drop_duplicates("id", keep="last")


def apply_answers(run: Run, answers_csv: str | os.PathLike) -> Labeled:
    """Keep the answers beside the data and add the labeled ones to ``run``'s training split.

    Answers to any kept batch are taken (a batch stays open until each of its images is answered). Every
    answer that disagrees with the model that asked, at its threshold, is listed in ``RUN/disagreements.csv``.
    Safe to run again with the same file: answers already kept or already in the run are not repeated.
    """
    answers = read_answers_csv(answers_csv, run)
    query = asked_images(run).set_index("id")
    answers["source_path"] = answers["image_id"].map(query["path"])
    _check_asked_images(answers[answers["answer"] != UNSURE], query)
    # everything read before anything is kept: a damaged file of the run stops here, with nothing changed
    asked = answers["image_id"]
    prob = _numbers(asked.map(query["prob_pos"]), "prob_pos", run.query_path())
    threshold = _numbers(asked.map(query["threshold"]), "threshold", run.query_info_path())
    logs = {path: _previous_log(path) for path in (run.answers_path(), run.root / DISAGREEMENTS_FILE)}
    data = run.config.data.data
    record_answers(data, answers[["image_id", "source_path", "answer", "group"]], run.root.name)
    new = answers[(answers["answer"] != UNSURE) & ~answers["image_id"].isin(set(run.table["id"]))]
    folder = answers_folder(data)
    kept = read_answers(data).set_index("image_id")["path"]  # where each answered image was copied
    rows = pd.DataFrame({"id": new["image_id"], "path": new["image_id"].map(kept), "label": new["label"],
                         "group": new["group"], "class_name": new["answer"]})  # fmt: skip
    if len(rows):
        _add_to_training_split(run, rows)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log = answers[["image_id", "answer"]].assign(prob_pos=prob, reason=asked.map(query["reason"]),
                                                  batch=asked.map(query["batch"]), answered_at=now)  # fmt: skip
    disagree = ((answers["answer"] != UNSURE) & ((prob >= threshold) != (answers["label"] == 1))).to_numpy()
    listed = log[disagree].assign(threshold=threshold[disagree])[["image_id", "answer", "prob_pos", "threshold",
                                                                  "batch", "reason"]]  # fmt: skip
    for path, frame in ((run.answers_path(), log), (run.root / DISAGREEMENTS_FILE, listed)):
        previous = logs[path]  # every call's rows are kept, once
        if previous is not None:
            frame = pd.concat([previous, frame[~frame["image_id"].isin(set(previous["image_id"]))]], ignore_index=True)
        write_csv(path, frame)
    counts = answers["answer"].value_counts().to_dict()
    batches = sorted({int(b) for b in asked.map(query["batch"]).dropna()})
    return Labeled(counts=counts, added=len(rows), train_size=int((run.split == "train").sum()),
                   disagreements=answers["image_id"][disagree].tolist(), kept_in=folder, batches=batches,
                   disagreements_file=run.root / DISAGREEMENTS_FILE)  # fmt: skip


def _numbers(values: pd.Series, column: str, path: Path) -> np.ndarray:
    """(N,) floats of a query's column, or :class:`DataError` naming the file and the first value that is not one."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        raise DataError(f"{path} is damaged: {column} {values[bad].iloc[0]!r} is not a number; ask again with "
                        "`hardmine query`")  # fmt: skip
    return numbers.to_numpy(dtype=float)


def _previous_log(path: Path) -> pd.DataFrame | None:
    """A log of earlier calls (``labeled.csv``, ``disagreements.csv``) as strings, None when there is none;
    a damaged one is a :class:`DataError` naming it."""
    if not path.exists():
        return None
    try:
        frame = read_csv(path)
        require_columns(frame, ["image_id", "answer"], path)
    except DataError as exc:
        raise DataError(f"{path} is damaged ({exc}); restore it or remove it (it lists the answers "
                        "`hardmine label` took; the answers themselves are kept beside the data)") from None
    return frame


def _check_asked_images(answers: pd.DataFrame, query: pd.DataFrame) -> None:
    """Before anything is kept: each answered image a query names must lie inside the root of the pool its batch
    was asked from (``query.json``'s pool), decode, and hold the bytes it held when asked (``query.csv``'s
    ``sha256``), so neither an edited ``query.csv`` nor a replaced pool file brings another image into the
    labeled data under the answer."""
    for image_id, path in zip(answers["image_id"], answers["source_path"], strict=True):
        pool = query.at[image_id, "pool"]  # absolute since queries record it so (an older run's may be relative)
        if pool and Path(pool).is_absolute() and not Path(path).resolve().is_relative_to(data_root(pool).resolve()):
            raise DataError(f"the query names {path} for {image_id}, outside the pool it was asked from ({pool}); "
                            "the query file was edited: ask again with `hardmine query`")  # fmt: skip
    bad = find_unreadable(answers["source_path"].tolist())
    if bad:
        raise DataError(f"{len(bad)} asked image(s) cannot be read, first: {bad[0]} ({why_unreadable(bad[0])})")
    if "sha256" in query:  # queries made before the digest was recorded have none to check
        for image_id, path in zip(answers["image_id"], answers["source_path"], strict=True):
            asked = query.at[image_id, "sha256"]
            if asked and file_digest(path) != asked:
                raise DataError(f"{path} ({image_id}) changed since it was asked: the answer is for the image as "
                                "it was; ask again with `hardmine query` (or restore the file)")  # fmt: skip


def _add_to_training_split(run: Run, rows: pd.DataFrame) -> None:
    """Append ``rows`` to the run's sample table as training images: split, sample table and the config's data
    fingerprint replaced together (:meth:`~hardmine.record.manifest.Manifest.replace_run_files`), so a kill
    in between leaves the run as it was or as labeled, never half."""
    table = pd.concat([run.table, rows], ignore_index=True)
    split = pd.concat([run.split, pd.Series(["train"] * len(rows), name="split")], ignore_index=True)
    config = read_json(run.root / CONFIG_FILE) | {"data_fingerprint": data_fingerprint(table)}
    Manifest(run.root).replace_run_files({
        SPLIT_FILE: lambda path: write_csv(path, pd.DataFrame({"id": table["id"], "group": table["group"],
                                                               "split": split})),
        SAMPLES_FILE: lambda path: write_csv(path, table),
        CONFIG_FILE: lambda path: write_json(path, config),
    })  # fmt: skip
    run.table, run.split = table, split
