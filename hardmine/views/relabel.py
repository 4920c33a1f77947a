"""Apply review decisions from the gallery to a new manifest; the user's metadata is never rewritten.

The gallery's "download decisions" button writes ``decisions.csv``::

    image_id,current_label,decision,new_label
    ISIC_0024306,nv,relabel,mel
    ISIC_0024999,mel,exclude,

:func:`apply_decisions` validates it against the run's sample table and writes
a manifest CSV (``path,label,group`` and the metadata columns, paths relative to
the manifest) inside the data root, so the next run reads it with
``--data MANIFEST`` and trains on the corrected labels. ``relabelled_from``
records each change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from hardmine.core.errors import DataError, warn
from hardmine.core.io import unguard_formula, write_csv
from hardmine.data.answers import ID_COLUMNS
from hardmine.data.images import data_root
from hardmine.record.layout import CONFIG_FILE
from hardmine.record.record import RunFolder

DECISIONS = ("relabel", "exclude", "keep")


def read_decisions(path: str | os.PathLike, samples: pd.DataFrame) -> pd.DataFrame:
    """The decisions of ``path`` checked against ``samples`` (the run's sample table).

    Returns ``image_id, decision, new_label``, one row per decision (``keep`` included: a
    reviewed image). Raises :class:`DataError` naming the row for unknown ids, decisions or
    labels, and naming the lesion when its images are decided differently (a lesion has one
    diagnosis: a relabel applies to every image of it).
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - pandas raises many kinds for a malformed file
        raise DataError(f"cannot read decisions {path}: {str(exc).splitlines()[0]}") from None
    id_column = next((c for c in ID_COLUMNS if c in frame.columns), None)  # the spellings `label` takes too
    missing = [c for c, ok in (("image_id", id_column is not None), ("decision", "decision" in frame)) if not ok]
    if missing:
        raise DataError(f"{path}: column(s) {', '.join(missing)} missing; expected image_id (or id), decision, "
                        "new_label")  # fmt: skip
    frame = frame.rename(columns={id_column: "image_id"})
    if "new_label" not in frame:
        frame["new_label"] = ""
    frame = frame.map(unguard_formula)  # the gallery's download guards values a spreadsheet would run
    frame["decision"] = frame["decision"].str.strip().str.lower()
    frame["new_label"] = frame["new_label"].str.strip()
    known_ids, classes = set(samples["id"]), sorted(set(samples["class_name"]))
    label_of = dict(zip(samples["id"], samples["class_name"], strict=True))
    current = frame["current_label"].str.strip() if "current_label" in frame else pd.Series([""] * len(frame))
    rows = zip(frame["image_id"], frame["decision"], frame["new_label"], current, strict=True)
    for row, (image_id, decision, new_label, was) in enumerate(rows, start=2):  # row 1 is the header
        if image_id not in known_ids:
            raise DataError(f"{path} row {row}: image_id {image_id!r} is not in the run's data")
        if was and label_of[image_id] not in was.split("/"):  # the gallery names a class group "mel/bcc"
            raise DataError(f"{path} row {row}: {image_id} was decided on as {was!r}, but the run labels it "
                            f"{label_of[image_id]!r} (a decision from another run, or from before a relabel)")
        if decision not in DECISIONS:
            raise DataError(f"{path} row {row}: decision {decision!r} is not valid; expected {', '.join(DECISIONS)}")
        if decision == "relabel" and new_label not in classes:
            raise DataError(f"{path} row {row}: new_label {new_label!r} is not a class of the run; expected one of "
                            f"{', '.join(classes)}")  # fmt: skip
    dup = frame["image_id"][frame["image_id"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: image_id {dup.iloc[0]!r} has more than one decision")
    chosen = frame[["image_id", "decision", "new_label"]].reset_index(drop=True)
    _check_lesions(path, chosen, dict(zip(samples["id"], samples["group"], strict=True)))
    return chosen


def _check_lesions(path: Path, chosen: pd.DataFrame, group_of: dict[str, str]) -> None:
    """Refuse decisions that would leave a lesion with two diagnoses: two relabels to different classes,
    or one image relabelled and another kept."""
    verdict: dict[str, tuple[str, str]] = {}  # lesion -> (what its images become, the image that said so)
    for image_id, decision, new_label in chosen.itertuples(index=False):
        if decision == "exclude":
            continue
        said = new_label if decision == "relabel" else "its label"
        earlier = verdict.setdefault(group_of[image_id], (said, image_id))
        if earlier[0] != said:
            first, other = earlier[1], image_id
            raise DataError(f"{path}: lesion {group_of[image_id]!r} would have two diagnoses: {first} "
                            f"{_wording(earlier[0])}, {other} {_wording(said)}; a relabel applies to every image of "
                            "a lesion: decide its images alike (or exclude the odd one)")  # fmt: skip


def _wording(said: str) -> str:
    return "kept as labelled" if said == "its label" else f"relabelled {said}"


def apply_decisions(
    run_dir: str | os.PathLike, decisions: str | os.PathLike, out: str | os.PathLike | None = None
) -> tuple[Path, dict[str, int]]:
    """Write the run's samples with ``decisions`` applied as a manifest CSV; return its path and counts.

    ``out`` defaults to ``DATA_ROOT/relabelled-<run name>.csv``; it must lie in the
    data root (manifest paths may not leave their folder). Counts: ``relabelled``,
    ``excluded``, ``rows`` written.
    """
    folder = RunFolder(run_dir)
    samples = folder.samples()
    chosen = read_decisions(decisions, samples)
    data = Path(folder.run_config().data.data)
    if not data.exists():
        raise DataError(f"the data the run was made on, {data}, is not there (moved or deleted?): the manifest goes "
                        "beside it and the run's image paths point into it; put it back, or make a new run where it "
                        "is now")  # fmt: skip
    root = data_root(data).resolve()
    out_path = Path(out) if out is not None else root / f"relabelled-{folder.root.name}.csv"
    if not out_path.resolve().parent.is_relative_to(root):
        raise DataError(f"--out {out_path} must be inside the data root {root} (manifest paths may not leave it)")
    _check_writable(out_path, data, set(samples["id"]))
    relabel = chosen[chosen["decision"] == "relabel"]
    lesion_label = dict(zip(samples.set_index("id").loc[relabel["image_id"], "group"], relabel["new_label"],
                            strict=True))  # fmt: skip
    excluded = set(chosen.loc[chosen["decision"] == "exclude", "image_id"])
    kept = samples[~samples["id"].isin(excluded)].reset_index(drop=True)
    new_label = {i: lesion_label[g] for i, g in zip(kept["id"], kept["group"], strict=True) if g in lesion_label}
    reviewed = set(chosen["image_id"]) | set(new_label)
    if "reviewed" in kept:  # reviewed in an earlier relabel: still reviewed
        reviewed |= set(kept.loc[kept["reviewed"] == "yes", "id"])
    base = out_path.resolve().parent
    relative = [Path(os.path.relpath(Path(p).resolve(), base)).as_posix() for p in kept["path"]]
    outside = next((path for path in relative if path.startswith("../")), None)
    if outside is not None:
        raise DataError(f"--out {out_path}: its folder does not hold every image (first: {outside}), and a manifest's "
                        f"paths may not leave its folder; write it in the data root {root}")  # fmt: skip
    manifest = pd.DataFrame({
        "path": relative,
        "label": [new_label.get(i, c) for i, c in zip(kept["id"], kept["class_name"], strict=True)],
        "group": kept["group"],
        "relabelled_from": [kept["class_name"][k] if i in new_label else "" for k, i in enumerate(kept["id"])],
        "id": kept["id"],  # the run's ids: the next run's match them (and --split-from finds them)
        "reviewed": ["yes" if i in reviewed else "" for i in kept["id"]],  # --trusted reviewed=yes
    })  # fmt: skip
    extra = [c for c in kept.columns if c not in ("id", "path", "label", "group", "class_name", *manifest.columns)]
    for column in extra:
        manifest[column] = kept[column].to_numpy()
    if manifest["label"].nunique() < 2:
        warn(f"{out_path} holds one class only ({manifest['label'].iloc[0] if len(manifest) else 'no rows'}): "
             "no run can train on it; were the relabel decisions meant for that many images?")  # fmt: skip
    write_csv(out_path, manifest)
    counts = {"relabelled": len(new_label), "lesions": len(lesion_label), "excluded": len(excluded),
              "reviewed": len(reviewed & set(kept["id"])), "rows": len(manifest)}  # fmt: skip
    return out_path, counts


RELABELLED_HEADER = "path,label,group,relabelled_from"


def _check_writable(out_path: Path, data: Path, run_ids: set[str]) -> None:
    """Refuse to replace a file hardmine did not write for this run (a relabel manifest holds the run's ids
    only: a look-alike file with the same header does not), or the data the run was trained on."""
    if out_path.resolve() == data.resolve():
        raise DataError(f"--out {out_path} is the data the run was trained on; choose another name")
    if out_path.exists():
        with open(out_path, "rb") as handle:
            first = handle.readline().decode("utf-8", "replace").strip()
        ours = out_path.is_file() and first.startswith(RELABELLED_HEADER)
        if ours:
            try:
                ids = pd.read_csv(out_path, usecols=["id"], dtype=str, keep_default_na=False)["id"]
                ours = set(ids) <= run_ids
            except (ValueError, OSError, pd.errors.ParserError):  # no id column, or not a CSV after its header
                ours = False
        if not ours:
            raise DataError(f"--out {out_path} exists and is not a manifest `hardmine relabel` wrote for this run; "
                            "hardmine never replaces your files: choose another name")  # fmt: skip


def next_round_command(run_dir: str | os.PathLike, manifest: str | os.PathLike) -> str:
    """The whole ``hardmine round`` command that trains on ``manifest`` with the run's recipe (its saved
    configuration) and class mapping, on its split (the same test lesions: the report compares before and
    after), reviewed labels trusted, into a new run folder beside it."""
    folder = RunFolder(run_dir)
    classes = folder.config_dict().get("classes") or {}
    task = "".join(f" --{side} {','.join(names)}" for side, names in classes.items() if names)
    return (f"hardmine round --config {folder.root / CONFIG_FILE} --data {manifest} --source manifest{task} "
            f"--split-from {folder.root} --trusted reviewed=yes --out {folder.root}-reviewed")
