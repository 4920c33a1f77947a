"""The run's pages as one family: each page is one module (how it is built, where it lies) and one template,
and :data:`PAGES` is how the command line (``hardmine gallery RUN --page NAME``) finds them.

Adding a page: write ``hardmine/views/<name>.py`` with ``build(run_dir, options: PageOptions) -> Path``
(writes the page, returns its ``index.html``) and ``where(folder: RunFolder, options: PageOptions) -> Path``
(where the page lies once built: a read-only run serves the page built before), its template in
``views/templates/`` (rendered by :func:`hardmine.views.templates.render`, autoescape on), its file names
in :mod:`hardmine.record.layout`, and one line in :data:`PAGES`. ``gallery --serve`` serves any page of
the run folder, so a new page needs nothing more to be served.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hardmine.core.errors import HardmineError
from hardmine.record.record import RunFolder
from hardmine.views import gallery, labeling, report


@dataclass(frozen=True)
class PageOptions:
    """What the command line asks of a page; each page reads what applies to it.

    round : the round a per-round page shows (None: the page's own choice; the gallery's is the round whose
        mining made the model the run hands back).
    inline : images inlined in the HTML (one file to share). png : also a contact sheet (gallery).
    top_n : cards on the contact sheet.
    """

    round: int | None = None
    inline: bool = False
    png: bool = False
    top_n: int = 48


@dataclass(frozen=True)
class Page:
    """A page of a run: ``title`` (what the console calls it), ``build(run_dir, options) -> index.html``
    and ``where(folder, options) -> index.html`` (where it lies once built)."""

    title: str
    build: Callable[[str | os.PathLike, PageOptions], Path]
    where: Callable[[RunFolder, PageOptions], Path]


PAGES: dict[str, Page] = {
    "gallery": Page("gallery", gallery.build, gallery.where),
    "label": Page("labeling page", labeling.build, labeling.where),
    "report": Page("report", report.build, report.where),
}


def page_named(name: str) -> Page:
    """The page ``name`` of :data:`PAGES`; an unknown name is one :class:`HardmineError` listing them."""
    if name not in PAGES:
        raise HardmineError(f"--page {name!r} is not valid; expected one of {', '.join(PAGES)}")
    return PAGES[name]


def built_page(name: str, run_dir: str | os.PathLike, options: PageOptions) -> Path | None:
    """Page ``name`` as an earlier call wrote it (None when there is none): a read-only run can still serve it."""
    path = page_named(name).where(RunFolder(run_dir), options)
    return path if path.exists() else None
