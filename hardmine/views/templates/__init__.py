"""The HTML templates of the gallery and the report, rendered by jinja2 with autoescape on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def render(name: str, filters: dict[str, Callable[[Any], str]] | None = None, **context: Any) -> str:
    """Render template ``name`` of this folder; every string from ``context`` is escaped unless marked safe."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("hardmine.views", "templates"), autoescape=True)
    env.filters.update(filters or {})
    return env.get_template(name).render(**context)
