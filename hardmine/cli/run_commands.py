"""Runs: train, evaluate, score, mine, the round loop, its report and compare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hardmine.cli.app import command
from hardmine.cli.options import (
    DATA,
    METHOD_OPTION_HELP,
    MINING,
    ROUND_HELP,
    ROUNDS,
    SCORING,
    THRESHOLD,
    TRAIN,
    Acquisition,
    parse_round,
    with_options,
)
from hardmine.cli.printing import (
    ProgressEvents,
    answer_counts,
    console,
    metrics_table,
    print_comparison,
    print_query,
    print_report,
    print_start,
    progress_bars,
)
from hardmine.core.acquisition import parse_options
from hardmine.core.errors import HardmineError, warn
from hardmine.record.config import RunConfig
from hardmine.record.layout import COMPARE_FILE, COMPARE_PAIRED_FILE, COMPARE_PAIRED_PNG, COMPARE_RUNS_FILE


@command("train")
@with_options(DATA, TRAIN, THRESHOLD)
def train_cmd(
    out: Annotated[Path, typer.Option("--out", help="Run directory.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run with another configuration.")] = False,
    config: RunConfig = None,
) -> None:
    """Train the initial model (round 0) and tune its threshold on validation."""
    from hardmine.run.opened import Run
    from hardmine.run.steps import train_round

    run = Run.create(out, config, overwrite=overwrite)
    print_start(run, 0)
    with progress_bars() as progress:
        metrics = train_round(run, 0, callback=ProgressEvents(progress))
    console.print(metrics_table({"val": metrics}, f"round 0, validation (threshold by {run.config.threshold.rule})"))
    console.print(f"model: {run.model_path(0)}; metrics: {run.metrics_path(0)}")

@command("evaluate")
def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")],
    split: Annotated[str, typer.Option(help="val (tunes the threshold) | test (uses the val threshold).")] = "val",
    round_: Annotated[str, typer.Option("--round", help=ROUND_HELP)] = "best",
    checkpoint: Annotated[Path | None, typer.Option(help="Model file (default: the round's model).")] = None,
    ci: Annotated[bool, typer.Option("--ci", help="Bootstrap 95% intervals for AUROC and sensitivity.")] = False,
) -> None:
    """Metrics table, metrics JSON and ROC / PR / confusion PNGs for a round."""
    from hardmine.record.layout import REPORT_FILE
    from hardmine.run.opened import Run
    from hardmine.run.steps import evaluate

    chosen = parse_round(round_)
    run = Run.open(run_dir)
    which = ""
    if chosen == "reference":
        reference = run.reference()
        if reference is None:
            raise HardmineError(f"{run.root} has no equal-epochs reference; --round best or a round number")
        run, r, which = Run.open(reference.root), 0, "the equal-epochs reference, "
    elif chosen is None and (run.root / REPORT_FILE).exists():
        source, r = run.returned()
        if source.root != run.root:  # the equal-epochs reference: a run folder of its own
            run, which = Run.open(source.root), "the equal-epochs reference, "
    else:
        r = run.latest_round(chosen)
    with progress_bars() as progress:
        metrics = evaluate(run, r, split, checkpoint=checkpoint, ci=ci, plots=True, callback=ProgressEvents(progress))
    console.print(metrics_table({split: metrics}, f"{which}round {r}, {split}"))
    console.print(f"wrote {run.metrics_path(r, split)} and roc_{split}.png, pr_{split}.png, confusion_{split}.png")

@command("score")
@with_options(SCORING)
def score_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")],
    round_: Annotated[
        int | None, typer.Option("--round", help="Round whose model scores (default: the latest).")
    ] = None,
    config: RunConfig = None,
) -> None:
    """Score the training set: scores.csv and embeddings.npy, plus the split audit."""
    from hardmine.record.layout import AUDIT_FILE
    from hardmine.run.opened import Run
    from hardmine.run.steps import score_round

    run = Run.open(run_dir)
    r = run.latest_round(round_)
    with progress_bars() as progress:
        summary = score_round(run, r, config.scoring, audit=True, callback=ProgressEvents(progress))
    console.print(
        f"scored {summary['rows']} training images ({summary['source']}); "
        f"embeddings {summary['embedding_dim']}-d -> {run.scores_path(r)}, {run.embeddings_path(r)}"
    )
    pairs = summary["audit_pairs"]
    console.print(f"split audit: {pairs} near-duplicate pair(s) across splits -> {run.root / AUDIT_FILE}")

@command("mine")
@with_options(MINING, SCORING)
def mine_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")],
    round_: Annotated[int | None, typer.Option("--round", help="Round to mine (default: the latest).")] = None,
    config: RunConfig = None,
) -> None:
    """Mine seeds, quarantine suspected label errors, expand to neighbours, write weights."""
    from hardmine.run.opened import Run
    from hardmine.run.steps import mine_round

    run = Run.open(run_dir)
    r = run.latest_round(round_)
    summary = mine_round(run, r, config.mining, config.scoring.source)
    if summary["message"]:
        console.print(summary["message"])
    console.print(
        f"round {r}: {summary['n_seeds']} seeds, {summary['n_neighbours']} neighbours, "
        f"{summary['n_quarantined']} quarantined; effective class ratio {summary['effective_class_ratio']:.3f}, "
        f"effective sample size {summary['effective_sample_size']:.0f} -> {run.mined_path(r)}, {run.weights_path(r)}"
    )

@command("round")
@with_options(DATA, TRAIN, THRESHOLD, MINING, SCORING, ROUNDS)
def round_cmd(
    out: Annotated[Path, typer.Option("--out", help="Run directory.")],
    n: Annotated[
        int | None,
        typer.Option(
            "--n", "--rounds", help="Mining rounds to add (round 0 first if missing; default 3, or 0 with --pool); "
            "with --oracle, queries to answer (default 3). Under torchrun use --rounds."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish an interrupted run up to the round it aimed for.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run with another configuration.")] = False,
    init_checkpoint: Annotated[Path | None, typer.Option(help="Start round 0 from this state dict.")] = None,
    pool: Annotated[Path | None, typer.Option("--pool", help="Unlabeled images (folder or CSV): end with a query "
                                              "of --budget images to label and its labeling page.")] = None,
    budget: Annotated[int | None, typer.Option("--budget", help="Images per query (with --pool; default 50).")] = None,
    method: Annotated[Acquisition | None, typer.Option("--method", help="Acquisition function (with --pool; default "
                                                       "hardmine).")] = None,
    method_option: Annotated[list[str] | None, typer.Option("--method-option", help=METHOD_OPTION_HELP)] = None,
    oracle: Annotated[str | None, typer.Option("--oracle", help="Benchmarks only: answer each query from this column "
                                               "of the pool CSV and run --n query rounds.")] = None,
    oracle_error: Annotated[float, typer.Option("--oracle-error", help="Benchmarks only: share of the oracle's "
                                                "answers given wrong.")] = 0.0,
    config: RunConfig = None,
) -> None:
    """Train, then mine and retrain round after round; report the best round on test."""
    from hardmine.record.layout import MINED_FILE, REPORT_FILE, REPORT_HTML
    from hardmine.run.opened import Run
    from hardmine.run.rounds import run_rounds

    if pool is None:
        given = [name for name, value in (("--oracle", oracle), ("--budget", budget), ("--method", method),
                                          ("--method-option", method_option or None)) if value is not None]  # fmt: skip
        if given:
            raise HardmineError(f"{given[0]} applies to queries of a pool: give --pool too (answers already added "
                                "with `hardmine label` are trained on without it)")  # fmt: skip
    if oracle is None and oracle_error:
        raise HardmineError("--oracle-error applies to a simulated oracle's answers: give --oracle COLUMN too")
    if n is None:
        n = 0 if pool is not None and oracle is None else 3
    budget = 50 if budget is None else budget
    method = "hardmine" if method is None else getattr(method, "value", method)
    method_options = parse_options(method, method_option or [])
    for message in config.unused_options():
        warn(message)
    if pool is not None:  # a pool that cannot be read is refused before the run is made or trained
        from hardmine.data.pool import load_pool

        load_pool(pool)
    run = Run.create(out, config, overwrite=overwrite)
    print_start(run, n)
    with progress_bars() as progress:
        if pool is None:
            report = run_rounds(run, n, resume=resume, init_checkpoint=init_checkpoint,
                                callback=ProgressEvents(progress))  # fmt: skip
        else:
            from hardmine.run.active import active_rounds

            report, picked, labeled = active_rounds(
                run, n, pool, budget, method=method, method_options=method_options, oracle=oracle,
                oracle_error=oracle_error, resume=resume, init_checkpoint=init_checkpoint,
                callback=ProgressEvents(progress))  # fmt: skip
    print_report(report)
    if pool is not None:
        for q, done in enumerate(labeled):
            console.print(f"query {q + 1}: oracle answered {answer_counts(done.counts)}; "
                          f"training split now {done.train_size}")
        print_query(run, picked, answered=bool(labeled))
    console.print(f"report: {run.root / REPORT_FILE}, {run.root / REPORT_HTML}")
    from hardmine.views.gallery import mining_story

    opened, story = mining_story(run)
    console.print(f"mined tables: {run.root}/round-*/{MINED_FILE}; gallery ({story}): {run.gallery_path(opened)}")

@command("report")
def report_cmd(run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")]) -> None:
    """Print the round table again and write report.html with its plots."""
    from hardmine.record.record import RunFolder
    from hardmine.views.report import write_html_report

    print_report(RunFolder(run_dir).report())
    console.print(f"wrote {write_html_report(run_dir)}")

@command("compare")
@with_options(DATA, TRAIN, THRESHOLD, MINING, SCORING, ROUNDS)
def compare_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder for all runs and the comparison table.")],
    seeds: Annotated[
        int, typer.Option("--seeds", help="Number of seeds (0, 1, ...) per method; few positives need >= 5.")
    ] = 5,
    n: Annotated[int, typer.Option("--n", "--rounds", help="Mining rounds of the hardmine methods.")] = 3,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            help="Comma list of ce, weighted-ce, oversample, focal, hardmine-<strategy>, "
            "no-mining-<strategy> (default: the four baselines, and hardmine and no-mining of --strategy).",
        ),
    ] = None,
    external: Annotated[
        Path | None, typer.Option("--external", help="Also score every model on this data set.")
    ] = None,
    subgroup: Annotated[
        str | None, typer.Option("--subgroup", help="Sensitivity per value of this metadata column.")
    ] = None,
    config: RunConfig = None,
) -> None:
    """Baselines against hardmine's strategies and their no-mining ablations at equal epochs, with paired
    bootstrap intervals against the best baseline."""
    from hardmine.run.compare import compare, epoch_budget, resolve_methods

    chosen = None if methods is None else [m.strip() for m in methods.split(",") if m.strip()]
    budget = epoch_budget(config, n, resolve_methods(chosen, config.rounds.strategy))
    trains = ("the backbone is frozen: every method fits its head on the same embeddings, no epochs"
              if config.train.frozen else f"every method trains {budget} epochs")  # fmt: skip
    console.print(f"{trains}; seeds 0..{seeds - 1}")
    with progress_bars() as progress:
        result = compare(config, out, list(range(seeds)), n, chosen, external=external, subgroup=subgroup,
                         callback=ProgressEvents(progress))  # fmt: skip
    print_comparison(result, seeds)
    console.print(f"wrote {Path(out) / COMPARE_FILE}, {COMPARE_RUNS_FILE}, {COMPARE_PAIRED_FILE}, {COMPARE_PAIRED_PNG}")
