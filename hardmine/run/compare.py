"""Honest comparison: the usual imbalance baselines against hardmine's round strategies.

Every method gets the same data, the same grouped split, the same threshold
rule (tuned on validation, applied to test) and the same seeds. Baselines
train for as many epochs as round 0 plus the mining rounds of the compared
strategies (``epoch_budget``; strategies whose budgets differ are refused, so
compare them in separate calls, which share the baseline runs); every run's
epochs and wall time are recorded.
``no-mining-<strategy>`` is the ablation: the same rounds with every mining
effect switched off (class-balanced weights only), which tells how much the
mined curriculum itself adds.

Against the best baseline (the one with the best mean *validation* value of
``select_by``; the test split chooses nothing), and each ``hardmine-<strategy>``
also against its ``no-mining-<strategy>`` ablation, every method gets per-seed
paired differences on the test split (and on an external set, and per value
of a metadata column) with a two-level bootstrap interval over seeds and test
lesions (:mod:`hardmine.core.paired`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError
from hardmine.core.io import write_csv
from hardmine.core.paired import METRICS, paired_difference, sensitivity
from hardmine.engine.inference import Callback
from hardmine.record.config import MiningConfig, RoundsConfig, RunConfig
from hardmine.record.layout import (
    COMPARE_FILE,
    COMPARE_PAIRED_FILE,
    COMPARE_PAIRED_PNG,
    COMPARE_RUNS_FILE,
    METRICS_FILE,
)
from hardmine.record.record import RunFolder
from hardmine.run.opened import Run, validate
from hardmine.run.rounds import adopt_reference, budget_reference, run_rounds, share_round0
from hardmine.run.steps import metrics_on_test, train_round
from hardmine.strategies import STRATEGIES, total_epochs

BASELINES: dict[str, dict[str, str]] = {
    "ce": {"loss": "ce", "sampling": "none"},
    "weighted-ce": {"loss": "weighted-ce", "sampling": "none"},
    "oversample": {"loss": "ce", "sampling": "oversample"},
    "focal": {"loss": "focal", "sampling": "none"},
}
# The same rounds with every mining effect switched off: no hardness or neighbour boost, no quarantine.
NO_MINING = {"alpha": 0.0, "beta": 0.0, "quarantine": "none"}


def method_table() -> dict[str, tuple[str, str | None]]:
    """Method name -> (kind, strategy): the baselines, then each registered strategy with and without mining."""
    return {**{name: ("baseline", None) for name in BASELINES},
            **{f"hardmine-{s}": ("hardmine", s) for s in STRATEGIES},
            **{f"no-mining-{s}": ("no-mining", s) for s in STRATEGIES}}  # fmt: skip


REPORTED = ("auroc", "auprc", "sens_at_spec90", "pauc_sens80", "sensitivity", "specificity")


def epoch_budget(config: RunConfig, n_rounds: int, methods: list[str] | None = None) -> int:
    """Epochs every method trains in total: round 0 plus ``n_rounds`` mining rounds of the strategies
    among ``methods`` (default: the configured strategy); head refits train no epochs.

    Raises :class:`HardmineError` when the strategies among ``methods`` train different budgets.
    """
    table = method_table()
    strategies = {table[m][1] for m in methods or () if m not in BASELINES} or {config.rounds.strategy}
    budgets = {s: total_epochs(replace(config.rounds, strategy=s), config.train.epochs, n_rounds)
               for s in sorted(strategies)}  # fmt: skip
    if len(set(budgets.values())) > 1:
        listed = ", ".join(f"{s} {b}" for s, b in budgets.items())
        raise HardmineError(f"strategies train different epoch budgets ({listed}); compare them in separate "
                            "calls (they share the baseline runs) or set --round-epochs to equalise them")  # fmt: skip
    return budgets.popitem()[1]


def resolve_methods(methods: list[str] | None, strategy: str) -> list[str]:
    """Canonical method names; ``hardmine`` and ``rounds-no-mining`` mean the configured strategy."""
    aliases = {"hardmine": f"hardmine-{strategy}", "rounds-no-mining": f"no-mining-{strategy}"}
    chosen = [*BASELINES, aliases["rounds-no-mining"], aliases["hardmine"]] if methods is None else methods
    resolved = [aliases.get(m, m) for m in chosen]
    known = method_table()
    unknown = [m for m in resolved if m not in known]
    if not resolved or unknown:
        raise HardmineError(f"methods {', '.join(unknown) or '(none)'}: expected some of "
                            f"{', '.join((*known, *aliases))}")  # fmt: skip
    return list(dict.fromkeys(resolved))


@dataclass
class Comparison:
    """What :func:`compare` measured: one row per run, mean/std per method, paired differences."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    paired: pd.DataFrame
    best_baseline: str | None


