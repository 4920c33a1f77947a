"""The ``hardmine`` command line (typer). Thin: parse, call the library, draw tables."""

import functools
import inspect
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hardmine import __version__
from hardmine.errors import HardmineError

app = typer.Typer(
    help="Hard-example mining for imbalanced image classification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
if not console.is_terminal:  # logs and pipes: wide enough for the round table
    console = Console(width=130)
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"hardmine {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Hard-example mining for imbalanced image classification."""


# --------------------------------------------------------------------------- option groups
# Options shared by several commands are declared once here and injected into each
# command's signature, so train, round and compare stay in step.

DATA_OPTIONS: dict[str, tuple[Any, Any]] = {
    "data": (Path, typer.Option(..., "--data", help="Data folder (HAM10000 layout, manifest CSV or class folders).")),
    "source": (str, typer.Option("auto", help="auto | ham10000 | manifest | folders.")),
    "metadata": (Path | None, typer.Option(None, help="HAM10000 metadata CSV if not DATA/HAM10000_metadata.csv.")),
    "positive": (str | None, typer.Option(None, help="Positive class(es), comma list (HAM10000 default: mel).")),
    "negative": (
        str | None,
        typer.Option(None, help="Negative class(es), comma list or 'rest' (HAM10000 default: nv)."),
    ),
    "skip_bad": (bool, typer.Option(False, "--skip-bad", help="Drop unreadable images instead of failing.")),
    "split_seed": (int, typer.Option(0, help="Seed of the grouped train/val/test split.")),
}
TRAIN_OPTIONS: dict[str, tuple[Any, Any]] = {
    "model": (str, typer.Option("tiny", help="tiny, resnet18, resnet50, efficientnet_b0, convnext_tiny, ...")),
    "weights": (str, typer.Option("none", help="none | imagenet | PATH to a state dict.")),
    "image_size": (int, typer.Option(64, help="Images are resized to this square size.")),
    "epochs": (int, typer.Option(20, help="Epochs with the whole network trainable.")),
    "freeze_epochs": (int, typer.Option(0, help="Epochs training only the head first.")),
    "batch_size": (int, typer.Option(64, help="Batch size.")),
    "lr": (float, typer.Option(3e-3, help="Peak learning rate (AdamW).")),
    "weight_decay": (float, typer.Option(1e-4, help="AdamW weight decay.")),
    "schedule": (str, typer.Option("onecycle", help="onecycle | cosine.")),
    "loss": (str, typer.Option("ce", help="ce | weighted-ce | focal.")),
    "class_weighting": (str, typer.Option("inverse", help="Class weights for weighted-ce/focal: inverse | effective.")),
    "focal_gamma": (float, typer.Option(2.0, help="Focal loss gamma.")),
    "sampling": (str, typer.Option("oversample", help="oversample (class-balanced sampling) | none.")),
    "seed": (int, typer.Option(0, help="Random seed.")),
    "device": (str, typer.Option("auto", help="auto | cpu | cuda | cuda:N.")),
    "workers": (int | None, typer.Option(None, help="DataLoader workers (default: chosen for the machine).")),
}
THRESHOLD_OPTIONS: dict[str, tuple[Any, Any]] = {
    "threshold_by": (str, typer.Option("cost", help="cost | target-sensitivity | f1 | youden.")),
    "cost_fn": (float, typer.Option(10.0, help="Cost of a missed positive (false negative).")),
    "cost_fp": (float, typer.Option(1.0, help="Cost of a false alarm (false positive).")),
    "target": (float, typer.Option(0.9, help="Sensitivity target for --threshold-by target-sensitivity.")),
}


def with_options(*groups: dict[str, tuple[Any, Any]]):
    """Add the option groups to a command's signature; they arrive bundled as ``opts``."""
    names = [name for group in groups for name in group]

    def decorate(fn):
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name != "opts"]
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
            for group in groups
            for name, (annotation, option) in group.items()
        ]

        @functools.wraps(fn)
        def wrapper(**kwargs):
            opts = {name: kwargs.pop(name) for name in names}
            return fn(**kwargs, opts=opts)

        wrapper.__signature__ = sig.replace(parameters=own + extra)
        return wrapper

    return decorate


