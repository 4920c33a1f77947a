"""The HTML templates of the pages (gallery, labeling page, report), rendered by jinja2 with autoescape on, and
what the pages share: script-safe JSON for their card data and JPEG thumbnails."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from typing import Any


def render(name: str, filters: dict[str, Callable[[Any], str]] | None = None, folder: str | os.PathLike | None = None,
           **context: Any) -> str:
    """Render template ``name`` of this folder (or of ``folder``: a page of a plug-in's own); every string from
    ``context`` is escaped unless marked safe."""
    import jinja2

    loader = jinja2.FileSystemLoader(folder) if folder is not None else jinja2.PackageLoader("hardmine.views",
                                                                                             "templates")
    env = jinja2.Environment(loader=loader, autoescape=True)
    env.filters.update(filters or {})
    return env.get_template(name).render(**context)


def json_for_script(obj: Any) -> str:
    """JSON safe to embed in a <script> block: no '</script>' or '<!--' can close it."""
    text = json.dumps(obj, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def script_json(obj: Any):
    """:func:`json_for_script` marked safe for a template (it cannot close the script block)."""
    from markupsafe import Markup

    return Markup(json_for_script(obj))


def thumbnail(path: str, size: int) -> bytes:
    """JPEG bytes of the image at ``path``, fitted in ``size`` x ``size`` pixels."""
    from PIL import Image

    with Image.open(path) as img:
        img.draft("RGB", (size, size))
        img = img.convert("RGB")
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