def compare(
    config: RunConfig,
    out: str | os.PathLike,
    seeds: list[int],
    n_rounds: int = 3,
    methods: list[str] | None = None,
    *,
    external: str | os.PathLike | None = None,
    subgroup: str | None = None,
    n_boot: int = 1000,
    callback: Callback | None = None,
) -> Comparison:
    """Train every method for every seed; compare them on test (and ``external``) data.

    Runs live in ``out/<method>/seed-<s>/`` and resume when called again.
    Writes ``out/compare_runs.csv``, ``out/compare.csv``, ``out/compare_paired.csv``
    and ``out/compare_paired.png``.
    """
    validate(config)
    out = Path(out)
    methods = resolve_methods(methods, config.rounds.strategy)
    budget = epoch_budget(config, n_rounds, methods)
    if not seeds:
        raise HardmineError("compare needs at least one seed")
    external_table = _external_table(config, external) if external is not None else None
    note = callback or (lambda event, info: None)
    rows, outputs = [], {}
    for seed in seeds:
        for method in methods:
            note("compare_start", {"method": method, "seed": seed})
            run, model, chosen = _run_method(config, out / method / f"seed-{seed}", method, seed, n_rounds, budget,
                                             callback)  # fmt: skip
            test = metrics_on_test(model, chosen)
            preds = model.preds(chosen, "test")
            outputs[method, seed] = {"test": preds["prob_pos"].to_numpy(), "threshold": test["threshold"],
                                     "val": model.val_metrics(chosen)}  # fmt: skip
            reference = run.reference()
            row = {"method": method, "seed": seed, "round": chosen, "returned_reference": float(model is not run),
                   "epochs": run.epochs_trained(),
                   "wall_s": run.wall_time() + (reference.wall_time() if reference else 0.0)}  # fmt: skip
            row |= {k: test[k] for k in REPORTED}
            if external_table is not None:
                prob = _external_prob(model, chosen, external_table, callback)
                outputs[method, seed]["external"] = prob
                row |= {f"ext_{k}": METRICS[k](external_table["label"].to_numpy(), prob) for k in METRICS}
            rows.append(row)
    runs = pd.DataFrame(rows)
    test_table = Run.open(out / methods[0] / f"seed-{seeds[0]}").part("test")
    datasets = {"test": test_table} | ({"external": external_table} if external_table is not None else {})
    summary = runs.groupby("method", sort=False)[[c for c in runs.columns if c not in ("method", "seed")]]
    summary = summary.agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    summary = summary.reset_index()
    if subgroup is not None:
        for name, table in datasets.items():
            summary = summary.merge(_subgroup_means(table, name, subgroup, outputs, methods, seeds), on="method")
    best = _best_baseline(methods, seeds, outputs, config)
    paired = paired_table(best, methods, seeds, outputs, datasets, subgroup, n_boot) if best else pd.DataFrame()
    write_csv(out / COMPARE_RUNS_FILE, runs)
    write_csv(out / COMPARE_FILE, summary)
    write_csv(out / COMPARE_PAIRED_FILE, paired)
    if len(paired):
        from hardmine.views.plots import paired_plot

        paired_plot(paired, out / COMPARE_PAIRED_PNG)
    return Comparison(runs, summary, paired, best)


