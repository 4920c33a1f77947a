"""Using and reviewing a run: predict new images, the gallery, relabel from its decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hardmine.cli.app import command
from hardmine.cli.options import ROUND_HELP, parse_round
from hardmine.cli.printing import (
    ProgressEvents,
    console,
    progress_bars,
)
from hardmine.core.errors import HardmineError, warn
from hardmine.record.config import check_device
from hardmine.record.layout import HARDEST_PNG


@command("predict")
def predict_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")],
    images: Annotated[
        list[Path], typer.Argument(metavar="IMAGES",
                                   help="Image files, folders (searched recursively) or CSVs with a path column.")
    ],
    round_: Annotated[str, typer.Option("--round", help=ROUND_HELP)] = "best",
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

    chosen = parse_round(round_)
    if device is not None:
        check_device(device)
    if out.is_dir():
        raise HardmineError(f"--out {out} is a folder; expected the path of a CSV file to write")
    paths = image_inputs(images)
    with progress_bars() as progress:
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
    label: Annotated[bool, typer.Option("--label", help="The labeling page of the latest query (--page "
                                        "label).")] = False,
    page: Annotated[str, typer.Option("--page", help="Which page of the run: gallery, label (the labeling page of "
                                      "the latest query) or report.")] = "gallery",
) -> None:
    """Static HTML gallery of what a round mined and why (works offline, from file://); --page builds another."""
    import webbrowser

    from hardmine.views.pages import PageOptions, built_page, page_named
    from hardmine.views.serving import serve_run, served_url

    name = "label" if label else page
    chosen = page_named(name)
    options = PageOptions(round=round_, inline=inline, png=png, top_n=top_n)
    try:
        path = chosen.build(run_dir, options)
    except PermissionError as exc:
        path = built_page(name, run_dir, options)
        if not serve or path is None:
            raise HardmineError(f"cannot write the page into {run_dir} ({exc.strerror}: {exc.filename})") from None
        warn(f"{run_dir} is read-only: serving the page built before, {path}")
    if open_ and not serve:
        webbrowser.open(path.resolve().as_uri())
    console.print(f"{chosen.title}: {path}")
    if png:
        console.print(f"contact sheet: {path.parent / HARDEST_PNG}")
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
