"""The ``hardmine`` command line (typer). Thin: parse, call the library, draw tables.

``app`` and ``main`` are in :mod:`hardmine.cli.app`; importing the command modules registers their
commands, in the order ``hardmine --help`` lists them (hence a loop, which no import sorter reorders).
"""

import importlib

from hardmine.cli.app import app, main

for _module in ("data_commands", "run_commands", "review_commands", "active_commands"):
    importlib.import_module(f"hardmine.cli.{_module}")

__all__ = ["app", "main"]
