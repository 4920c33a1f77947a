"""The steps of a round, each writing into ``round-RRR/`` of an opened :class:`~hardmine.run.opened.Run`.

* :func:`train_round`: train a model (round 0, or a mining round on curriculum weights) and tune its threshold;
* :func:`refit_head_round`: keep a round's backbone, refit its last layer on the curriculum (``head`` strategy);
* :func:`evaluate`: metrics on validation (threshold tuned) or test (the validation threshold);
* :func:`score_round`: per-sample scores and embeddings of the training split;
* :func:`audit_split`: near-duplicate images across train/val/test;
* :func:`mine_round`: seeds, quarantine, neighbours and the next round's weights.

The algorithms live in their own modules; a step reads its inputs from the run
folder, calls them, and writes its outputs atomically.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError, damage_reason
from hardmine.core.io import atomic_path, load_array, read_json, write_csv, write_json, write_parquet_if_available
from hardmine.core.metrics import binary_metrics, softmax
from hardmine.core.mining import MiningConfig
from hardmine.engine import distributed
from hardmine.engine.inference import Callback
from hardmine.engine.runtime import Engine
from hardmine.record.config import ScoringConfig, TrainConfig
from hardmine.record.layout import AUDIT_FILE, MODEL_FILE, SPLIT_FILE
from hardmine.record.manifest import Manifest
from hardmine.run.opened import Run


def train_round(
    run: Run,
    r: int,
    *,
    sample_weights: np.ndarray | None = None,
    init_checkpoint: str | os.PathLike | None = None,
    train_config: TrainConfig | None = None,
    callback: Callback | None = None,
) -> dict[str, Any]:
    """Train round ``r`` into ``round-RRR/`` and evaluate it on validation.

    ``train_config`` overrides the run's training options for this round (a
    mining round fine-tunes with fewer epochs). A ``frozen`` configuration
    trains no epochs: the starting backbone is kept and its head fitted on
    its embeddings (:func:`refit_head_round`; class-balanced when the recipe
    balances classes, else unweighted). Returns the validation metrics
    (threshold tuned by the run's rule, plus ``best_epoch``), also written to
    ``round-RRR/metrics.json``.
    """
    from hardmine.engine.train import fit, save_state

    _check_both_classes(run, "val")
    config = train_config or run.config.train
    engine = Engine(run.config.train)
    model = engine.load_model(init_checkpoint) if init_checkpoint else engine.build_model()
    if config.frozen and init_checkpoint is None:  # the pretrained backbone as it is, its head fitted
        if distributed.is_main():
            save_state(run.round_dir(r) / MODEL_FILE, model.state_dict())
        distributed.barrier()
        if sample_weights is None and config.probability_prior(0.0) != 0.5:
            # a recipe that trains on the data as it is (ce, no oversampling) fits its head unweighted too
            sample_weights = np.ones(len(run.part("train")))
        return refit_head_round(run, r, backbone_round=r, sample_weights=sample_weights, callback=callback)
    start = time.perf_counter()
    result = fit(model, engine.dataset(run.part("train"), train=True), engine.dataset(run.part("val")), config,
                 run.round_dir(r), sample_weights=sample_weights, callback=callback)  # fmt: skip
    # train_s: what a run that shares this round 0 (hardmine compare) counts as its cost
    extra = {"best_epoch": result.best_epoch, "train_s": round(time.perf_counter() - start, 3)}
    return evaluate(run, r, "val", callback=callback, extra=extra)


def _check_both_classes(run: Run, split: str) -> None:
    """A threshold is tuned on validation: refuse a split of one class before training for it."""
    labels = run.part(split)["label"]
    if labels.nunique() < 2:
        raise HardmineError(f"the {split} split of {run.root / SPLIT_FILE} holds only one class ({int(labels.sum())} "
                            f"positive, {int((labels == 0).sum())} negative images), so no threshold can be tuned on "
                            "it: use more data, or larger --split fractions for val")  # fmt: skip


def refit_head_round(
    run: Run,
    r: int,
    *,
    backbone_round: int = 0,
    sample_weights: np.ndarray | None = None,
    callback: Callback | None = None,
) -> dict[str, Any]:
    """Round ``r`` = round ``backbone_round``'s backbone with a refitted last layer (``head`` strategy).

    The raw embeddings of the training and validation splits are computed once
    per backbone and cached (``features_<split>.npy``); the head is an L2
    logistic regression on them weighted by ``sample_weights`` (the curriculum),
    its strength chosen on validation by the run's ``select_by``
    (:func:`hardmine.core.head.fit_head`). Writes ``round-RRR/model.pt`` and
    evaluates it on validation like a trained round.
    """
    import torch

    from hardmine.core.head import fit_head
    from hardmine.record.record import selection_value

    cfg = run.config
    engine = Engine(cfg.train)
    start = time.perf_counter()
    model = engine.load_model(run.model_path(backbone_round))
    train_x, val_x = (_features(run, engine, model, backbone_round, name, callback) for name in ("train", "val"))

    def objective(labels: np.ndarray, prob: np.ndarray) -> float:
        metrics = binary_metrics(labels, prob, cfg.threshold.choose(labels, prob))
        return selection_value(metrics, cfg.rounds.select_by, cfg.threshold)

    head = fit_head(train_x, run.part("train")["label"].to_numpy(), val_x, run.part("val")["label"].to_numpy(),
                    objective, sample_weight=sample_weights)  # fmt: skip
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(head.weight, dtype=model.head.weight.dtype))
        model.head.bias.copy_(torch.as_tensor(head.bias, dtype=model.head.bias.dtype))
    if distributed.is_main():
        from hardmine.engine.train import save_state

        save_state(run.round_dir(r) / MODEL_FILE, model.state_dict())
    distributed.barrier()
    # backbone_round: scoring this round reads that round's cached features instead of a forward pass
    return evaluate(run, r, "val", callback=callback, extra={"head_C": head.C, "backbone_round": backbone_round,
                                                             "train_s": round(time.perf_counter() - start, 3)})


def _cached_backbone_features(run: Run, r: int, n: int) -> np.ndarray | None:
    """The raw training-split features of round ``r``'s backbone when ``r`` is a head refit and they are
    cached (``features_train.npy`` of its backbone round, ``n`` rows); else None."""
    metrics = run.metrics_path(r)
    backbone = read_json(metrics).get("backbone_round") if metrics.exists() else None
    if backbone is None:
        return None
    path = run.features_path(int(backbone), "train")
    try:
        features = load_array(path, mmap=True) if path.exists() else None
    except HardmineError:
        return None
    return features if features is not None and len(features) == n else None


def _features(run: Run, engine: Engine, model, r: int, split: str, callback: Callback | None) -> np.ndarray:
    """Raw embeddings of ``split`` under round ``r``'s model, cached in its round folder."""
    path = run.features_path(r, split)
    part = run.part(split)
    if path.exists():
        try:
            cached = load_array(path)
            if len(cached) == len(part):
                return cached
        except HardmineError:
            pass
        path.unlink()  # a damaged cache, or one from before answers joined the split, is recomputed
    _, emb = engine.predict(model, part, callback=callback)
    if distributed.is_main():
        with atomic_path(path, ".npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, emb.astype(np.float32))
    distributed.barrier()
    return emb


def evaluate(
    run: Run,
    r: int,
    split: str = "val",
    *,
    checkpoint: str | os.PathLike | None = None,
    ci: bool = False,
    plots: bool = False,
    callback: Callback | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of round ``r``'s model on ``split``.

    On ``val`` the threshold is tuned by the run's rule and saved in
    ``round-RRR/metrics.json``; on ``test`` that saved threshold is used (never
    tuned on test) and the result goes to ``round-RRR/metrics_test.json``.
    Per-sample probabilities go to ``round-RRR/preds_<split>.csv``.
    With ``plots``, ROC, PR and confusion-matrix PNGs are written beside them.
    """
    if split not in ("val", "test"):
        raise HardmineError(f"split {split!r} is not valid; expected val or test")
    out = run.round_dir(r)
    checkpoint = Path(checkpoint) if checkpoint else run.model_path(r)
    if not checkpoint.exists():
        raise HardmineError(f"checkpoint {checkpoint} not found")
    engine = Engine(run.config.train)
    part = run.part(split)
    logits, _ = engine.predict(engine.load_model(checkpoint), part, callback=callback)
    prob = softmax(logits)[:, 1]
    labels = part["label"].to_numpy()
    threshold = run.config.threshold.choose(labels, prob) if split == "val" else run.threshold(r)
    metrics = binary_metrics(labels, prob, threshold, ci=ci)
    metrics["threshold_rule"] = run.config.threshold.rule
    metrics.update(extra or {})
    if distributed.is_main():
        write_csv(run.preds_path(r, split), pd.DataFrame({"id": part["id"], "label": labels, "prob_pos": prob}))
        write_json(run.metrics_path(r, split), metrics)
        if plots:
            from hardmine.views.plots import evaluation_plots

            names = run.class_names()
            evaluation_plots(labels, prob, threshold, out, split, class_names=(names[0], names[1]))
        Manifest(run.root).refresh([run.preds_path(r, split), run.metrics_path(r, split)])
    distributed.barrier()
    return metrics


def metrics_on_test(run: Run, r: int, *, callback: Callback | None = None) -> dict[str, Any]:
    """Round ``r``'s test metrics: the saved ones when ``metrics_test.json`` and ``preds_test.csv`` were
    written after its model, else :func:`evaluate` on test (which writes both)."""

    saved = [run.metrics_path(r, "test"), run.preds_path(r, "test")]
    model_time = run.model_path(r).stat().st_mtime_ns
    if all(p.exists() and p.stat().st_mtime_ns >= model_time for p in saved):
        return read_json(saved[0])
    return evaluate(run, r, "test", callback=callback)


def score_round(
    run: Run,
    r: int,
    scoring: ScoringConfig | None = None,
    *,
    audit: bool = False,
    callback: Callback | None = None,
) -> dict[str, Any]:
    """Score the training split with round ``r``'s model.

    Writes ``round-RRR/scores.csv`` (training rows in split order; the score
    columns, plus ``confidence, variability, forgetting, dynamics`` from the
    recorded training dynamics, ``prob_pos_oof`` when networks are trained out of
    fold (``--scores oof`` or ``--triage networks``), and the label-suspicion evidence)
    and ``round-RRR/embeddings.npy`` (same row order, L2-normalised). With
    ``audit``, also :func:`audit_split`. Returns a summary (rows, embedding
    width, source, audit pair count).
    """
    from hardmine.core.scores import dynamics_scores, score_table
    from hardmine.engine.folds import out_of_fold_logits

    scoring = scoring or run.config.scoring
    scoring.validate()
    cfg = run.config.train
    engine = Engine(cfg)
    model = engine.load_model(run.model_path(r))
    threshold = run.threshold(r)
    train_part = run.part("train")
    labels = train_part["label"].to_numpy()
    features = None if scoring.tta else _cached_backbone_features(run, r, len(train_part))
    if features is not None:  # a head round: round 0's backbone under a refitted last layer, no forward pass
        from hardmine.engine.scoring import score_features

        table, emb, center = score_features(
            features, model.head.weight.detach().numpy(), model.head.bias.detach().numpy(), train_part["id"], labels,
            threshold=threshold, embedding_dtype=scoring.embedding_dtype, embeddings_path=run.embeddings_path(r))
    else:  # the raw embeddings are kept (without TTA): a head refit on this round's backbone reads them
        raw_path = None if scoring.tta else run.features_path(r, "train")
        table, emb, center = engine.score(model, train_part, threshold=threshold, tta=scoring.tta,
                                          embedding_dtype=scoring.embedding_dtype, callback=callback,
                                          embeddings_path=run.embeddings_path(r), raw_path=raw_path)  # fmt: skip
    dynamics_path = run.dynamics_path(r)
    if dynamics_path.exists():
        try:
            with np.load(dynamics_path, allow_pickle=False) as data:
                loss, p_true = data["loss"], data["p_true"]
        except (ValueError, KeyError, OSError, EOFError) as exc:
            raise HardmineError(f"{dynamics_path} is damaged ({damage_reason(exc, 120)}); "
                                "`hardmine round --out RUN --resume` retrains its round") from None
        if loss.ndim == 2 and loss.shape == p_true.shape and loss.shape[1] == len(table):
            table = pd.concat([table, dynamics_scores(loss, p_true)], axis=1)
    oof_prob = None
    if scoring.trains_networks():
        fold_config = replace(cfg, epochs=scoring.oof_epochs or cfg.epochs)
        # The fold networks depend on the split and round 0's recipe, not on the round: every round reuses round 0's.
        logits = out_of_fold_logits(train_part, fold_config, scoring.oof_folds, run.oof_dir(),
                                    seed=cfg.seed, callback=callback)  # fmt: skip
        oof_prob = score_table(train_part["id"], labels, logits, threshold)["prob_pos"].to_numpy()
    gathered = run.config.mining.quarantine == "suspicion"
    if gathered:
        scored = table if oof_prob is None else table.assign(prob_pos_oof=oof_prob)
        evidence = distributed.on_main(lambda: _evidence(run, scored, emb, run.config.mining.triage_k))
        table = table.assign(**evidence.columns())
    if oof_prob is not None:
        table["prob_pos_oof"] = oof_prob
    table["path"] = train_part["path"].to_numpy()  # so pandas and FiftyOne users can open the images directly
    if distributed.is_main():
        write_csv(run.scores_path(r), table)
        write_parquet_if_available(run.scores_path(r).with_suffix(".parquet"), table)
        # what this step ran with: `hardmine score` options may differ from config.json
        settings = {"gathered": gathered, "triage_k": run.config.mining.triage_k, "seed": cfg.seed}
        write_json(run.scoring_path(r), {"scoring": asdict(scoring), "evidence": settings})
    summary: dict[str, Any] = {"rows": len(table), "embedding_dim": int(emb.shape[1]), "source": scoring.source}
    if audit:
        summary["audit_pairs"] = audit_split(run, engine, model, emb, center, scoring.audit_sim)
    if distributed.is_main():
        written = [run.scores_path(r), run.scores_path(r).with_suffix(".parquet"), run.scoring_path(r),
                   run.embeddings_path(r), run.features_path(r, "train")]  # fmt: skip
        if audit:
            written.append(run.root / AUDIT_FILE)
        Manifest(run.root).refresh(written)
    distributed.barrier()
    return summary


def _evidence(run: Run, scores: pd.DataFrame, emb: np.ndarray, triage_k: int):
    """The round's label-suspicion evidence (:func:`hardmine.core.evidence.gather_evidence`) from its score table
    (training dynamics, the out-of-fold networks' probabilities when trained) and embeddings, with the run's seed."""
    from hardmine.core.evidence import gather_evidence
    from hardmine.core.suspicion import at_prior

    train_part = run.part("train")
    labels = train_part["label"].to_numpy()
    confidence = scores["confidence"].to_numpy() if "confidence" in scores else None
    balanced_oof = None
    if "prob_pos_oof" in scores:  # the evidence is class-balanced: fold networks' odds at a 50:50 prior
        prior = run.config.train.probability_prior(float(np.mean(labels)))
        balanced_oof = at_prior(scores["prob_pos_oof"].to_numpy(), prior, 0.5)
    return gather_evidence(labels, train_part["group"].to_numpy(), np.asarray(emb), confidence=confidence,
                           k=triage_k, seed=run.config.train.seed, oof_prob=balanced_oof)  # fmt: skip


def audit_split(run: Run, engine: Engine, model, train_embeddings: np.ndarray, center: np.ndarray,
                min_sim: float) -> int:
    """List image pairs across splits at least ``min_sim`` similar in ``RUN/split_audit.csv``.

    Val and test are embedded with ``model`` in the training set's space
    (centred on ``center``). Returns the number of pairs.
    """
    from hardmine.core.index import near_duplicate_pairs

    parts, ids, embs = [], [], []
    for name in ("train", "val", "test"):
        part = run.part(name)
        if name == "train":
            part_emb = train_embeddings
        else:
            _, part_emb, _ = engine.score(model, part, center=center)
        parts.append(np.full(len(part), name, dtype=object))
        ids.append(part["id"].to_numpy())
        embs.append(np.asarray(part_emb, dtype=np.float32))

    def write_pairs() -> int:
        pairs = near_duplicate_pairs(np.concatenate(embs), np.concatenate(ids), np.concatenate(parts), min_sim)
        write_csv(run.root / AUDIT_FILE, pairs)
        return len(pairs)

    return distributed.on_main(write_pairs)


def mine_round(run: Run, r: int, mining: MiningConfig | None = None, source: str | None = None) -> dict[str, Any]:
    """Mine round ``r``'s scores: writes ``mined.csv``, ``weights.csv`` and ``mining.json``.

    The weights are the curriculum for training round ``r + 1``; they are
    smoothed with round ``r - 1``'s weights and "persistent" triage looks at
    the seeds of earlier rounds. Under torchrun, rank 0 mines (faiss) and the
    others receive the summary.
    """
    mining = mining or run.config.mining
    mining.validate()
    return distributed.on_main(lambda: _mine_round(run, r, mining, source or run.config.scoring.source))


def _mine_round(run: Run, r: int, mining: MiningConfig, source: str) -> dict[str, Any]:
    from hardmine.core.mining import mine
    from hardmine.core.scores import mining_inputs

    scores = run.scores(r)
    emb = run.embeddings(r)
    train_part = run.part("train")
    ids = train_part["id"]
    if len(scores) != len(emb) or len(scores) != len(train_part) or (scores["id"].to_numpy() != ids.to_numpy()).any():
        raise HardmineError(
            f"{run.scores_path(r)} ({len(scores)} rows) does not match embeddings ({len(emb)}) "
            f"or the training split ({len(train_part)})"
        )
    from hardmine.core.suspicion import Evidence

    prob, signals = mining_inputs(scores, source)
    costs = run.config.threshold
    masks = [m for m in (run.seed_mask(q, ids) for q in range(r)) if m is not None]
    threshold = run.threshold(r)
    evidence, evidence_from = None, "none"
    if mining.quarantine == "suspicion":
        recorded = read_json(run.scoring_path(r))["evidence"] if run.scoring_path(r).exists() else {}
        evidence = Evidence.from_columns(scores) if recorded.get("triage_k") == mining.triage_k else None
        evidence_from = "scores" if evidence is not None else f"gathered at mining (triage_k={mining.triage_k})"
        if evidence is None:  # none scored, or scored with another vote: gathered again, once, with these options
            evidence = _evidence(run, scores, emb, mining.triage_k)
    result = mine(train_part["label"].to_numpy(), prob, emb, threshold=threshold, config=mining,
                  groups=train_part["group"].to_numpy(), triage_prob=prob, signals=signals,
                  hard_history=np.array(masks) if masks else None,
                  previous_weights=run.weights(r - 1, ids) if r > 0 else None,
                  evidence=evidence, trusted=mining.trusted_mask(train_part),
                  cost_fn=costs.cost_fn, cost_fp=costs.cost_fp,
                  seed=run.config.train.seed)  # fmt: skip
    mined = result.frame(ids.to_numpy())
    mined["path"] = mined["id"].map(dict(zip(ids, train_part["path"], strict=True)))
    write_csv(run.mined_path(r), mined)
    write_parquet_if_available(run.mined_path(r).with_suffix(".parquet"),
                               mined.assign(reasons=mined["reasons"].str.split("|")))  # fmt: skip
    write_csv(run.weights_path(r), pd.DataFrame({"id": ids, "weight": result.weights}))
    summary = result.stats | {"message": result.message, "threshold": threshold, "source": source}
    # what this step ran with: `hardmine mine` options may differ from config.json
    write_json(run.mining_path(r), summary | {"settings": mining.to_dict(), "evidence": evidence_from,
                                              "costs": {"cost_fn": costs.cost_fn, "cost_fp": costs.cost_fp}})
    Manifest(run.root).refresh([run.mined_path(r), run.mined_path(r).with_suffix(".parquet"), run.weights_path(r),
                                run.mining_path(r)])  # fmt: skip
    return summary
