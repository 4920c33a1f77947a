"""Active learning: which pool images to label next, and their answers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hardmine.cli.app import command
from hardmine.cli.options import (
    METHOD_OPTION_HELP,
    Acquisition,
)
from hardmine.cli.printing import (
    ProgressEvents,
    answer_counts,
    console,
    print_query,
    progress_bars,
)
from hardmine.core.acquisition import parse_options
from hardmine.record.config import check_device
from hardmine.record.layout import CONFIG_FILE


@command("query")
def query_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")],
    pool: Annotated[Path, typer.Option("--pool", help="Unlabeled images: a folder, or a CSV with a path column "
                                       "(and id, group).")],
    budget: Annotated[int, typer.Option("--budget", help="Images to pick; a lesion's images come together.")],
    method: Annotated[Acquisition, typer.Option("--method", help="Acquisition function.")] = "hardmine",
    method_option: Annotated[list[str] | None, typer.Option("--method-option", help=METHOD_OPTION_HELP)] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N (default: the run's).")
    ] = None,
) -> None:
    """Which unlabeled images a dermatologist should label next, and why (RUN/query.csv)."""
    from hardmine.run.opened import Run
    from hardmine.run.query import check_budget, open_pool, query_pool

    if device is not None:
        check_device(device)
    method = getattr(method, "value", method)
    options = parse_options(method, method_option or [])
    run = Run.open(run_dir)
    images = open_pool(run, pool)
    check_budget(budget, len(images), pool)
    with progress_bars() as progress:
        picked = query_pool(run, images, budget, method=method, options=options, device=device,
                            callback=ProgressEvents(progress), pool_source=pool)  # fmt: skip
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
    batches = f" to batch {', '.join(map(str, done.batches))}" if done.batches else ""
    console.print(f"answers{batches}: {answer_counts(done.counts)}; {done.added} image(s) joined the training split "
                  f"(now {done.train_size}); kept in {done.kept_in}")  # fmt: skip
    if done.disagreements:
        console.print(f"{len(done.disagreements)} answer(s) disagree with the model that asked, at its threshold: "
                      f"all listed in {done.disagreements_file}; the next step's mining triages them like any "
                      "label")  # fmt: skip
    console.print(f"next: `hardmine round --config {run.root / CONFIG_FILE} --out {run.root} --pool POOL` trains a "
                  "step on every answer so far and asks again (without --pool: trains the step only)")  # fmt: skip
