"""Flip detection: hardmine's label-suspicion triage against cleanlab, on every flipped training label.

For each data set (demo data seeds at 32 and 64 px, round 0 of 4 epochs and
of the default 20; optionally the digits benchmark from ``make_digits.py``),
round 0 is trained and scored once (cached under ``--work``), then:

* hardmine: the default mining step (``hardmine.core.mining.mine``), which
  quarantines by label suspicion; reported over **all** flipped training
  labels: the share quarantined, the share upweighted (made a seed or a
  neighbour), the quarantine's size against the number of flips, and the lift
  of planted hard cases among the mined;
* cleanlab: ``cleanlab.filter.find_label_issues`` on the out-of-fold head
  probabilities hardmine computes (the same probabilities), and on the
  in-sample ones;
* with ``--oof-epochs E``, a second row per setting: the evidence of 4 (``--oof-folds``) networks
  of E epochs trained out of fold (what ``--triage networks --oof 4
  --oof-epochs E`` trains; once per data set and size, cached as
  ``WORK/oof-<data>-eE-s<px>``, ``WORK/oofK-...`` for other fold counts), with hardmine's default rule for that
  evidence and cleanlab on the same networks' probabilities (``cl_oof``);
  seeds still come from round 0's in-sample probabilities, as with
  ``--triage networks`` and the default ``--scores insample``;
* for the planted hard cases: the share the seed bar keeps out (``hard_barred``), and
  the lift of the evidence's own hardest images the bar lets through, at the mined
  share of the rule measured (``hard_lift_ranked``: what ranking by the networks' P(other
  class) alone would reach);
* precision, recall and F1 of flip detection for each, and the AUROC of each
  score (hardmine's suspicion, cleanlab's label quality) for telling flips
  from clean images.

cleanlab is a benchmark-only extra (``pip install -e '.[bench]'``).

Usage::

    python benchmarks/bench_triage.py --work /tmp/triage [--seeds 0 1 2 3] [--epochs 4 20] [--sizes 32 64]
    python benchmarks/bench_triage.py --work /tmp/triage --digits /tmp/digits/pool --epochs 20 --sizes 32
    python benchmarks/bench_triage.py --work /tmp/triage --sizes 32 64 --digits /tmp/digits/pool --oof-epochs 20
    python benchmarks/bench_triage.py --work /tmp/triage --oof-epochs 20 --seed-suspicion 1.0 --max-frac 0.1
    python benchmarks/bench_triage.py --work /tmp/triage --backbone pretrained --epochs 1 --sizes 128 --seeds 0 1 2 3 4
    python benchmarks/bench_triage.py --work /tmp/triage --epochs 20 --sizes 32 --trusted '' dx_type=histo
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from substrates import BACKBONES  # benchmarks/substrates.py

from hardmine.core.mining import MiningConfig, mine
from hardmine.core.scores import mining_inputs
from hardmine.core.suspicion import Evidence, at_prior
from hardmine.data.synth import generate_demo
from hardmine.record.config import DataConfig, RunConfig, ScoringConfig, TrainConfig
from hardmine.run.opened import Run
from hardmine.run.steps import score_round, train_round


def prepared_run(work: Path, data: Path, epochs: int, size: int, augment: str, backbone: str = "tiny") -> Run:
    """Round 0 trained and scored (resumes from ``work``); ``backbone`` names one of ``substrates.BACKBONES``."""
    # the folder's path in the name: two data sets in folders of the same name (digits' pool) never share a run
    where = hashlib.sha1(str(data.resolve()).encode()).hexdigest()[:6]
    root = work / f"{data.name}-{where}-e{epochs}-s{size}{'' if backbone == 'tiny' else '-' + backbone}"
    train = TrainConfig(**BACKBONES[backbone], image_size=size, epochs=epochs, device="cpu", num_workers=0,
                        augment=augment)  # fmt: skip
    # a cached run is re-opened as it is: its round 0 does not depend on the mining options
    if (root / "split.csv").exists():
        run = Run.open(root)
    else:
        run = Run.create(root, RunConfig(DataConfig(data=str(data)), train))
    if not (run.round_dir(0) / "metrics.json").exists():
        train_round(run, 0)
    if not (run.round_dir(0) / "scores.csv").exists():
        score_round(run, 0)
    return run


def fold_network_prob(work: Path, data: Path, epochs: int, size: int, augment: str, folds: int = 4) -> np.ndarray:
    """(N,) P(positive) of the training split from ``folds`` networks of ``epochs`` epochs trained out of fold,
    at the balanced prior (cached in a copy of the ``epochs``-epoch run, scored with ``--scores oof``)."""
    run = prepared_run(work, data, epochs, size, augment)
    copy = work / f"oof{'' if folds == 4 else folds}-{run.root.name}"
    if not copy.exists():
        shutil.copytree(run.root, copy)
    networks = Run.open(copy)
    if "prob_pos_oof" not in networks.scores(0):
        score_round(networks, 0, ScoringConfig(source="oof", oof_folds=folds))
    prior = networks.config.train.probability_prior(float(networks.part("train")["label"].mean()))
    return at_prior(networks.scores(0)["prob_pos_oof"].to_numpy(), prior, 0.5)


def _prf(found: np.ndarray, flipped: np.ndarray) -> tuple[float, float, float]:
    tp = int((found & flipped).sum())
    precision = tp / max(found.sum(), 1)
    recall = tp / max(flipped.sum(), 1)
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


def hard_lift_reference(labels: np.ndarray, evidence: Evidence, barred: np.ndarray, hard: np.ndarray,
                        share: float) -> dict[str, float]:  # fmt: skip
    """What the seed bar costs the planted hard cases, and what the triage evidence's own ranking reaches.

    ``hard_barred``: share of planted hard cases ``barred`` ((N,) bool: quarantined, or doubt at or
    above the seed bar) from being seeds or neighbours. ``hard_lift_ranked``: lift of the planted hard
    cases among the images the bar lets through ranked by the evidence's P(other class) (for the
    networks, hardness evidence that never saw the image), the top ``share`` of each class: the
    mined share of the rule measured, so the two lifts compare at equal size.
    """
    top = np.zeros(len(labels), dtype=bool)
    for cls in (0, 1):
        members = np.flatnonzero(~barred & (labels == cls))
        top[members[np.argsort(-evidence.oof[members], kind="stable")][: int(share * (labels == cls).sum())]] = True
    return {"hard_barred": float(barred[hard].mean()),
            "hard_lift_ranked": float(top[hard].mean() / max(top.mean(), 1e-12))}  # fmt: skip


def evaluate(run: Run, planted: pd.DataFrame, networks_prob: np.ndarray | None = None,
             config: MiningConfig | None = None) -> dict[str, float]:  # fmt: skip
    """One row of figures; with ``networks_prob`` ((N,) balanced P(positive) of networks trained out of
    fold) hardmine's evidence and cleanlab's ``cl_oof`` probabilities are theirs; ``config``: the mining
    options (the defaults when None)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    scores = run.scores(0)
    part = run.part("train")
    labels, groups = part["label"].to_numpy(), part["group"].to_numpy()
    emb = np.load(run.round_dir(0) / "embeddings.npy")
    prob, signals = mining_inputs(scores, "insample")
    flipped = part["id"].isin(planted.loc[planted["kind"] == "flipped", "image_id"]).to_numpy()
    hard = part["id"].isin(planted.loc[planted["kind"] == "hard", "image_id"]).to_numpy()
    start = time.perf_counter()
    config = config or MiningConfig()
    trusted = config.trusted_mask(part)
    result = mine(labels, prob, emb, threshold=run.threshold(0), config=config, groups=groups, signals=signals,
                  oof_prob=networks_prob, trusted=trusted)  # fmt: skip
    seconds = time.perf_counter() - start
    evidence: Evidence = result.evidence
    suspicion = evidence.score()
    mined = np.zeros(len(labels), dtype=bool)
    mined[result.seeds] = True
    mined |= result.neighbour > 0
    row = {"flips": int(flipped.sum()), "quarantined": int(result.quarantined.sum()),
           "flips_quarantined": float(result.quarantined[flipped].mean()),
           "flips_upweighted": float(mined[flipped].mean()),
           "quarantine_per_flip": float(result.quarantined.sum() / max(flipped.sum(), 1)),
           "trusted": int(0 if trusted is None else trusted.sum()),
           "flips_trusted": int(0 if trusted is None else trusted[flipped].sum()),
           "hard_lift": float(mined[hard].mean() / max(mined.mean(), 1e-12)), "mine_s": seconds}  # fmt: skip
    row |= hard_lift_reference(labels, evidence, result.quarantined | (evidence.doubt() >= config.seed_suspicion),
                               hard, mined.mean())  # fmt: skip
    oof_pos = np.where(labels == 1, 1 - evidence.oof, evidence.oof)
    p, r, f = _prf(result.quarantined, flipped)
    row |= {"hm_precision": p, "hm_recall": r, "hm_f1": f, "hm_auroc": roc_auc_score(flipped, suspicion)}
    for name, pos in (("cl_oof", oof_pos), ("cl_insample", prob)):
        probs = np.stack([1 - pos, pos], axis=1)
        issues = find_label_issues(labels, probs)
        p, r, f = _prf(issues, flipped)
        quality = get_label_quality_scores(labels, probs)
        row |= {f"{name}_precision": p, f"{name}_recall": r, f"{name}_f1": f,
                f"{name}_auroc": roc_auc_score(flipped, -quality)}  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3])
    parser.add_argument("--epochs", type=int, nargs="*", default=[4, 20])
    parser.add_argument("--sizes", type=int, nargs="*", default=[32, 64])
    parser.add_argument("--digits", type=Path, help="also the digits pool from benchmarks/make_digits.py")
    parser.add_argument("--oof-epochs", type=int, help="also the evidence of 4 networks of this many epochs "
                        "trained out of fold (hardmine score --triage networks --oof-epochs E)")
    parser.add_argument("--oof-folds", type=int, default=4, help="how many networks --oof-epochs trains")
    parser.add_argument("--backbone", choices=tuple(BACKBONES), default="tiny",
                        help="the substrate (benchmarks/substrates.py); pretrained is frozen: --epochs do nothing")
    parser.add_argument("--csv", type=Path, help="also write every row to this CSV")
    parser.add_argument("--seed-suspicion", type=float, default=MiningConfig.seed_suspicion,
                        help="the seed bar (hardmine mine --seed-suspicion); 1 lets every unquarantined image seed")
    parser.add_argument("--max-frac", type=float, default=MiningConfig.max_frac, help="the per-class seed quota")
    parser.add_argument("--trusted", nargs="*", default=[""],
                        help="one row per rule (hardmine --trusted; '' trusts none), e.g. --trusted '' dx_type=histo")
    args = parser.parse_args()
    configs = {rule: MiningConfig(seed_suspicion=args.seed_suspicion, max_frac=args.max_frac, trusted=rule)
               for rule in args.trusted}  # fmt: skip
    sets = []
    for seed in args.seeds:
        data = args.work / f"demo-{seed}"
        if not (data / "HAM10000_metadata.csv").exists():
            generate_demo(data, seed=seed, size=max(args.sizes))  # images as large as the model sees them
        sets.append((f"demo seed {seed}", data, "dermoscopy"))
    if args.digits:
        sets.append(("digits", args.digits.resolve(), "light"))
    rows = []
    for name, data, augment in sets:
        planted = pd.read_csv(data / "planted.csv", dtype={"image_id": str})
        for size in args.sizes:
            for epochs in args.epochs:
                run = prepared_run(args.work, data, epochs, size, augment, args.backbone)
                setting = {"data": name, "px": size, "epochs": epochs, "backbone": args.backbone}
                first = len(rows)
                for rule, config in configs.items():
                    rows.append(setting | {"evidence": "head", "rule": rule or "none"}
                                | evaluate(run, planted, config=config))  # fmt: skip
                    if args.oof_epochs:
                        networks = fold_network_prob(args.work, data, args.oof_epochs, size, augment, args.oof_folds)
                        rows.append(setting | {"evidence": f"{args.oof_folds} networks {args.oof_epochs} ep",
                                               "rule": rule or "none"} | evaluate(run, planted, networks, config))
                print(pd.DataFrame(rows[first:]).round(3).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    if args.csv:
        table.to_csv(args.csv, index=False)
    pd.set_option("display.width", 250)
    print(table.round(3).to_string(index=False))
    means = table.groupby(["evidence", "rule"]).mean(numeric_only=True).drop(columns=["px", "epochs"]).round(3)
    print("\nmean over all settings:\n" + means.T.to_string())


if __name__ == "__main__":
    main()