def command(name: str | None = None, **kwargs):
    """Register a command whose HardmineError becomes one line on stderr and exit code 2."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            try:
                return fn(*args, **kw)
            except HardmineError as exc:
                if _is_main_process():
                    err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None

        return app.command(name, **kwargs)(wrapper)

    return decorate


ROUND_OPTIONS: dict[str, tuple[Any, Any]] = {
    "round_epochs": (int | None, typer.Option(None, help="Epochs of each mining round (default: --epochs / 4).")),
    "round_lr": (float | None, typer.Option(None, help="Peak LR when fine-tuning a round (default: --lr / 3).")),
    "from_scratch": (bool, typer.Option(False, "--from-scratch", help="Retrain each round from scratch.")),
    "select_by": (str, typer.Option("sens_at_spec90", help="Best round by: sens_at_spec90 | auprc | auroc | cost.")),
    "guard_tol": (float, typer.Option(0.02, help="A round worse than the best by more than this is marked.")),
}


def _run_config(opts: dict[str, Any]):
    from hardmine.rounds import DataConfig, RoundsConfig, RunConfig, ThresholdConfig
    from hardmine.train import TrainConfig

    data = DataConfig(
        data=str(Path(opts["data"]).resolve()), source=opts["source"],
        metadata=str(opts["metadata"]) if opts["metadata"] else None,
        positive=opts["positive"], negative=opts["negative"], skip_bad=opts["skip_bad"],
        split_seed=opts["split_seed"],
    )  # fmt: skip
    train_keys = [k for k in TRAIN_OPTIONS if k != "workers"]
    train = TrainConfig(**{k: opts[k] for k in train_keys}, num_workers=opts["workers"])
    threshold = ThresholdConfig(opts["threshold_by"], opts["cost_fn"], opts["cost_fp"], opts["target"])
    config = RunConfig(data, train, threshold)
    if "hardness" in opts:
        config.mining = _mining_config(opts, opts["cost_fn"], opts["cost_fp"])
    if "scores" in opts:
        config.scoring = _scoring_config(opts)
    if "select_by" in opts:
        config.rounds = RoundsConfig(**{k: opts[k] for k in ROUND_OPTIONS})
    return config


class _ProgressCallback:
    """Turns library progress events into a rich progress bar."""

    def __init__(self, progress: Progress, label: str = ""):
        self.progress = progress
        self.label = label
        self.task = None

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "epoch_start":
            desc = f"{self.label}epoch {info['epoch'] + 1}/{info['total_epochs']}" + (
                " (head)" if info["frozen"] else ""
            )
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(desc, total=info["steps"])
        elif event == "batch" and info.get("phase") != "predict" and self.task is not None:
            self.progress.update(self.task, completed=info["step"])
        elif event == "epoch_end":
            val = info["val"]
            self.progress.console.print(
                f"{self.label}epoch {info['epoch'] + 1}: train loss {info['train_loss']:.4f}  "
                f"val AUROC {val['auroc']:.3f}  AUPRC {val['auprc']:.3f}" + ("  *" if info["improved"] else "")
            )


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )  # fmt: skip


def _metrics_table(rows: dict[str, dict[str, Any]], title: str) -> Table:
    keys = ["auroc", "auprc", "sensitivity", "specificity", "sens_at_spec90", "pauc_sens80",
            "precision", "f1", "threshold", "n", "n_pos", "tp", "fp", "tn", "fn"]  # fmt: skip
    table = Table(title=title)
    table.add_column("metric")
    for name in rows:
        table.add_column(name, justify="right")
    for key in keys:
        table.add_row(key, *(_fmt(r.get(key)) for r in rows.values()))
    for key in ("auroc_ci", "sensitivity_ci"):
        if any(key in r for r in rows.values()):
            table.add_row(key, *(f"[{_fmt(r[key][0])}, {_fmt(r[key][1])}]" if key in r else "" for r in rows.values()))
    return table


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.{digits}f}"
    return str(value)


# --------------------------------------------------------------------------- commands


@command("demo-data")
def demo_data(
    out: Path = typer.Argument(..., help="Folder to write the demo data set into."),
    n: int = typer.Option(2300, help="Number of images."),
    positive_frac: float = typer.Option(0.10, help="Share of melanoma images."),
    size: int = typer.Option(64, help="Image side in pixels."),
    seed: int = typer.Option(0, help="Random seed (same seed, same data)."),
) -> None:
    """Write a HAM10000-layout demo set with planted hard cases and label flips."""
    from hardmine.synth import generate_demo

    try:
        meta = generate_demo(out, n=n, positive_frac=positive_frac, size=size, seed=seed)
    except ValueError as exc:
        raise HardmineError(str(exc)) from None
    n_mel = int((meta["dx"] == "mel").sum())
    console.print(
        f"wrote {len(meta)} images ({n_mel} mel, {len(meta) - n_mel} nv, "
        f"{meta['lesion_id'].nunique()} lesions) to {out}; planted cases in {out / 'planted.csv'}"
    )


@command("check-data")
def check_data(
    data: Path = typer.Argument(..., help="Data folder or manifest CSV."),
    source: str = typer.Option("auto", help="auto | ham10000 | manifest | folders."),
    metadata: Path | None = typer.Option(None, help="HAM10000 metadata CSV if not DATA/HAM10000_metadata.csv."),
    positive: str | None = typer.Option(None, help="Positive class(es), comma list."),
    negative: str | None = typer.Option(None, help="Negative class(es), comma list or 'rest'."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Drop unreadable images instead of failing."),
    split_seed: int = typer.Option(0, help="Seed of the grouped split."),
) -> None:
    """Load a data set the way training will and summarise it."""
    import pandas as pd

    from hardmine.data import grouped_split, load_samples, split_summary

    table, report = load_samples(data, source, positive, negative, metadata, verify_images=True, skip_bad=skip_bad)
    console.print(f"source: [bold]{report.source}[/] at {report.root}")
    console.print(
        f"positive = {', '.join(report.positive)}; negative = {', '.join(report.negative)}; "
        f"{report.n_rows} rows read, {report.n_excluded} of other classes left out"
    )
    if report.bad_files:
        console.print(f"[yellow]skipped {len(report.bad_files)} unreadable image(s)[/], first: {report.bad_files[0]}")
    else:
        console.print("missing or unreadable files: none")
    classes = Table(title="classes")
    for col in ("class", "label", "images", "groups", "images/group (mean, max)"):
        classes.add_column(col, justify="right" if col != "class" else "left")
    for name, part in table.groupby("class_name"):
        per_group = part.groupby("group").size()
        classes.add_row(str(name), str(int(part["label"].iloc[0])), str(len(part)), str(len(per_group)),
                        f"{per_group.mean():.2f}, {per_group.max()}")  # fmt: skip
    console.print(classes)
    split = pd.Series(grouped_split(table["label"].to_numpy(), table["group"].to_numpy(), seed=split_seed))
    summary = split_summary(table, split)
    splits = Table(title="grouped split it would make (70/15/15)")
    for col in summary.columns:
        splits.add_column(col, justify="right")
    for row in summary.itertuples(index=False):
        splits.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(splits)


@command("train")
@with_options(DATA_OPTIONS, TRAIN_OPTIONS, THRESHOLD_OPTIONS)
def train_cmd(
    out: Path = typer.Option(..., "--out", help="Run directory."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run with another configuration."),
    opts: dict | None = None,
) -> None:
    """Train the initial model (round 0) and tune its threshold on validation."""
    from hardmine.rounds import Run, train_round

    run = Run.create(out, _run_config(opts), overwrite=overwrite)
    with _progress() as progress:
        metrics = train_round(run, 0, callback=_ProgressCallback(progress))
    console.print(_metrics_table({"val": metrics}, f"round 0, validation (threshold by {run.config.threshold.rule})"))
    console.print(f"model: {run.round_dir(0) / 'model.pt'}; metrics: {run.round_dir(0) / 'metrics.json'}")


@command("evaluate")
def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    split: str = typer.Option("val", help="val (tunes the threshold) | test (uses the val threshold)."),
    round_: int | None = typer.Option(None, "--round", help="Round to evaluate (default: the latest)."),
    checkpoint: Path | None = typer.Option(None, help="Model file (default: the round's model.pt)."),
    ci: bool = typer.Option(False, "--ci", help="Bootstrap 95% intervals for AUROC and sensitivity."),
) -> None:
    """Metrics table, metrics JSON and ROC / PR / confusion PNGs for a round."""
    from hardmine.rounds import Run, evaluate

    run = Run.open(run_dir)
    r = _latest_round(run, round_)
    with _progress() as progress:
        cb = _ProgressCallback(progress)
        metrics = evaluate(run, r, split, checkpoint, ci=ci, plots=True, callback=cb)
    console.print(_metrics_table({split: metrics}, f"round {r}, {split}"))
    name = "metrics.json" if split == "val" else "metrics_test.json"
    console.print(f"wrote {run.round_dir(r) / name} and roc_{split}.png, pr_{split}.png, confusion_{split}.png")


MINING_OPTIONS: dict[str, tuple[Any, Any]] = {
    "hardness": (str, typer.Option("loss", help="Seed ranking: loss | margin | el2n | dynamics (higher = harder).")),
    "band": (float, typer.Option(1.0, help="Low-margin band around the threshold, in log-odds.")),
    "max_frac": (float, typer.Option(0.2, help="At most this share of each class becomes seeds.")),
    "quarantine": (str, typer.Option("confident", help="Label-error triage: confident | persistent | both | none.")),
    "k": (int, typer.Option(10, help="Neighbours per seed.")),
    "min_sim": (float, typer.Option(0.5, help="Least cosine similarity for a neighbour.")),
    "expand": (str, typer.Option("same-label", help="same-label | opposite-label | both.")),
    "alpha": (float, typer.Option(1.0, help="Weight boost of seeds (x hardness).")),
    "beta": (float, typer.Option(0.5, help="Weight boost of neighbours (x contribution).")),
    "max_weight": (float, typer.Option(10.0, help="Weight cap, as a multiple of the mean.")),
    "ema": (float, typer.Option(0.5, help="Smoothing of weights across rounds (share of the previous).")),
    "index_codec": (str, typer.Option("flat", help="IVF storage for very large sets: flat | sq8 | pqM (e.g. pq64).")),
    "balance": (bool, typer.Option(True, "--balance/--no-balance", help="Class-balance the curriculum weights.")),
}
SCORING_OPTIONS: dict[str, tuple[Any, Any]] = {
    "scores": (str, typer.Option("insample", help="Probabilities that drive mining: insample | oof | dynamics.")),
    "oof": (int, typer.Option(4, help="Folds for --scores oof.")),
    "tta": (bool, typer.Option(False, "--tta", help="Average with the horizontally flipped image.")),
    "float16": (bool, typer.Option(False, "--float16", help="Store embeddings as float16 (half the disk and memory).")),
    "audit_sim": (float, typer.Option(0.98, help="Split audit: list cross-split pairs at least this similar.")),
}


def _mining_config(opts: dict[str, Any], cost_fn: float = 10.0, cost_fp: float = 1.0):
    from hardmine.mining import MiningConfig

    return MiningConfig(**{k: opts[k] for k in MINING_OPTIONS}, cost_fn=cost_fn, cost_fp=cost_fp)


def _scoring_config(opts: dict[str, Any]):
    from hardmine.rounds import ScoringConfig

    dtype = "float16" if opts["float16"] else "float32"
    return ScoringConfig(opts["scores"], opts["oof"], opts["tta"], dtype, opts["audit_sim"])


def _latest_round(run, round_: int | None) -> int:
    done = run.rounds_done()
    if round_ is not None:
        return round_
    if not done:
        raise HardmineError(f"{run.root} has no trained round yet: run `hardmine train` first")
    return done[-1]


@command("score")
@with_options(SCORING_OPTIONS)
def score_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    round_: int | None = typer.Option(None, "--round", help="Round whose model scores (default: the latest)."),
    opts: dict | None = None,
) -> None:
    """Score the training set: scores.csv and embeddings.npy, plus the split audit."""
    from hardmine.rounds import Run, score_round

    run = Run.open(run_dir)
    r = _latest_round(run, round_)
    with _progress() as progress:
        summary = score_round(run, r, _scoring_config(opts), audit=True, callback=_ProgressCallback(progress))
    out = run.round_dir(r)
    console.print(
        f"scored {summary['rows']} training images ({summary['source']}); "
        f"embeddings {summary['embedding_dim']}-d -> {out / 'scores.csv'}, {out / 'embeddings.npy'}"
    )
    console.print(
        f"split audit: {summary['audit_pairs']} near-duplicate pair(s) across splits -> {run.root / 'split_audit.csv'}"
    )


@command("mine")
@with_options(MINING_OPTIONS, SCORING_OPTIONS)
def mine_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    round_: int | None = typer.Option(None, "--round", help="Round to mine (default: the latest)."),
    opts: dict | None = None,
) -> None:
    """Mine seeds, quarantine suspected label errors, expand to neighbours, write weights."""
    from hardmine.rounds import Run, mine_round

    run = Run.open(run_dir)
    r = _latest_round(run, round_)
    cfg = _mining_config(opts, run.config.threshold.cost_fn, run.config.threshold.cost_fp)
    try:
        cfg.validate()
    except ValueError as exc:
        raise HardmineError(str(exc)) from None
    summary = mine_round(run, r, cfg, opts["scores"])
    if summary["message"]:
        console.print(summary["message"])
    out = run.round_dir(r)
    console.print(
        f"round {r}: {summary['n_seeds']} seeds, {summary['n_neighbours']} neighbours, "
        f"{summary['n_quarantined']} quarantined; effective class ratio {summary['effective_class_ratio']:.3f}, "
        f"effective sample size {summary['effective_sample_size']:.0f} -> {out / 'mined.csv'}, {out / 'weights.csv'}"
    )


def _round_table(report: dict[str, Any]) -> Table:
    from hardmine.report import ROUND_COLUMNS, round_rows

    short = {"round": "rnd", "sens_at_spec90": "se@sp90", "sensitivity": "sens", "specificity": "spec",
             "threshold": "thr", "neighbours": "nbrs", "quarantined": "quar", "eff_class_ratio": "pos:neg"}  # fmt: skip
    table = Table(title=f"rounds on validation (best by {report['select_by']}: *)", box=box.SIMPLE_HEAD, padding=(0, 1))
    for col in ROUND_COLUMNS:
        table.add_column(short.get(col, col), justify="right")
    for row in round_rows(report):
        cells = [_fmt(row[c], 3) for c in ROUND_COLUMNS]
        if row["round"] == report["best_round"]:
            cells[0] = f"{cells[0]}*"
        table.add_row(*cells)
    return table


def _print_report(report: dict[str, Any]) -> None:
    console.print(_round_table(report))
    columns = {"round 0": report["test_round0"], f"best (round {report['best_round']})": report["test"]}
    console.print(_metrics_table(columns, "test split (thresholds tuned on validation)"))


class _RoundProgress(_ProgressCallback):
    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "step":
            self.label = f"round {info['round']}: "
            if info["step"] != "train":
                self.progress.console.print(f"round {info['round']}: {info['step']}")
        elif event == "round_end":
            val = info["val"]
            flag = "  (worse than the best: next round starts from the best)" if info.get("worse") else ""
            self.progress.console.print(
                f"[bold]round {info['round']} done[/]: val AUROC {val['auroc']:.3f}, "
                f"sens@spec90 {val['sens_at_spec90']:.3f}{flag}"
            )
        elif event == "fold_start":
            self.progress.console.print(f"{self.label}out-of-fold model {info['fold'] + 1}/{info['folds']}")
        else:
            super().__call__(event, info)


@command("round")
@with_options(DATA_OPTIONS, TRAIN_OPTIONS, THRESHOLD_OPTIONS, MINING_OPTIONS, SCORING_OPTIONS, ROUND_OPTIONS)
def round_cmd(
    out: Path = typer.Option(..., "--out", help="Run directory."),
    n: int = typer.Option(
        3, "--n", "--rounds", help="Mining rounds to add (round 0 first if missing); under torchrun use --rounds."
    ),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run up to the round it aimed for."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run with another configuration."),
    init_checkpoint: Path | None = typer.Option(None, help="Start round 0 from this state dict."),
    opts: dict | None = None,
) -> None:
    """Train, then mine and retrain round after round; report the best round on test."""
    from hardmine.report import write_html_report
    from hardmine.rounds import Run, run_rounds

    run = Run.create(out, _run_config(opts), overwrite=overwrite)
    with _progress() as progress:
        report = run_rounds(run, n, resume=resume, init_checkpoint=init_checkpoint, callback=_RoundProgress(progress))
    _print_report(report)
    if _is_main_process():
        from hardmine.gallery import build_gallery

        write_html_report(run.root)
        console.print(f"report: {run.root / 'report.json'}, {run.root / 'report.html'}")
        gallery = build_gallery(run.root)
        console.print(f"mined tables: {run.root}/round-*/mined.csv; gallery of the last round: {gallery}")


@command("report")
def report_cmd(run_dir: Path = typer.Argument(..., help="Run directory.")) -> None:
    """Print the round table again and write report.html with its plots."""
    from hardmine.io import read_json
    from hardmine.report import write_html_report

    path = run_dir / "report.json"
    if not path.exists():
        raise HardmineError(f"{path} not found: run `hardmine round` first")
    _print_report(read_json(path))
    console.print(f"wrote {write_html_report(run_dir)}")


@command("compare")
@with_options(DATA_OPTIONS, TRAIN_OPTIONS, THRESHOLD_OPTIONS, MINING_OPTIONS, SCORING_OPTIONS, ROUND_OPTIONS)
def compare_cmd(
    out: Path = typer.Option(..., "--out", help="Folder for all runs and the comparison table."),
    seeds: int = typer.Option(3, "--seeds", help="Number of seeds (0, 1, ...) per method."),
    n: int = typer.Option(3, "--n", "--rounds", help="Mining rounds of the hardmine method."),
    methods: str | None = typer.Option(
        None, "--methods", help="Comma list (default: ce, weighted-ce, oversample, focal, rounds-no-mining, hardmine)."
    ),
    opts: dict | None = None,
) -> None:
    """Baselines (CE, weighted CE, oversampling, focal), hardmine and its rounds without mining: same split,
    rule and epoch budget."""
    from hardmine.compare import REPORTED, compare, epoch_budget

    config = _run_config(opts)
    config.validate()
    chosen = None if methods is None else [m.strip() for m in methods.split(",") if m.strip()]
    console.print(f"every method trains {epoch_budget(config, n)} epochs; seeds 0..{seeds - 1}")
    with _progress() as progress:
        cb = _RoundProgress(progress)

        def callback(event: str, info: dict[str, Any]) -> None:
            if event == "compare_start":
                cb.label = f"{info['method']} seed {info['seed']}: "
                progress.console.print(f"[bold]{cb.label}[/]")
            else:
                cb(event, info)

        _, summary = compare(config, out, list(range(seeds)), n, chosen, callback=callback)
    table = Table(title=f"test metrics, mean ± std over {seeds} seed(s)", box=box.SIMPLE_HEAD)
    table.add_column("method")
    for key in REPORTED:
        table.add_column(key, justify="right")
    for row in summary.itertuples(index=False):
        values = row._asdict()
        table.add_row(
            values["method"], *(f"{values[k + '_mean']:.3f} ± {_fmt(values[k + '_std'], 3)}" for k in REPORTED)
        )
    console.print(table)
    console.print(f"wrote {Path(out) / 'compare.csv'} and {Path(out) / 'compare_runs.csv'}")


@command("gallery")
def gallery_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    round_: int | None = typer.Option(None, "--round", help="Round to show (default: the latest mined)."),
    inline: bool = typer.Option(False, "--inline", help="Inline thumbnails in the HTML (one file to share)."),
    png: bool = typer.Option(False, "--png", help="Also a contact sheet PNG of the hardest seeds."),
    top_n: int = typer.Option(48, help="Seeds on the contact sheet."),
    open_: bool = typer.Option(False, "--open", help="Open the page in a browser."),
) -> None:
    """Static HTML gallery of what a round mined and why (works offline, from file://)."""
    from hardmine.gallery import build_gallery

    path = build_gallery(run_dir, round_, inline=inline, png=png, top_n=top_n, open_browser=open_)
    console.print(f"gallery: {path}")
    if png:
        console.print(f"contact sheet: {path.parent / 'hardest.png'}")


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def main() -> None:
    """Entry point; under torchrun (WORLD_SIZE > 1) it joins the process group first."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from hardmine import distributed

        distributed.setup_from_env()
        if not distributed.is_main():
            console.quiet = True  # rank 0 alone prints
    app()


if __name__ == "__main__":
    main()
