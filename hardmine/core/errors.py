"""Exceptions hardmine raises for bad input.

Every user-facing problem raises a subclass of :class:`HardmineError` (itself a
``ValueError``) whose message is one line naming the file, row or value and what
was expected. The CLI prints that line and exits non-zero without a traceback.
"""


class HardmineError(ValueError):
    """Bad input or state that the user can fix; the message says how."""


class DataError(HardmineError):
    """A data source, image, split or table is missing, malformed or inconsistent."""


class ModelError(HardmineError):
    """A model name, weight file or checkpoint cannot be used."""


class HardmineWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints it as one line)."""


def warn(message: str) -> None:
    """Issue a :class:`HardmineWarning` (Python's ``warnings`` machinery, so callers can filter it)."""
    import warnings

    warnings.warn(message, HardmineWarning, stacklevel=2)


def damage_reason(exc: BaseException, limit: int = 200) -> str:
    """Why a file could not be read, in one line, for a message that names the file and what to do.

    Never passes on a library's advice to load it unsafely: torch's "weights only load failed ... re-run with
    weights_only=False" and numpy's "allow_pickle=False" say the file holds pickled Python objects, which
    hardmine never loads (they can run code)."""
    text = str(exc)
    if "weights_only" in text or "Weights only load failed" in text or "allow_pickle" in text:
        return "it holds pickled Python objects, which hardmine never loads (they can run code)"
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
