"""A toy page, whole in one module and one template (``toy_page.html.jinja`` beside it): a round's seeds as a
plain list. Registering it is one line: ``PAGES["toy"] = Page("toy page", build, where)``."""

from pathlib import Path

from hardmine.core.io import write_bytes
from hardmine.record.record import RunFolder
from hardmine.views.templates import render


def where(folder: RunFolder, options) -> Path:
    return folder.root / "toy" / "index.html"


def build(run_dir, options) -> Path:
    folder = RunFolder(run_dir)
    r = 0 if options.round is None else options.round
    seeds = folder.mined(r).query("role == 'seed'")
    groups = folder.samples().set_index("id")["group"]
    rows = [{"id": i, "lesion": groups[i]} for i in seeds["id"]]
    html = render("toy_page.html.jinja", folder=Path(__file__).parent, round=r, rows=rows)
    return write_bytes(where(folder, options), html.encode())
