"""``hardmine predict``: the model a run hands back (or a chosen round's) on new image files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hardmine.core.errors import DataError, HardmineError
from hardmine.core.metrics import softmax
from hardmine.engine.inference import Callback
from hardmine.engine.runtime import Engine
from hardmine.record.manifest import Manifest
from hardmine.record.record import RunFolder


def predict_images(
    folder: RunFolder, paths: list[str], r: int | str | None = None, *, device: str | None = None,
    callback: Callback | None = None, strict: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """Probabilities and decisions of round ``r``'s model for image files; by default of the model
    the run hands back (the best round, or the equal-epochs reference when no round beat it), with
    ``r="reference"`` of the equal-epochs reference.

    Reads the run without locking it (a run may go on training meanwhile).
    Returns one row per path: ``path, prob_pos`` (P(positive), higher = more
    likely positive), ``prediction`` (class name at the model's validation-tuned
    threshold), ``threshold, round`` (a number, or ``reference``), ``error`` (why an image could not
    be read: its ``prob_pos`` is NaN and its ``prediction`` empty; with ``strict`` one unreadable
    image is a :class:`DataError` instead).
    """
    from hardmine.data.images import find_unreadable, why_unreadable

    bad = find_unreadable(paths)
    if bad and strict:
        raise DataError(f"{len(bad)} unreadable image(s), first: {bad[0]} ({why_unreadable(bad[0])}); without "
                        "--strict they are skipped and listed")  # fmt: skip
    if len(bad) == len(paths):
        raise DataError(f"none of the {len(paths)} image(s) can be read, first: {bad[0]} ({why_unreadable(bad[0])})")
    Manifest(folder.root).check_run_files()  # class names and configuration as recorded
    if r == "reference":
        source, r = folder.reference(), 0
        if source is None:
            raise HardmineError(f"{folder.root} has no equal-epochs reference (only rounds that train epochs, "
                                "--strategy finetune or retrain, have one); use --round best or a number")  # fmt: skip
    else:
        source, r = folder.returned() if r is None else (folder, r)
    label = "reference" if source is not folder else r
    folder = source
    config = folder.run_config()
    threshold = folder.threshold(r)
    engine = Engine(config.train, device)
    model = engine.load_model(folder.verified_model_path(r))
    readable = [p for p in paths if p not in set(bad)]
    logits, _ = engine.predict(model, pd.DataFrame({"path": readable, "label": 0}), callback=callback)
    prob = pd.Series(softmax(logits)[:, 1], index=readable).reindex(paths).to_numpy()
    names = folder.class_names()
    errors = {path: why_unreadable(path) for path in bad}
    return pd.DataFrame({"path": paths, "prob_pos": prob,
                         "prediction": np.where(np.isnan(prob), "", np.where(prob >= threshold, names[1], names[0])),
                         "threshold": threshold, "round": label,
                         "error": [errors.get(path, "") for path in paths]})  # fmt: skip
