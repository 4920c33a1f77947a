"""A run opened for writing: its configuration, sample table and split, created or re-opened.

:meth:`Run.create` validates the configuration (the model name against
torchvision's and timm's lists too), loads the data, and writes
``config.json``, ``samples.csv`` and ``split.csv`` once; :meth:`Run.open`
re-opens a run from them. Either takes the run folder's lock. Reading a run
needs none of this: :class:`~hardmine.record.record.RunFolder`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine import __version__
from hardmine.core import ranks
from hardmine.core.errors import DataError, HardmineError, warn
from hardmine.core.io import TMP_SUFFIX, copy_file, write_csv, write_json
from hardmine.data.images import data_root
from hardmine.data.sources import load_samples
from hardmine.data.splits import make_or_load_split, make_split
from hardmine.record.config import RunConfig, comparable, differences
from hardmine.record.layout import (
    CONFIG_FILE,
    REFERENCE_DIR,
    SAMPLES_FILE,
    SPLIT_FILE,
    foreign_entries,
)
from hardmine.record.lock import LOCK_FILE, lock_run, unlock_run
from hardmine.record.manifest import Manifest
from hardmine.record.record import RunFolder
from hardmine.strategies import check_rounds


def validate(config: RunConfig) -> str:
    """:meth:`RunConfig.validate` with the model checked first: its name against torchvision's and timm's
    lists, its starting weights found and fitting (the configuration's own validation is torch-free); the
    first problem raises :class:`HardmineError`. Returns where the starting weights come from, in words."""
    train = config.train
    from_scratch = train.model == "tiny" and train.weights == "none"  # then torch is not loaded at all
    if not from_scratch:
        from hardmine.engine.models import check_model_name

        check_model_name(train.model)
    config.validate()
    check_rounds(config.rounds)
    if from_scratch:
        return "none (trained from scratch)"
    from hardmine.engine.models import check_model

    return check_model(train.model, train.weights)


def _claim(root: Path, again: bool = False) -> None:
    """Take the run folder's lock; then no other process can be writing, so leftover temp files are orphans."""
    if again:
        unlock_run(root)
    lock_run(root)
    for orphan in root.rglob(f".*{TMP_SUFFIX}"):
        orphan.unlink(missing_ok=True)


def _check_replaceable(root: Path, config: dict) -> None:
    """Refuse ``--overwrite`` of a folder that hardmine's own records do not identify as a run of its own."""
    records = [name for name in (SAMPLES_FILE, SPLIT_FILE) if not (root / name).is_file()]
    if records or not {"data_fingerprint", "versions"} <= set(config):
        missing = ", ".join(records) or f"{CONFIG_FILE} written by hardmine"
        raise HardmineError(f"--overwrite replaces only a hardmine run, and {root} lacks {missing}; "
                            "choose another --out")  # fmt: skip
    foreign = foreign_entries(root)
    if foreign:
        raise HardmineError(f"--overwrite would delete {root}, which also holds {', '.join(foreign[:3])} that "
                            "hardmine did not write; move them out or choose another --out")  # fmt: skip
    rounds = sum(1 for p in root.glob("round-[0-9][0-9][0-9]") if p.is_dir())
    warn(f"--overwrite: replacing the run in {root} ({rounds} round folder(s) and its records)")


SMALL_VALIDATION = 20  # positive lesions below which validation choices (threshold, epoch, round) are noise


def _only_begun(root: Path, entries: list[Path]) -> bool:
    """Whether ``entries`` of a folder without ``config.json`` are only what creating a run writes before it
    (the sample table, the split, their atomic temporaries): a creation that was killed."""
    return (not foreign_entries(root) and all(p.is_file() and not p.is_symlink() for p in entries)
            and {p.name for p in entries if not p.name.startswith(".")} <= {SAMPLES_FILE, SPLIT_FILE})  # fmt: skip


def _warn_small_validation(table: pd.DataFrame, split: pd.Series) -> None:
    """Say so when the validation split holds few positive lesions: everything chosen on it is then noise."""
    val = table[(split == "val").to_numpy()]
    lesions = val.loc[val["label"] == 1, "group"].nunique()
    if 0 < lesions < SMALL_VALIDATION:  # none at all is an error where the threshold is tuned
        warn(f"the validation split holds {lesions} positive lesion(s) ({int(val['label'].sum())} images): the "
             "threshold, the best epoch and the best round are chosen on it, so they will be noisy; more labeled "
             "melanomas make them steadier")  # fmt: skip


def _without_others_answers(table: pd.DataFrame, data: str, saved: pd.DataFrame) -> pd.DataFrame:
    """``table`` without the answered images (kept beside ``data``) that the run's saved sample table lacks:
    another run labeled them."""
    from hardmine.data.answers import read_answers

    others = set(read_answers(data)["image_id"]) - set(saved["id"])
    return table[~table["id"].isin(others)].reset_index(drop=True) if others else table


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
        weights_source = validate(config)
        return ranks.on_main(lambda: cls._create(Path(root), config, overwrite, weights_source))

    @classmethod
    def _create(cls, root: Path, config: RunConfig, overwrite: bool, weights_source: str) -> Run:
        config_path = root / CONFIG_FILE
        if root.exists() and not root.is_dir():
            raise HardmineError(f"--out {root} is a file; expected a run folder (new or existing)")
        if (root / LOCK_FILE).exists():
            _claim(root)  # a run folder, maybe being created by another process right now
        existing = RunFolder(root).config_dict() if config_path.exists() else None
        if existing is not None:
            # read back through the schema: an option added since the run was made counts at its default
            saved = comparable(RunConfig.from_dict(existing).to_dict())
            wanted = comparable(config.to_dict())
            if saved != wanted and not overwrite:
                raise HardmineError(
                    f"{root} holds a run with a different configuration ({'; '.join(differences(saved, wanted))}); "
                    f"use --config {root / CONFIG_FILE} to go on with its options, --overwrite to replace it, or "
                    "another --out"
                )
            if overwrite:
                _check_replaceable(root, existing)
        elif root.exists() and any(p.name != LOCK_FILE for p in root.iterdir()):
            begun = [p for p in root.iterdir() if p.name != LOCK_FILE]
            if not _only_begun(root, begun):
                raise HardmineError(f"{root} exists and is not a hardmine run directory; choose another --out")
            # a creation killed before config.json: what it wrote is made again from the data as it was
            names = ", ".join(p.name for p in begun)
            warn(f"{root} holds the start of a run whose creation was interrupted ({names}); making it again")
            for path in begun:
                path.unlink()
        data = config.data
        if not Path(data.data).exists():  # said before anything is judged by where the data would be
            raise DataError(f"data path {Path(data.data).resolve()} does not exist")
        folder = data_root(data.data)
        if root.resolve().is_relative_to(folder.resolve()):
            raise HardmineError(f"--out {root} is inside the data folder {folder}: the run's own files would be "
                                "read as data next time; choose an --out outside it")  # fmt: skip
        table, report = load_samples(data.data, data.source, positive=data.positive, negative=data.negative,
                                     metadata=data.metadata, verify_images=data.verify,
                                     skip_bad=data.skip_bad)  # fmt: skip
        config.mining.trusted_mask(table)  # a --trusted column the data lacks fails before anything is written
        earlier = Path(data.split_from) / SPLIT_FILE if data.split_from else None
        # a new run's split, made before anything is written: a data set too small to split fails here
        planned = make_split(table, data.split, data.split_seed, earlier) if existing is None else None
        fingerprint = data_fingerprint(table)
        root.mkdir(parents=True, exist_ok=True)
        _claim(root)
        if config_path.exists() and existing is None:
            raise HardmineError(f"another hardmine process made a run in {root} meanwhile; run the command again "
                                "to use it, or choose another --out")  # fmt: skip
        if config_path.exists() and overwrite:
            shutil.rmtree(root)
            root.mkdir()
            _claim(root, again=True)
        if config_path.exists():
            Manifest(root).check_run_files()
            # answers another run of this data added (`hardmine label` on it) are that run's: not a changed data set
            table = _without_others_answers(table, data.data, RunFolder(root).samples())
            if existing.get("data_fingerprint") != data_fingerprint(table):
                raise HardmineError(
                    f"the data in {data.data} changed since {root} was made "
                    "(fingerprint differs); use --overwrite or another --out"
                )
        else:
            write_csv(root / SAMPLES_FILE, table)
            facts = {"versions": _versions(), "seed": config.train.seed, "data_fingerprint": fingerprint,
                     "run_id": uuid.uuid4().hex, "weights_source": weights_source,
                     "classes": {"positive": report.positive, "negative": report.negative}}  # fmt: skip
            write_json(config_path, config.to_dict() | facts)
        new = not (root / SPLIT_FILE).exists()
        split = make_or_load_split(table, root / SPLIT_FILE, data.split, data.split_seed, earlier, planned)
        if new:
            _warn_small_validation(table, split)
        return cls(root, config, table, split)

    @classmethod
    def open(cls, root: str | os.PathLike) -> Run:
        """Re-open an existing run directory from its saved config, sample table and split."""
        folder = RunFolder(root)
        config = folder.run_config()
        if not (folder.root / SPLIT_FILE).exists():
            raise HardmineError(f"{folder.root / SPLIT_FILE} is missing; the run is incomplete")
        _claim(folder.root)
        Manifest(folder.root).check_run_files()
        table = folder.samples()
        return cls(folder.root, config, table, make_or_load_split(table, folder.root / SPLIT_FILE))

    def run_config(self) -> RunConfig:
        return self.config

    def reference_run(self, epochs: int) -> Run:
        """The equal-epochs reference of this run, opened for writing: round 0's recipe (same seed, same
        start) trained for ``epochs`` in ``RUN/reference/``, a run folder of its own on this run's
        sample table and split. A reference made for another budget or configuration, or damaged,
        is deleted first (it can always be retrained)."""
        root = self.root / REFERENCE_DIR
        config = replace(self.config, train=replace(self.config.train, epochs=epochs))

        def make() -> None:
            try:
                same = comparable(RunFolder(root).run_config().to_dict()) == comparable(config.to_dict())
                Manifest(root).check_run_files()
            except HardmineError:
                same = False
            if not same and root.exists():
                shutil.rmtree(root)
            if not root.exists():
                for name in (SAMPLES_FILE, SPLIT_FILE):
                    copy_file(self.root / name, root / name)
                facts = {k: v for k, v in self.config_dict().items() if k not in config.to_dict()}
                write_json(root / CONFIG_FILE, config.to_dict() | facts)

        ranks.on_main(make)
        return Run(root, config, self.table, self.split)

    def part(self, name: str) -> pd.DataFrame:
        """The rows of split ``name`` (train, val or test), index reset."""
        return self.table[self.split == name].reset_index(drop=True)
