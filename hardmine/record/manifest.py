"""``manifest.json``: the steps a run completed and the size and SHA-256 of every file they wrote.

When a step is marked done, the manifest records the size and SHA-256 of the
files it wrote; :meth:`Manifest.verify` (run on every resume) finds a damaged
or missing output, deletes it and un-marks its step and every later one so
they are redone. The files a run starts with (config, sample table, split)
cannot be redone: damage there is one error naming the file.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardmine.core.errors import HardmineError
from hardmine.core.io import file_digest, read_json, write_json
from hardmine.record.layout import (
    AUDIT_FILE,
    CHECKED_SUFFIXES,
    CHECKPOINT_FILE,
    MANIFEST_FILE,
    OOF_DIR,
    REPORT_FILE,
    RUN_FILES,
    STEPS,
    UNCHECKED,
    UPDATE_JOURNAL,
    UPDATE_SUFFIX,
    is_run_file,
    round_dir,
    round_number,
)


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
        damaged = f"{self.path} is damaged ({{}}); delete it to redo every step, or start again in another --out"
        for key, kind in (("steps", list), ("rounds", dict), ("files", dict), ("plan", dict)):
            if not isinstance(raw.get(key, kind()), kind):
                raise HardmineError(damaged.format(f"{key} holds {type(raw[key]).__name__}, expected {kind.__name__}"))
        try:
            self.steps: list[Step] = [Step.parse(s) for s in raw.get("steps", [])]
            self.target: int = int(raw.get("target_round", -1))
            # what the call that set the target asked for: {"after": completed round, "rounds": n}
            self.plan: dict[str, int] = {k: int(v) for k, v in dict(raw.get("plan", {})).items()}
            self.rounds: dict[str, dict[str, Any]] = dict(raw.get("rounds", {}))
            # run-relative path -> {"size", "mtime_ns", "sha256", "step": step key, or None for RUN_FILES}
            self.files: dict[str, dict[str, Any]] = dict(raw.get("files", {}))
        except (TypeError, ValueError, AttributeError, HardmineError) as exc:
            raise HardmineError(damaged.format(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)) from None
        if self.target >= 0 and not self.plan:
            # a target without the call that set it: a hand-edited or cut manifest would make a resume train
            raise HardmineError(damaged.format(f"target_round {self.target} is there without its plan"))
        if self.plan and set(self.plan) != {"after", "rounds"}:
            raise HardmineError(damaged.format(f"its plan {self.plan} is incomplete"))
        if self.plan and self.target != self.plan["after"] + self.plan["rounds"]:
            # a hand-edited target would make a resume train that many rounds
            raise HardmineError(damaged.format(f"target_round {self.target} is not round {self.plan['after']} + "
                                               f"{self.plan['rounds']} rounds, the plan of the call that set it"))
        inside = self.root.resolve()
        for name, record in self.files.items():
            # a record names a file a resume may delete: it must be one of this run's own
            not_ours = damaged.format(f"it records {name!r}, which is not a file hardmine writes")
            if "\x00" in name:  # no path holds one: said before the path checks, which cannot read it
                raise HardmineError(not_ours)
            if Path(name).is_absolute() or not (inside / name).resolve().is_relative_to(inside):
                raise HardmineError(damaged.format(f"it records {name!r}, outside the run folder"))
            if not is_run_file(name):
                raise HardmineError(not_ours)
            if not isinstance(record, dict) or not {"size", "mtime_ns", "sha256", "step"} <= set(record):
                raise HardmineError(damaged.format(f"the record of {name} is incomplete"))
        # a run made before outputs were recorded: its files are first recorded as their round's
        # (a damaged one then redoes that round from its training, the safe side)
        self._unrecorded_run = bool(self.steps) and not any(f.get("step") for f in self.files.values())

    def aim(self, after: int, rounds: int) -> int:
        """Aim for ``rounds`` mining rounds after completed round ``after`` (0 when none is); returns the
        target round, saved with its plan by :meth:`save`."""
        self.plan = {"after": after, "rounds": rounds}
        self.target = after + rounds
        return self.target

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
        # the report chose the model; the split audit and the out-of-fold networks are the score step's
        top = [p for p in (self.root / REPORT_FILE, self.root / AUDIT_FILE) if p.is_file()]
        rounds = sorted(self.root.glob("round-[0-9][0-9][0-9]/*"))
        folds = sorted(self.root.glob(f"round-[0-9][0-9][0-9]/{OOF_DIR}/**/*"))
        for path in rounds + folds + top:
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

    def replace_run_files(self, writers: dict[str, Callable[[Path], object]]) -> None:
        """Replace run files (names of ``RUN_FILES``) together, as one transaction (``hardmine label`` adds
        answered images to the training split, the sample table and the config's fingerprint at once).

        ``writers[name](path)`` writes the new content of ``name`` to ``path`` (a ``.new`` file beside it).
        The journal written once every new file is complete is the commit point: an interruption before it
        leaves the run as it was (the ``.new`` files are removed when it is next opened), one after it is
        completed when the run is next opened (:meth:`finish_interrupted_update`)."""
        for name, write in writers.items():
            write(self.root / (name + UPDATE_SUFFIX))
        records = {name: _file_record(self.root / (name + UPDATE_SUFFIX), None) for name in writers}
        write_json(self.root / UPDATE_JOURNAL, {"records": records})
        self.finish_interrupted_update()

    def finish_interrupted_update(self) -> None:
        """Complete a committed run-file update (its journal written) or undo an uncommitted one (``.new``
        files without a journal), so a run killed inside :meth:`replace_run_files` opens as one state."""
        journal = self.root / UPDATE_JOURNAL
        if journal.exists():
            records = read_json(journal)["records"]
            for name in records:
                if (self.root / (name + UPDATE_SUFFIX)).exists():
                    os.replace(self.root / (name + UPDATE_SUFFIX), self.root / name)
            self.files.update(records)
            self.save()
            journal.unlink()
        for name in RUN_FILES:
            (self.root / (name + UPDATE_SUFFIX)).unlink(missing_ok=True)

    def rerecord_run_files(self) -> None:
        """Record config, sample table and split as they are now, after a command changed them on purpose
        (``hardmine label`` adds answered images to the training split), and save."""
        for name in RUN_FILES:
            self.files[name] = _file_record(self.root / name, None)
        self.save()

    def refresh(self, written) -> None:
        """Re-record the files at paths ``written``, which a command rewrote outside the round loop, and save
        (a later resume trusts them). Only those: a file damaged since its step keeps its record, so the
        resume still finds it."""
        for path in map(Path, written):
            rel = path.resolve().relative_to(self.root.resolve()).as_posix() if path.is_absolute() else path.as_posix()
            known = self.files.get(rel)
            if known is not None and (self.root / rel).is_file():
                self.files[rel] = _file_record(self.root / rel, known["step"])
        self.save()

    def save(self) -> None:
        from hardmine.core import ranks

        if ranks.is_main():
            write_json(self.path, {"steps": [s.key for s in self.steps], "target_round": self.target,
                                   "plan": self.plan, "rounds": self.rounds, "files": self.files})  # fmt: skip

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
        """Raise :class:`HardmineError` when config, sample table or split differ from their records (after
        finishing or undoing an interrupted :meth:`replace_run_files`)."""
        self.finish_interrupted_update()
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
        for name in damaged:
            parts = name.split("/")
            if len(parts) > 2 and parts[1] == OOF_DIR:  # one damaged network file: the networks are trained again
                oof = f"{parts[0]}/{OOF_DIR}/"
                shutil.rmtree(self.root / oof, ignore_errors=True)
                self.files = {n: record for n, record in self.files.items() if not n.startswith(oof)}
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