def _run_method(config: RunConfig, root: Path, method: str, seed: int, n_rounds: int, budget: int,
                callback) -> tuple[Run, Run, int]:  # fmt: skip
    """Train (or resume) one method's run; return it, the run holding the model it hands back (itself,
    or its equal-epochs reference) and that model's round."""
    train_cfg = replace(config.train, seed=seed)
    start = time.perf_counter()
    if method in BASELINES:
        # Mining and round options never shape a baseline: saved at their defaults, so comparisons of
        # other strategies or mining settings reuse the baseline runs instead of refusing them.
        train_cfg = replace(train_cfg, epochs=budget, **BASELINES[method])
        run = Run.create(root, replace(config, train=train_cfg, mining=MiningConfig(), rounds=RoundsConfig()))
        if not run.is_trained(0) and not _share_sibling_round0(run, root):
            train_round(run, 0, callback=callback)
            run.record_wall_time(time.perf_counter() - start)
        return run, run, 0
    kind, strategy = method_table()[method]
    mining = config.mining if kind == "hardmine" else replace(config.mining, **NO_MINING)
    rounds = replace(config.rounds, strategy=strategy)
    run = Run.create(root, replace(config, train=train_cfg, mining=mining, rounds=rounds))
    for baseline in BASELINES:  # the equal-epochs reference is the baseline of round 0's recipe, when it ran
        if adopt_reference(run, n_rounds, RunFolder(root.parent.parent / baseline / root.name)):
            break
    _share_sibling_round0(run, root)
    done = run.rounds_with(METRICS_FILE)
    report = run_rounds(run, n_rounds, resume=True, callback=callback, finish_outputs=False)
    if done != run.rounds_with(METRICS_FILE):
        run.record_wall_time(time.perf_counter() - start)
    if report.get("returned") == "reference":
        return run, budget_reference(run), 0
    return run, run, int(report["best_round"])


def _share_sibling_round0(run: Run, root: Path) -> bool:
    """Take round 0 from another method's run of the same seed that trained the same recipe (the
    ``oversample`` baseline is round 0 of the ``head`` methods, ``hardmine-X`` and ``no-mining-X`` share
    theirs). Returns whether ``run``'s round 0 is trained now."""
    siblings = sorted(p / root.name for p in root.parent.parent.iterdir() if p.is_dir() and p != root.parent)
    return any(share_round0(run, RunFolder(sibling)) for sibling in siblings if sibling.is_dir())


def _external_table(config: RunConfig, external: str | os.PathLike) -> pd.DataFrame:
    from hardmine.data.sources import load_samples

    d = config.data
    table, _ = load_samples(Path(external).resolve(), d.source, positive=d.positive, negative=d.negative,
                            verify_images=d.verify, skip_bad=d.skip_bad)  # fmt: skip
    return table


def _external_prob(run: Run, r: int, table: pd.DataFrame, callback) -> np.ndarray:
    """P(positive) of round ``r``'s model on the external table, cached in the run folder."""
    from hardmine.core.metrics import softmax
    from hardmine.engine.runtime import Engine

    path = run.external_preds_path(r)
    if path.exists():
        cached = pd.read_csv(path, dtype={"id": str})
        if list(cached["id"]) == list(table["id"].astype(str)):
            return cached["prob_pos"].to_numpy()
    engine = Engine(run.config.train)
    logits, _ = engine.predict(engine.load_model(run.model_path(r)), table, callback=callback)
    prob = softmax(logits)[:, 1]
    write_csv(path, pd.DataFrame({"id": table["id"].astype(str), "label": table["label"], "prob_pos": prob}))
    return prob


