"""The round loop: round 0, then score, mine and retrain round after round; the report.

:func:`run_rounds` drives the steps of :mod:`hardmine.run.steps` over an opened
:class:`~hardmine.run.opened.Run`, records each in ``manifest.json`` so an
interrupted run resumes, guards against rounds that make validation worse,
trains the equal-epochs reference (round 0's recipe for the rounds' whole epoch
budget) so a run never hands back a model worse on validation than the plain
recipe given the same epochs, and finishes with :func:`finish`:
``report.json`` (best round by validation, the model handed back, test
metrics), ``report.html`` and the gallery, for Python callers and the CLI alike.
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from hardmine.core.errors import HardmineError, warn
from hardmine.core.io import copy_file, read_json, write_json
from hardmine.engine import distributed
from hardmine.engine.inference import Callback
from hardmine.record.config import TrainConfig, comparable
from hardmine.record.layout import (
    CONFIG_FILE,
    MINED_FILE,
    MODEL_FILE,
    REPORT_FILE,
    SAMPLES_FILE,
    SPLIT_FILE,
    round0_trained_files,
)
from hardmine.record.manifest import Manifest, Step
from hardmine.record.record import RunFolder, selection_value
from hardmine.run.learning_curve import batch_facts, hand_back, labels_grew, learning_curve, step_rounds
from hardmine.run.opened import Run
from hardmine.run.steps import metrics_on_test, mine_round, refit_head_round, score_round, train_round
from hardmine.strategies import RoundContext, get_strategy, get_update, reference_epochs


def run_rounds(
    run: Run,
    n: int,
    *,
    resume: bool = False,
    init_checkpoint: str | os.PathLike | None = None,
    callback: Callback | None = None,
    finish_outputs: bool = True,
) -> dict[str, Any]:
    """Train round 0 if missing, then ``n`` mining rounds; finish with the report.

    Each mining round r: score and mine round r-1, then build round r on its
    weights by the run's strategy: ``finetune`` continues from round r-1 (or
    from the best round when r-1 made the selection metric worse by more than
    ``guard_tol``), ``retrain`` trains a fresh model, ``head`` refits round 0's
    last layer on cached embeddings; evaluate on validation. Rounds are
    compared on validation only, so the best round handed back is never worse
    there than round 0. Every step is
    recorded in ``manifest.json`` with checksums of its outputs; a damaged
    output found when the loop starts is deleted and its step redone (with a
    warning); an interrupted run continues from the last
    completed step with ``resume`` (up to the round it was aiming for) or by
    calling again (which adds ``n`` rounds after the completed ones).

    With ``finish_outputs`` (the default), ``report.html`` and the galleries
    of the best and the last round are written too (see :func:`finish`).

    Returns the report (also written to ``report.json``).
    """
    if n < 0:
        raise HardmineError(f"--n must be >= 0; got {n}")
    manifest = _verified_manifest(run)
    completed = manifest.completed_rounds()
    from_manifest = resume and manifest.target >= 0
    if from_manifest:
        target = manifest.target
    else:
        # answers joined the training split since the latest round: an active-learning step trains on them first
        step = int(bool(completed) and labels_grew(run, manifest, completed[-1]))
        target = manifest.aim(completed[-1] if completed else 0, n + step)
    distributed.barrier()  # every rank has read the manifest before rank 0 rewrites it
    manifest.save()
    note = callback or (lambda event, info: None)
    # said before any work: a resume aims at the round the manifest names, which the user can check
    note("plan", {"target": target, "completed": completed, "resume": resume, "from_manifest": from_manifest})
    cfg = run.config

    def once(step: Step, fn) -> None:
        if not manifest.done(step):
            note("step", {"round": step.round, "step": step.name})
            fn()
            manifest.mark(step)

    def score_and_mine(q: int) -> None:
        once(Step(q, "score"), lambda: score_round(run, q, audit=q == 0, callback=callback))
        once(Step(q, "mine"), lambda: mine_round(run, q))

    for r in range(0, target + 1):
        if r > 0:
            score_and_mine(r - 1)
        if not manifest.done(Step(r, "train")):
            _train_step(run, r, manifest, init_checkpoint if r == 0 else None, note, callback)
    score_and_mine(target)  # the last round too, so its gallery exists and a later call can go on
    # an active-learning run hands back its newest step (the most labels), not a longer plain training
    reference = None if step_rounds(manifest) else reference_epochs(cfg.rounds, cfg.train.epochs, target)
    if reference is not None:
        _reference_step(run, reference, init_checkpoint, note, callback)
    if not manifest.done(Step(target, "report")):
        note("step", {"round": target, "step": "report"})
    report = write_report(run, callback)
    manifest.mark(Step(target, "report"))
    if finish_outputs:
        finish(run)
    return report


def _verified_manifest(run: Run) -> Manifest:
    """The run's manifest after :meth:`Manifest.verify` (on rank 0, each damaged output a warning) has
    deleted damaged outputs and un-marked their steps."""
    if distributed.is_main():
        for problem in Manifest(run.root).verify():
            warn(problem)
    distributed.barrier()  # damaged steps are un-marked before any rank reads the manifest
    return Manifest(run.root)


def _train_step(run: Run, r: int, manifest: Manifest, init_checkpoint, note, callback) -> None:
    note("step", {"round": r, "step": "train"})
    cfg = run.config
    train_labels = run.part("train")["label"]
    info: dict[str, Any] = {"worse": False, "labels": len(train_labels), "positives": int(train_labels.sum())}
    if r == 0:
        metrics = train_round(run, 0, init_checkpoint=init_checkpoint, callback=callback)
    else:
        # a round whose previous round saw fewer labels than the split holds now is an active-learning step:
        # the update mode trains on every answer so far, from the newest model, with no curriculum unless asked
        is_step = labels_grew(run, manifest, r - 1)
        strategy = get_update(cfg.rounds.update) if is_step else get_strategy(cfg.rounds.strategy)
        weights = run.weights(r - 1, run.part("train")["id"]) if cfg.rounds.step_curriculum or not is_step else None
        previous = manifest.rounds.get(str(r - 1), {})
        if is_step:
            info |= {"kind": "step", "update": strategy.name, "curriculum": weights is not None} | batch_facts(run)
        context = RoundContext(
            round=r, config=cfg, weights=weights,
            previous=run.best_round(manifest.completed_rounds()) if previous.get("worse") and not is_step else r - 1,
            model_path=run.model_path,
            train=lambda train_config, **kw: train_round(run, r, train_config=train_config, callback=callback, **kw),
            refit_head=lambda backbone, **kw: refit_head_round(run, r, backbone_round=backbone, callback=callback,
                                                               **kw),
        )  # fmt: skip
        if not is_step:
            info["strategy"] = strategy.name
        metrics, info["init_round"] = strategy.build_round(context)
        best = run.best_round(manifest.completed_rounds())
        best_value = selection_value(run.val_metrics(best), cfg.rounds.select_by, cfg.threshold)
        value = selection_value(metrics, cfg.rounds.select_by, cfg.threshold)
        info["worse"] = bool(value < best_value - cfg.rounds.guard_tol)
    manifest.rounds[str(r)] = info
    manifest.mark(Step(r, "train"))
    note("round_end", {"round": r, "val": metrics} | info)


def _reference_step(run: Run, epochs: int, init_checkpoint, note, callback) -> None:
    """Train the equal-epochs reference when it is missing (:meth:`~hardmine.run.opened.Run.reference_run`)."""
    reference = run.reference_run(epochs)
    manifest = _verified_manifest(reference)
    step = Step(0, "train")
    if manifest.done(step):
        return
    label = f"reference ({epochs} epochs)"
    note("step", {"round": label, "step": "train"})
    metrics = train_round(reference, 0, init_checkpoint=init_checkpoint, callback=callback)
    manifest.mark(step)
    note("round_end", {"round": label, "val": metrics})


def adopt_reference(run: Run, n: int, source: RunFolder) -> bool:
    """Use ``source``'s round 0 as the equal-epochs reference of ``run`` aiming at round ``n``, instead of
    training the same recipe again; only when ``source`` trained exactly the reference's recipe
    (``hardmine compare``: the baseline run of round 0's recipe and budget, same seed).

    The reference's ``timing.json`` records the source's round-0 training time, so the guard's cost is
    still counted. Returns whether the reference was adopted (False: it will be trained).
    """
    cfg = run.config
    epochs = reference_epochs(cfg.rounds, cfg.train.epochs, n)
    if epochs is None or not same_round0(run, source, replace(cfg.train, epochs=epochs)):
        return False
    reference = run.reference_run(epochs)
    if not Manifest(reference.root).done(Step(0, "train")):
        _copy_round0(source, reference)
    distributed.barrier()
    return True


def share_round0(run: Run, source: RunFolder) -> bool:
    """Take ``source``'s trained round 0 as ``run``'s own when it is the same recipe, seed and data
    (``hardmine compare``: the ``oversample`` baseline is round 0 of every ``head`` method; the
    rounds of ``hardmine-X`` and ``no-mining-X`` start from one round 0). Its training time is added to
    ``run``'s. Returns whether ``run``'s round 0 is trained now (False: nothing was shared)."""
    manifest = Manifest(run.root)
    if manifest.done(Step(0, "train")) or run.is_trained(0):
        return True
    if not same_round0(run, source, run.config.train):
        return False
    if distributed.is_main():
        manifest.rounds["0"] = {"worse": False, "shared_from": os.path.relpath(source.root, run.root)}
        manifest.save()
        _copy_round0(source, run)
    distributed.barrier()
    return True


def same_round0(run: Run, source: RunFolder, train: TrainConfig) -> bool:
    """Whether ``source`` holds a trained round 0 of recipe ``train`` on ``run``'s sample table and split,
    its threshold tuned by the same rule."""
    if source.root.resolve() == run.root.resolve() or not (source.root / CONFIG_FILE).exists():
        return False
    try:
        config = source.run_config()
        same = _recipe(config.train) == _recipe(train) and config.threshold == run.config.threshold
        if not same or not source.is_trained(0):
            return False
        return all((source.root / name).read_bytes() == (run.root / name).read_bytes()
                   for name in (SAMPLES_FILE, SPLIT_FILE))  # fmt: skip
    except (OSError, HardmineError):
        return False


def _recipe(train: TrainConfig) -> dict[str, Any]:
    return comparable({"train": asdict(train)})["train"]


def _copy_round0(source: RunFolder, run: Run) -> None:
    """Copy ``source``'s trained round 0 into ``run`` and mark it trained, its time counted."""
    if distributed.is_main():
        for name in round0_trained_files():
            if (source.round_dir(0) / name).is_file():
                copy_file(source.round_dir(0) / name, run.round_dir(0) / name)
        seconds = read_json(source.metrics_path(0)).get("train_s")
        run.record_wall_time(source.wall_time() if seconds is None else float(seconds))
        Manifest(run.root).mark(Step(0, "train"))


def budget_reference(run: Run) -> Run | None:
    """The trained equal-epochs reference matching the run's completed rounds (None when there is none)."""
    rounds = Manifest(run.root).completed_rounds()
    epochs = reference_epochs(run.config.rounds, run.config.train.epochs, max(rounds, default=0))
    folder = run.reference()
    if epochs is None or folder is None or folder.run_config().train.epochs != epochs:
        return None
    return run.reference_run(epochs)


def write_report(run: Run, callback: Callback | None = None) -> dict[str, Any]:
    """Choose the best round on validation, evaluate it and round 0 on test, write ``report.json``.

    When the run has an equal-epochs reference, the model handed back (``returned``)
    is the reference unless the best round beats it on validation (a tie
    returns the reference: the plain recipe wins when mining buys nothing);
    ``test`` holds the returned model's test metrics.
    """
    distributed.barrier()
    manifest = Manifest(run.root)
    rounds = manifest.completed_rounds()
    steps = step_rounds(manifest)
    # active learning hands back the newest step unless validation shows it worse beyond its interval
    best, handed_back = hand_back(run, manifest) if steps else (run.best_round(rounds), None)
    config = run.config
    rows = []
    for r in rounds:
        row: dict[str, Any] = {"round": r, "val": run.val_metrics(r)}
        row.update(manifest.rounds.get(str(r), {}))
        row["mining"] = read_json(run.mining_path(r - 1)) if r > 0 and run.mining_path(r - 1).exists() else None
        rows.append(row)
    test = {r: metrics_on_test(run, r, callback=callback) for r in sorted({0, best})}
    from hardmine.views.report import difference_from_round0

    reference = None if steps else budget_reference(run)
    returned = "round"
    report: dict[str, Any] = {"rounds": rows, "best_round": best, "select_by": config.rounds.select_by}
    if handed_back is not None:
        report["handed_back"] = handed_back
        report["learning_curve"] = learning_curve(run, manifest, callback=callback)
    if reference is not None:
        ref_val = reference.val_metrics(0)
        value = {name: selection_value(metrics, config.rounds.select_by, config.threshold)
                 for name, metrics in (("best", run.val_metrics(best)), ("reference", ref_val))}  # fmt: skip
        returned = "reference" if value["reference"] >= value["best"] else "round"
        report["reference"] = {"epochs": reference.config.train.epochs, "val": ref_val,
                               "test": metrics_on_test(reference, 0, callback=callback)}  # fmt: skip
    report |= {
        "returned": returned,
        "test": report["reference"]["test"] if returned == "reference" else test[best],
        "test_best_round": test[best],
        "test_round0": test[0],
        "test_difference": difference_from_round0(run, best) if best != 0 and returned == "round" else {},
    }
    if config.data.split_from is not None:
        report["before"] = before_and_after(run, RunFolder(config.data.split_from), report)
    if distributed.is_main():
        write_json(run.root / REPORT_FILE, report)
        Manifest(run.root).refresh([run.root / REPORT_FILE])  # once recorded, the record follows every rewrite
    distributed.barrier()
    return report


def before_and_after(run: Run, earlier: RunFolder, report: dict[str, Any]) -> dict[str, Any]:
    """The model ``earlier`` hands back against the one ``run`` hands back, on ``run``'s test images
    (``--split-from``: the same lesions), with this run's labels (a relabel corrects them): per
    metric both values and the paired difference after - before with its bootstrap interval over
    test lesions. ``relabelled``: test images whose label changed since ``earlier``; ``recipe_changes``:
    how the two were trained differently (:func:`recipe_changes`), which the difference mixes in."""
    from hardmine.core.metrics import softmax
    from hardmine.core.paired import paired_differences
    from hardmine.engine.runtime import Engine

    test = run.part("test")
    earlier_folder, earlier_round = earlier.returned()
    engine = Engine(earlier_folder.run_config().train)
    logits, _ = engine.predict(engine.load_model(earlier_folder.verified_model_path(earlier_round)), test)
    returned_folder, returned_round = (budget_reference(run), 0) if report["returned"] == "reference" else (
        run, report["best_round"])  # fmt: skip
    after = returned_folder.preds(returned_round, "test").loc[test["id"], "prob_pos"].to_numpy()
    labels, groups = test["label"].to_numpy(), test["group"].to_numpy()
    before = softmax(logits)[:, 1]
    earlier_labels = earlier.samples().set_index("id")["label"].astype(int).reindex(test["id"]).to_numpy()
    known = ~np.isnan(earlier_labels)
    out: dict[str, Any] = {"run": str(earlier.root), "round": earlier_round, "images": len(test),
                           "lesions": int(test["group"].nunique()),
                           "relabelled": int((earlier_labels[known] != labels[known]).sum())}  # fmt: skip
    out["recipe_changes"] = recipe_changes(earlier, run)
    found = paired_differences(labels, groups, after, before, seed=run.config.train.seed)
    for name, values in found.items():  # a = after, b = before
        out[name] = {"before": values["b"], "after": values["a"]} | {k: values[k] for k in
                                                                      ("difference", "low", "high", "verdict")}
    return out


RECIPE_SECTIONS = ("train", "threshold", "rounds")


def recipe_changes(earlier: RunFolder, run: Run) -> list[str]:
    """``"section.key: A then, B now"`` for each training option (model, image size, epochs, loss, threshold
    rule, round strategy...) the two runs differ in, and their number of rounds; runtime-only options and the
    data (which a relabel changes on purpose) are left out."""
    from hardmine.record.config import comparable, differences

    def recipe(folder: RunFolder) -> dict:
        sections = comparable(folder.run_config().to_dict())
        return {name: sections[name] for name in RECIPE_SECTIONS} | {"rounds made": len(folder.rounds_with(MODEL_FILE))}

    return differences(recipe(earlier), recipe(run))


def finish(run: Run) -> dict[str, Path]:
    """Write ``report.html`` and the galleries of round 0, of the last round and of the mining that made
    the model the run hands back (rank 0 only).

    Returns the paths written (empty on other ranks); ``gallery`` is the page of the mining that made
    the returned model (:func:`hardmine.views.gallery.mining_story`), which links to the others.
    """
    if not distributed.is_main():
        return {}
    from hardmine.views.gallery import build_gallery, default_round
    from hardmine.views.report import write_html_report

    report = write_html_report(run.root)
    opened = default_round(run)
    for r in sorted({0, run.latest_round(None, needs=MINED_FILE)} - {opened}):
        build_gallery(run.root, r)
    return {"report": report, "gallery": build_gallery(run.root, opened)}  # last: it links to every other
