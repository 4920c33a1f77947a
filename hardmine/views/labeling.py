"""The labeling page: the gallery in "label" mode for a run's latest query (``RUN/label/index.html``).

One card per picked pool image, in pick order: the image large (a click shows
the original, up to 1024 px), its card number, id and lesion, and its nearest
labeled training images with their labels; P(positive) under the model and why
it was picked stay hidden until the image is answered (a header switch shows
them), so they do not anchor the expert. One answer decides every card of the
lesion. The keyboard answers (``m``/``1`` positive, ``n``/``0``
negative, ``u`` unsure, ``s`` skip, arrows to move); answers are kept in the
browser (reliably when served: ``hardmine gallery RUN --label --serve``) and
downloaded as ``answers.csv`` (``image_id, label``), the file ``hardmine
label`` reads. Like the gallery: no server needed, no network, every string
from data rendered as text. No torch here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from hardmine.core.io import write_bytes
from hardmine.data.answers import UNSURE
from hardmine.record.layout import THUMBS_DIR
from hardmine.record.record import RunFolder
from hardmine.views.templates import script_json, thumbnail

if TYPE_CHECKING:
    from hardmine.views.pages import PageOptions

LARGE = 320  # the picked image, shown at 256 px
SMALL = 96  # its labeled neighbours, shown at 64 px
FULL = 1024  # the zoom: the original, down to this many pixels a side when larger


def build_label_page(run_dir: str | os.PathLike) -> Path:
    """Write the labeling page of ``run_dir``'s latest query and its thumbnails; return the page path."""
    from hardmine.views.templates import render

    folder = RunFolder(run_dir)
    query = folder.query()
    samples = folder.samples().set_index("id")
    names = folder.class_names()
    classes = folder.config_dict().get("classes") or {"positive": [names[1]], "negative": [names[0]]}
    page = folder.label_page_path()
    thumbs = page.parent / THUMBS_DIR
    thumbs.mkdir(parents=True, exist_ok=True)

    def thumb(path: str, size: int) -> str:
        name = f"{THUMBS_DIR}/{hashlib.sha1(f'{path}:{size}'.encode()).hexdigest()[:16]}.jpg"
        if not (page.parent / name).exists():
            write_bytes(page.parent / name, thumbnail(path, size))
        return name

    cards = []
    lesion_images = query["group"].value_counts()
    for row in query.itertuples(index=False):
        neighbours = [n for n in str(row.neighbours).split("|") if n in samples.index] if row.neighbours else []
        cards.append({
            "id": str(row.id), "group": str(row.group), "prob_pos": round(float(row.prob_pos), 4),
            "reason": str(row.reason), "src": thumb(row.path, LARGE), "full": thumb(row.path, FULL),
            "lesion_images": int(lesion_images[row.group]),
            "neighbours": [{"id": n, "label": names[int(samples.loc[n, "label"])],
                            "positive": int(samples.loc[n, "label"]) == 1,
                            "src": thumb(samples.loc[n, "path"], SMALL)} for n in neighbours],
        })  # fmt: skip
    stamp = hashlib.sha1("\x1f".join(query["id"]).encode()).hexdigest()[:12]
    facts = {"run": folder.root.name, "positive": classes["positive"][0], "negative": classes["negative"][0],
             "unsure": UNSURE, "store": f"hardmine-answers:{folder.identity()}:{stamp}", "n": len(cards),
             "likely": int((query["prob_pos"] >= 0.5).sum()), "full_size": FULL}  # fmt: skip
    html = render("label.html.jinja", facts=facts, data=script_json({"cards": cards, "facts": facts}))
    return write_bytes(page, html.encode())


def build(run_dir: str | os.PathLike, options: PageOptions) -> Path:
    """The labeling page as a page of the family (:mod:`hardmine.views.pages`); it reads no option."""
    return build_label_page(run_dir)


def where(folder: RunFolder, options: PageOptions) -> Path:
    return folder.label_page_path()
