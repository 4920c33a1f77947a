"""The ``hardmine`` command line (typer). Thin: parse, call the library, draw tables."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from hardmine import __version__
from hardmine.cli.options import (
    DATA,
    MINING,
    ROUNDS,
    SCORING,
    THRESHOLD,
    TRAIN,
    Acquisition,
    PanelledCommand,
    with_options,
)
from hardmine.cli.printing import (
    ProgressEvents,
    answer_counts,
    console,
    err_console,
    frame_table,
    metrics_table,
    print_comparison,
    print_query,
    print_report,
    progress_bars,
)
from hardmine.core.errors import HardmineError, HardmineWarning, warn
from hardmine.record.config import RunConfig, check_device

_python_show_warning = warnings.showwarning

app = typer.Typer(
    help="Hard-example mining for imbalanced image classification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # click's plain help: flags without a "<bool>" type, arguments as RUN_DIR, option names never cut at
    # 80 columns, and a `round --help` a third as long as rich's boxed panels
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"hardmine {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Hard-example mining for imbalanced image classification."""
    warnings.showwarning = _show_warning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """hardmine's own warnings as one line on stderr; others as Python prints them."""
    if issubclass(category, HardmineWarning):
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


def command(name: str | None = None, **kwargs):
    """Register a command whose HardmineError becomes one line on stderr and exit code 2."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            try:
                return fn(*args, **kw)
            except (HardmineError, OSError) as exc:
                from hardmine.engine import distributed

                if distributed.is_main():
                    err_console.print(f"[bold red]error:[/] {_one_line(exc)}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None

        return app.command(name, cls=PanelledCommand, **kwargs)(wrapper)

    return decorate


def _one_line(exc: Exception) -> str:
    """The message of a HardmineError; for an OS error, what failed on which path."""
    if isinstance(exc, OSError) and exc.strerror:
        paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        return f"{paths}: {exc.strerror}" if paths else exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# --------------------------------------------------------------------------- commands


@command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Folder to write the demo data set into.")],
    n: Annotated[int, typer.Option("--images", "--n", help="Number of images (--n, its old name, is kept: "
                                   "--n counts rounds everywhere else).")] = 2300,
    positive_frac: Annotated[float, typer.Option(help="Share of melanoma images.")] = 0.10,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
    pool: Annotated[int, typer.Option(help="Also about this many unlabeled images in OUT-pool/ (pool.csv; its "
                                      "dx column is for a simulated oracle only).")] = 0,
) -> None:
    """Write a HAM10000-layout demo set with planted hard cases and label flips."""
    from hardmine.data.synth import generate_demo, pool_folder

    meta = generate_demo(out, n=n, positive_frac=positive_frac, size=size, seed=seed, pool=pool)
    n_mel = int((meta["dx"] == "mel").sum())
    console.print(
        f"wrote {len(meta)} images ({n_mel} mel, {len(meta) - n_mel} nv, "
        f"{meta['lesion_id'].nunique()} lesions) to {out}; planted cases in {out / 'planted.csv'}"
    )
    if pool:
        pool_csv = pool_folder(out) / "pool.csv"
        console.print(f"unlabeled pool: {len(pd.read_csv(pool_csv))} images listed in {pool_csv}")


@command("check-data")
@with_options(DATA, skip=("data",))
def check_data(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Data folder or manifest CSV.")], config: RunConfig = None
) -> None:
    """Load a data set the way training will and summarise it."""
    from hardmine.core.splits import grouped_split
    from hardmine.data.sources import load_samples
    from hardmine.data.splits import class_summary, split_summary

    d = config.data
    table, report = load_samples(data, d.source, d.positive, d.negative, d.metadata, verify_images=True,
                                 skip_bad=d.skip_bad)  # fmt: skip
    console.print(f"source: [bold]{report.source}[/] at {report.root}")
    console.print(
        f"positive = {', '.join(report.positive)}; negative = {', '.join(report.negative)}; "
        f"{report.n_rows} rows read, {report.n_excluded} of other classes left out"
    )
    if report.bad_files:
        console.print(f"[yellow]skipped {len(report.bad_files)} unreadable image(s)[/], first: {report.bad_files[0]}")
    else:
        console.print("missing or unreadable files: none")
    console.print(frame_table(class_summary(table), "classes", digits=2))
    split = pd.Series(grouped_split(table["label"].to_numpy(), table["group"].to_numpy(), d.split, d.split_seed))
    shares = "/".join(f"{share * 100:g}" for share in d.split)
    console.print(frame_table(split_summary(table, split), f"grouped split it would make ({shares})"))


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
    with progress_bars() as progress:
        metrics = train_round(run, 0, callback=ProgressEvents(progress))
    console.print(metrics_table({"val": metrics}, f"round 0, validation (threshold by {run.config.threshold.rule})"))
    console.print(f"model: {run.model_path(0)}; metrics: {run.metrics_path(0)}")


@command("evaluate")
def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")],
    split: Annotated[str, typer.Option(help="val (tunes the threshold) | test (uses the val threshold).")] = "val",
    round_: Annotated[int | None, typer.Option("--round", help="Round to evaluate (default: the model the run "
                                               "hands back, like predict and gallery).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Model file (default: the round's model).")] = None,
    ci: Annotated[bool, typer.Option("--ci", help="Bootstrap 95% intervals for AUROC and sensitivity.")] = False,
) -> None:
    """Metrics table, metrics JSON and ROC / PR / confusion PNGs for a round."""
    from hardmine.record.layout import REPORT_FILE
    from hardmine.run.opened import Run
    from hardmine.run.steps import evaluate

    run = Run.open(run_dir)
    which = ""
    if round_ is None and (run.root / REPORT_FILE).exists():
        source, r = run.returned()
        if source.root != run.root:  # the budget reference: a run folder of its own
            run, which = Run.open(source.root), "the budget reference, "
    else:
        r = run.latest_round(round_)
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
        int,
        typer.Option(
            "--n", "--rounds", help="Mining rounds to add (round 0 first if missing); under torchrun use --rounds."
        ),
    ] = 3,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish an interrupted run up to the round it aimed for.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run with another configuration.")] = False,
    init_checkpoint: Annotated[Path | None, typer.Option(help="Start round 0 from this state dict.")] = None,
    pool: Annotated[Path | None, typer.Option("--pool", help="Unlabeled images (folder or CSV): end with a query "
                                              "of --budget images to label and its labeling page.")] = None,
    budget: Annotated[int, typer.Option("--budget", help="Images per query (with --pool).")] = 50,
    method: Annotated[Acquisition, typer.Option("--method", help="Acquisition function (with --pool).")] = "hardmine",
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

    if pool is None and oracle is not None:
        raise HardmineError("--oracle answers queries of a pool: give --pool too")
    for message in config.unused_options():
        warn(message)
    run = Run.create(out, config, overwrite=overwrite)
    with progress_bars() as progress:
        if pool is None:
            report = run_rounds(run, n, resume=resume, init_checkpoint=init_checkpoint,
                                callback=ProgressEvents(progress))  # fmt: skip
        else:
            from hardmine.run.active import active_rounds

            report, picked, labeled = active_rounds(
                run, n, pool, budget, method=getattr(method, "value", method), oracle=oracle,
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
    """Baselines against hardmine's strategies and their no-mining ablations at equal budget, with paired
    bootstrap intervals against the best baseline."""
    from hardmine.run.compare import compare, epoch_budget, resolve_methods

    chosen = None if methods is None else [m.strip() for m in methods.split(",") if m.strip()]
    budget = epoch_budget(config, n, resolve_methods(chosen, config.rounds.strategy))
    console.print(f"every method trains {budget} epochs; seeds 0..{seeds - 1}")
    with progress_bars() as progress:
        result = compare(config, out, list(range(seeds)), n, chosen, external=external, subgroup=subgroup,
                         callback=ProgressEvents(progress))  # fmt: skip
    print_comparison(result, seeds)
    console.print(f"wrote {Path(out) / 'compare.csv'}, compare_runs.csv, compare_paired.csv, compare_paired.png")


@command("predict")
def predict_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")],
    images: Annotated[
        list[Path], typer.Argument(metavar="IMAGES",
                                   help="Image files, folders (searched recursively) or CSVs with a path column.")
    ],
    round_: Annotated[
        str, typer.Option("--round", help="best (the model the run hands back, chosen on validation), reference "
                          "(the budget reference) or a round number.")
    ] = "best",
    out: Annotated[Path, typer.Option("--out", help="CSV to write.")] = Path("predictions.csv"),
    device: Annotated[
        str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N (default: the run's).")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse when an image cannot be read (default: skip "
                                         "it, list it at the end and in the CSV's error column).")] = False,
) -> None:
    """Probabilities and decisions at the run's validation-tuned threshold for new images."""
    from hardmine.core.io import write_csv
    from hardmine.data.images import image_inputs
    from hardmine.record.record import RunFolder
    from hardmine.run.predict import predict_images

    if round_ not in ("best", "reference") and not round_.isdigit():
        raise HardmineError(f"--round {round_!r} is not valid; expected best, reference or a round number")
    if device is not None:
        check_device(device)
    if out.is_dir():
        raise HardmineError(f"--out {out} is a folder; expected the path of a CSV file to write")
    paths = image_inputs(images)
    with progress_bars() as progress:
        chosen = None if round_ == "best" else round_ if round_ == "reference" else int(round_)
        table = predict_images(RunFolder(run_dir), paths, chosen, device=device,
                               callback=ProgressEvents(progress), strict=strict)  # fmt: skip
    write_csv(out, table)
    counts = table.loc[table["error"] == "", "prediction"].value_counts()
    console.print(
        f"round {table['round'].iloc[0]}, threshold {table['threshold'].iloc[0]:.3f}: "
        + ", ".join(f"{n} {name}" for name, n in counts.items())
        + f" -> {out}"
    )
    skipped = table[table["error"] != ""]
    if len(skipped):
        listed = "; ".join(f"{p} ({e})" for p, e in zip(skipped["path"][:10], skipped["error"][:10], strict=True))
        more = f"; and {len(skipped) - 10} more (the CSV's error column)" if len(skipped) > 10 else ""
        warn(f"skipped {len(skipped)} unreadable image(s): {listed}{more}")


