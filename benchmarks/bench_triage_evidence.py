"""Which evidence should the label triage trust? Class-balanced (the default) against alternatives.

Re-scores the round-0 runs that ``bench_triage.py`` caches under ``--work`` (same probabilities
and embeddings, default mining otherwise) with label-suspicion evidence built five ways:

* ``balanced``: the default (balanced out-of-fold head, prior-divided neighbour vote, dynamics);
* ``prior``: head and neighbour vote at the data's own class prior;
* ``mix``: the mean of the two;
* ``per class``: a positive label judged with the prior evidence, a negative with the balanced;
* with ``--oof``, ``OOF backbones``: the head replaced by 4 backbones trained out of fold
  (``score_round`` with ``--scores oof``, run once into ``WORK/oof-<run>``), raw and with their
  oversampled odds mapped back to the natural prior;
* with ``--oof-epochs E`` (after ``--oof``), ``OOF networks (E ep)``: what ``hardmine score
  --scores oof --oof-epochs E`` gives every cached run whatever its round-0 length: the fold
  networks of the E-epoch run's ``oof-`` copy (the same folds, seed and recipe as
  ``--oof-epochs E`` trains), the round's own neighbours and dynamics; seeds from the round's
  in-sample probabilities (score with ``--scores oof``, mine with ``--scores insample``) or
  from the fold networks (``--scores oof`` throughout).

Every figure counts all flipped labels of the training split: the share quarantined, the share
upweighted (made a seed or a neighbour), the quarantine's size against the number of flips, and
the lift of planted hard cases among the mined (and the share of them quarantined). Usage (after ``bench_triage.py``)::

    python benchmarks/bench_triage_evidence.py --work /tmp/triage [--oof]
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine.core.evidence import gather_evidence
from hardmine.core.mining import MiningConfig, mine
from hardmine.core.scores import mining_inputs
from hardmine.core.suspicion import Evidence
from hardmine.record.config import ScoringConfig
from hardmine.run.opened import Run
from hardmine.run.steps import score_round

RULES = [(None, 0.55), (0.7, 0.55), (0.6, 0.45)]  # (quarantine at, seed below); None: the evidence's default


def _with_oof(evidence: Evidence, oof_wrong: np.ndarray) -> Evidence:
    """The evidence with networks trained out of fold in place of the head (their evidence is the suspicion)."""
    return Evidence.of(oof_wrong, evidence.neighbours, evidence.dynamics, evidence.neighbours_other,
                    evidence.neighbours_seen, networks=True)  # fmt: skip


def variants(run: Run, scores: pd.DataFrame, labels, groups, emb) -> dict[str, Evidence]:
    confidence = scores["confidence"].to_numpy() if "confidence" in scores else None
    balanced = gather_evidence(labels, groups, emb, confidence=confidence)
    prior = gather_evidence(labels, groups, emb, confidence=confidence, balanced=False)
    pos = labels == 1
    out = {
        "balanced": balanced,
        "prior": prior,
        "mix": Evidence.of((balanced.oof + prior.oof) / 2, (balanced.neighbours + prior.neighbours) / 2,
                        balanced.dynamics, balanced.neighbours_other, balanced.neighbours_seen),  # fmt: skip
        "per class": Evidence.of(np.where(pos, prior.oof, balanced.oof), np.where(pos, prior.neighbours,
                              balanced.neighbours), balanced.dynamics, balanced.neighbours_other,
                              balanced.neighbours_seen),  # fmt: skip
    }
    if "prob_pos_oof" in scores:
        p = scores["prob_pos_oof"].to_numpy()
        wrong = lambda q: np.where(pos, 1 - q, q)  # noqa: E731 - P(the other class)
        out["OOF backbones"] = _with_oof(balanced, wrong(p))
        prior_odds = labels.mean() / (1 - labels.mean()) if run.config.train.sampling == "oversample" else 1.0
        odds = p / np.clip(1 - p, 1e-9, None) * prior_odds
        out["OOF backbones, prior-corrected"] = _with_oof(balanced, wrong(odds / (1 + odds)))
    return out


def evaluate(run: Run, networks: Run | None = None) -> list[dict]:
    """Rows of every evidence variant; with ``networks`` (a run whose scores hold ``prob_pos_oof``) only the
    ``OOF networks`` variants, their fold networks' probabilities standing in for this run's."""
    part = run.part("train")
    labels, groups = part["label"].to_numpy(), part["group"].to_numpy()
    planted = pd.read_csv(Path(run.config.data.data) / "planted.csv", dtype=str)
    flipped = part["id"].isin(planted.loc[planted["kind"] == "flipped", "image_id"]).to_numpy()
    hard = part["id"].isin(planted.loc[planted["kind"] == "hard", "image_id"]).to_numpy()
    scores = run.scores(0)
    prob, signals = mining_inputs(scores, "insample")
    emb = np.asarray(run.embeddings(0))
    choices = {name: (evidence, prob) for name, evidence in variants(run, scores, labels, groups, emb).items()}
    if networks is not None:
        if list(networks.part("train")["id"]) != list(part["id"]):
            raise SystemExit(f"{networks.root} holds another training split than {run.root}")
        fold_prob = networks.scores(0)["prob_pos_oof"].to_numpy()
        evidence = variants(run, scores.assign(prob_pos_oof=fold_prob), labels, groups, emb)["OOF backbones"]
        epochs = networks.config.train.epochs
        choices = {f"OOF networks ({epochs} ep), in-sample seeds": (evidence, prob),
                   f"OOF networks ({epochs} ep), seeds from them": (evidence, fold_prob)}  # fmt: skip
    rows = []
    for name, (evidence, seed_prob) in choices.items():
        for quarantine_at, seed_below in RULES:
            config = MiningConfig(suspicion_threshold=quarantine_at, seed_suspicion=seed_below)
            result = mine(labels, seed_prob, emb, threshold=run.threshold(0), config=config, groups=groups,
                          signals=signals, evidence=evidence)  # fmt: skip
            mined = np.zeros(len(labels), dtype=bool)
            mined[result.seeds] = True
            mined |= result.neighbour > 0
            rule = f"{quarantine_at or 'default'} / {seed_below}"
            rows.append({"run": run.root.name, "evidence": name, "rule": rule,
                         "flips": int(flipped.sum()), "quarantined": float(result.quarantined[flipped].mean()),
                         "upweighted": float(mined[flipped].mean()),
                         "quarantine_per_flip": float(result.quarantined.sum() / max(flipped.sum(), 1)),
                         "hard_lift": float(mined[hard].mean() / max(mined.mean(), 1e-12)) if hard.any()
                         else float("nan"),
                         "hard_quarantined": float(result.quarantined[hard].mean()) if hard.any()
                         else float("nan")})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="bench_triage.py's --work folder")
    parser.add_argument("--oof", action="store_true", help="also evidence from 4 out-of-fold backbones")
    parser.add_argument("--oof-epochs", type=int, help="also evidence from the fold networks of this many epochs "
                        "for every round-0 length (needs --oof's copies of the runs of this length)")
    args = parser.parse_args()
    rows = []
    cached_runs = [p for p in args.work.glob("*-e*-s*") if (p / "split.csv").exists() and not p.name.startswith("oof-")]
    for cached in sorted(cached_runs):
        run = Run.open(cached)
        if args.oof:
            copy = args.work / f"oof-{cached.name}"
            if not copy.exists():
                shutil.copytree(cached, copy)
            run = Run.open(copy)
            if "prob_pos_oof" not in run.scores(0):
                score_round(run, 0, ScoringConfig(source="oof", oof_folds=4))
        rows += evaluate(run)
        if args.oof_epochs:
            source = args.work / ("oof-" + re.sub(r"-e\d+-", f"-e{args.oof_epochs}-", cached.name))
            rows += evaluate(Run.open(cached), Run.open(source))
        print(f"{run.root.name}: done", flush=True)
    table = pd.DataFrame(rows)
    table["set"] = table["run"].str.replace(r"^(oof-)?(.*?)(-\d+)?-(e\d+)-s(\d+)$", r"\2 \4 \5px", regex=True)
    summary = table.groupby(["set", "evidence", "rule"], sort=False).agg(
        quarantined=("quarantined", "mean"), quarantined_min=("quarantined", "min"),
        upweighted=("upweighted", "mean"), upweighted_max=("upweighted", "max"),
        quarantine_per_flip=("quarantine_per_flip", "mean"), hard_lift=("hard_lift", "mean"),
        hard_quarantined=("hard_quarantined", "mean"))  # fmt: skip
    pd.set_option("display.width", 250)
    print(summary.round(2).to_string())


if __name__ == "__main__":
    main()
