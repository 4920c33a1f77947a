"""The ``hardmine`` typer app: the root callback, the ``command`` decorator (a HardmineError is one
line and exit 2) and ``main``. The commands live in ``*_commands`` modules by what they are for."""

from __future__ import annotations

import functools
import warnings
from typing import Annotated

import typer

from hardmine import __version__
from hardmine.cli.options import (
    PanelledCommand,
)
from hardmine.cli.printing import (
    console,
    err_console,
)
from hardmine.core.errors import HardmineError, HardmineWarning

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