@command("query")
def query_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")],
    pool: Annotated[Path, typer.Option("--pool", help="Unlabeled images: a folder, or a CSV with a path column "
                                       "(and id, group).")],
    budget: Annotated[int, typer.Option("--budget", help="Images to pick; a lesion's images come together.")],
    method: Annotated[Acquisition, typer.Option("--method", help="Acquisition function.")] = "hardmine",
    device: Annotated[
        str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N (default: the run's).")
    ] = None,
) -> None:
    """Which unlabeled images a dermatologist should label next, and why (RUN/query.csv)."""
    from hardmine.run.opened import Run
    from hardmine.run.query import open_pool, query_pool
    from hardmine.views.labeling import build_label_page

    if device is not None:
        check_device(device)
    run = Run.open(run_dir)
    images = open_pool(run, pool)
    with progress_bars() as progress:
        picked = query_pool(run, images, budget, method=getattr(method, "value", method), device=device,
                            callback=ProgressEvents(progress), pool_source=pool)  # fmt: skip
    build_label_page(run.root)
    print_query(run, picked, pool_size=len(images), answered_before=images.attrs.get("answered", 0))


@command("label")
def label_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")],
    answers: Annotated[Path, typer.Argument(metavar="ANSWERS",
                                            help="answers.csv from the labeling page (image_id, label).")],
) -> None:
    """Add answers to the latest query to the labeled set: beside the data, and to the run's training split."""
    from hardmine.run.label import apply_answers
    from hardmine.run.opened import Run

    run = Run.open(run_dir)
    done = apply_answers(run, answers)
    console.print(f"answers: {answer_counts(done.counts)}; {done.added} image(s) joined the training split "
                  f"(now {done.train_size}); kept in {done.kept_in}")  # fmt: skip
    if done.disagreements:
        console.print(f"{len(done.disagreements)} answer(s) disagree with the model at its threshold (first: "
                      f"{done.disagreements[0]}); the next round's mining triages them like any label")  # fmt: skip
    console.print("next: the same `hardmine round ... --pool POOL --budget B` command trains a round on them and "
                  "asks again")  # fmt: skip