def _best_baseline(methods, seeds, outputs, config: RunConfig) -> str | None:
    """The baseline with the best mean validation value of ``select_by`` (None without baselines)."""
    from hardmine.record.record import selection_value

    baselines = [m for m in methods if m in BASELINES]
    if not baselines:
        return None
    select_by, threshold = config.rounds.select_by, config.threshold
    value = {m: np.mean([selection_value(outputs[m, s]["val"], select_by, threshold) for s in seeds])
             for m in baselines}  # fmt: skip
    return max(baselines, key=lambda m: value[m])


def _decisions(outputs, method, seeds, dataset: str) -> np.ndarray:
    return np.array([outputs[method, s][dataset] >= outputs[method, s]["threshold"] for s in seeds], dtype=float)


def _subgroup_means(table, dataset, column, outputs, methods, seeds) -> pd.DataFrame:
    """Mean sensitivity per value of ``column`` at each run's validation-tuned threshold."""
    if column not in table:
        raise HardmineError(f"--subgroup {column!r} is not a column of the {dataset} data; "
                            f"columns: {', '.join(map(str, table.columns))}")  # fmt: skip
    values = table[column].astype(str).to_numpy()
    y = table["label"].to_numpy()
    rows = []
    for method in methods:
        decided = _decisions(outputs, method, seeds, dataset)
        row = {"method": method}
        for v in sorted(set(values[y == 1])):
            mask = values == v
            row[f"{dataset}_sens[{column}={v}]"] = float(np.mean([sensitivity(y[mask], d[mask]) for d in decided]))
        rows.append(row)
    return pd.DataFrame(rows)


def paired_table(best: str, methods: list[str], seeds: list, outputs: dict, datasets: dict[str, pd.DataFrame],
                 subgroup: str | None = None, n_boot: int = 1000) -> pd.DataFrame:  # fmt: skip
    """Every method against ``best``, and each ``hardmine-<s>`` against ``no-mining-<s>`` (what the
    mining itself adds) when both ran: the ``compare_paired.csv`` table.

    ``outputs[method, seed]`` holds ``{dataset: (N,) P(positive), "threshold": float}`` for every name
    of ``datasets`` (tables with ``label``, ``group`` and ``subgroup`` columns, rows in the order of
    the probabilities); the subgroup sensitivities use each run's threshold.
    """
    pairs = [(m, best) for m in methods if m != best]
    pairs += [(m, f"no-mining-{m.split('-', 1)[1]}") for m in methods
              if m.startswith("hardmine-") and f"no-mining-{m.split('-', 1)[1]}" in methods]  # fmt: skip
    rows = []
    for name, table in datasets.items():
        y, groups = table["label"].to_numpy(), table["group"].to_numpy()
        for method, reference in pairs:
            for metric, fn in METRICS.items():
                a = np.array([outputs[method, s][name] for s in seeds])
                b = np.array([outputs[reference, s][name] for s in seeds])
                rows.append(_paired_row(name, metric, method, reference, paired_difference(y, groups, a, b, fn,
                                                                                          n_boot=n_boot)))  # fmt: skip
            if subgroup is None:
                continue
            values = table[subgroup].astype(str).to_numpy()
            for v in sorted(set(values[y == 1])):
                mask = values == v
                a, b = (_decisions(outputs, m, seeds, name)[:, mask] for m in (method, reference))
                result = paired_difference(y[mask], groups[mask], a, b, sensitivity, n_boot=n_boot)
                rows.append(_paired_row(name, f"sens[{subgroup}={v}]", method, reference, result))
    return pd.DataFrame(rows)


def _paired_row(dataset, metric, method, best, result) -> dict[str, Any]:
    return {"dataset": dataset, "metric": metric, "method": method, "baseline": best, "difference": result.estimate,
            "low": result.low, "high": result.high, "verdict": result.verdict}  # fmt: skip