@command("relabel")
def relabel_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")],
    decisions: Annotated[Path, typer.Argument(metavar="DECISIONS",
                                              help="decisions.csv from the gallery (image_id, decision, new_label).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Manifest to write, inside the data root (default: DATA_ROOT/relabelled-<run>.csv)."
        ),
    ] = None,  # fmt: skip
) -> None:
    """Apply gallery decisions (relabel / exclude) to a new manifest for the next run; your metadata is untouched."""
    from hardmine.views.relabel import apply_decisions, next_round_command

    path, counts = apply_decisions(run_dir, decisions, out)
    console.print(f"{counts['relabelled']} relabelled ({counts['lesions']} whole lesion(s)), {counts['excluded']} "
                  f"excluded, {counts['reviewed']} reviewed, {counts['rows']} rows -> {path}")  # fmt: skip
    console.print(f"next: {next_round_command(run_dir, path)}", soft_wrap=True)


@command("gallery")
def gallery_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")],
    round_: Annotated[
        int | None, typer.Option("--round", help="Round to show (default: the one whose mining made the model "
                                 "the run hands back).")
    ] = None,
    inline: Annotated[
        bool, typer.Option("--inline", help="Inline thumbnails in the HTML (one file to share).")
    ] = False,
    png: Annotated[bool, typer.Option("--png", help="Also a contact sheet PNG of the hardest seeds.")] = False,
    top_n: Annotated[int, typer.Option(help="Seeds on the contact sheet.")] = 48,
    open_: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
    serve: Annotated[
        bool,
        typer.Option("--serve", help="Serve the run's galleries on http://127.0.0.1 until Ctrl-C: the browser then "
                     "keeps review decisions reliably (Chromium loses some on reloads of file:// pages)."),
    ] = False,  # fmt: skip
    port: Annotated[int | None, typer.Option(help="Port for --serve (default: the run's own, so a page served "
                                             "again keeps its decisions; 0: any free port).")] = None,
    label: Annotated[bool, typer.Option("--label", help="The labeling page of the latest query instead.")] = False,
) -> None:
    """Static HTML gallery of what a round mined and why (works offline, from file://)."""
    import webbrowser

    from hardmine.views.gallery import build_gallery, built_page
    from hardmine.views.serving import serve_run, served_url

    try:
        if label:
            from hardmine.views.labeling import build_label_page

            path = build_label_page(run_dir)
            if open_ and not serve:
                webbrowser.open(path.resolve().as_uri())
        else:
            path = build_gallery(run_dir, round_, inline=inline, png=png, top_n=top_n,
                                 open_browser=open_ and not serve)  # fmt: skip
    except PermissionError as exc:
        path = built_page(run_dir, round_, label)
        if not serve or path is None:
            raise HardmineError(f"cannot write the page into {run_dir} ({exc.strerror}: {exc.filename})") from None
        warn(f"{run_dir} is read-only: serving the page built before, {path}")
    console.print(f"{'labeling page' if label else 'gallery'}: {path}")
    if png:
        console.print(f"contact sheet: {path.parent / 'hardest.png'}")
    if not serve:
        if open_:
            console.print("review decisions are kept in the browser, which loses some on reloads of a file:// page; "
                          "`--serve` keeps them (or download them before closing the page)")  # fmt: skip
        return
    server = serve_run(run_dir, port)
    url = served_url(server, run_dir, path)
    console.print(f"serving the run's galleries at {url} (Ctrl-C stops)")
    if open_:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> None:
    """Entry point; under torchrun (WORLD_SIZE > 1) it joins the process group first."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from hardmine.engine import distributed

        distributed.setup_from_env()
        if not distributed.is_main():
            console.quiet = True  # rank 0 alone prints
    try:  # typer >= 0.2x carries its own click
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - older typer on click itself
        from click import exceptions as click_errors

    try:
        code = app(standalone_mode=False)
    except click_errors.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `hardmine` alone: the overview
            console.print(exc.ctx.get_help())
        else:  # a bad option value or a missing argument: one line, like hardmine's own errors
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            err_console.print(f"[bold red]error:[/] {exc.format_message()}{hint}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    if code == 130:  # Ctrl-C (typer answers it with 130 rather than raising, when not standalone)
        err_console.print("interrupted: what was written is complete (atomic writes); the same command with "
                          "--resume (round) or run again continues from the last completed step", highlight=False,
                          soft_wrap=True)  # fmt: skip
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
