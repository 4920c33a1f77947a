"""fastai: mine at the end of training epochs, draw the next ones by the curriculum.

>>> items = dls.train.items                                       # doctest: +SKIP
>>> miner = HardMiner(items.dx.eq("mel").to_numpy(), groups=items.lesion_id.to_numpy())
>>> learn = vision_learner(dls, resnet34, cbs=HardMiningCallback(miner, positive="mel", every=5))
>>> learn.fine_tune(20)
>>> learn.hardmine_rounds(miner, n=3, epochs=5, positive="mel")      # or: round 0, then 3 mining rounds

``miner`` holds the labels of ``dls.train``'s items, in their order. From the
first epoch the training loader draws its indices from ``miner.sampler()``
instead of shuffling (class-balanced until the first mining); every ``every``
epochs the callback scores the training items with the validation transforms
(no augmentation, in order), mines, and the following epochs draw by the new
curriculum weights. ``positive`` is the class name (from ``dls.vocab``) that the
miner's label 1 means.
"""

from __future__ import annotations

from typing import Any

import fastai.callback.schedule  # noqa: F401 - adds Learner.fit_one_cycle
from fastai.callback.core import Callback

from hardmine.core.errors import HardmineError
from hardmine.engine.miner import HardMiner
from hardmine.integrations import mining_due, mining_summary


class HardMiningCallback(Callback):
    """Mine with ``miner`` every ``every`` epochs (from epoch ``start``, 1-based) of ``learn.fit``.

    Parameters
    ----------
    miner : :class:`HardMiner` over ``dls.train``'s items, in order.
    positive : class name of the positive class in ``dls.vocab`` (default: the miner's 1 is vocab index 1).
    every, start : mine after epochs ``start, start + every, ...`` (``start`` defaults to ``every``).
    score_dl : the training items in order without augmentation (default: ``dls.test_dl`` of them, with labels).
    """

    order = 60  # after fastai's Recorder has the epoch's metrics

    def __init__(self, miner: HardMiner, positive: str | None = None, every: int = 1, start: int | None = None,
                 score_dl=None):  # fmt: skip
        if every < 1:
            raise HardmineError(f"every must be at least 1; got {every}")
        self.miner, self.positive, self.every = miner, positive, int(every)
        self.start = int(start if start is not None else every)
        self.score_dl = score_dl
        self.history: list[dict[str, Any]] = []

    def before_fit(self) -> None:
        train = self.dls.train
        if len(train.dataset) != len(self.miner.labels):
            raise HardmineError(f"the miner holds {len(self.miner.labels)} labels but dls.train has "
                                f"{len(train.dataset)} items; build it from dls.train's items, in order")  # fmt: skip
        self.positive_class = self._positive_class()
        sampler = self.miner.sampler(num_samples=train.n)
        self._original_get_idxs = train.get_idxs
        train.get_idxs = lambda: list(sampler)  # fastai draws an epoch's indices here (it would shuffle)

    def after_epoch(self) -> None:
        done = self.epoch + 1
        if not mining_due(done, self.start, self.every):
            return
        loader = self.score_dl if self.score_dl is not None else self.dls.test_dl(self.dls.train.items,
                                                                                  with_labels=True)  # fmt: skip
        result = self.miner.score(self.learn.model, loader, device=self.dls.device, positive_class=self.positive_class)
        self.history.append(mining_summary(done, result))

    def after_fit(self) -> None:
        self.dls.train.get_idxs = self._original_get_idxs

    def _positive_class(self) -> int | None:
        vocab = getattr(self.dls, "vocab", None)
        if self.positive is None:
            return None
        if vocab is None or self.positive not in list(vocab):
            raise HardmineError(f"positive={self.positive!r} is not a class of dls.vocab "
                                f"({', '.join(map(str, vocab or [])) or 'none'})")  # fmt: skip
        return list(vocab).index(self.positive)


def hardmine_rounds(learn, miner: HardMiner, n: int = 3, epochs: int = 5, lr: float | None = None,
                    positive: str | None = None, score_dl=None) -> HardMiningCallback:  # fmt: skip
    """``learn.hardmine_rounds(miner, n=3, epochs=5)``: round 0 of ``epochs`` epochs, then ``n`` mining rounds.

    One one-cycle fit of ``(n + 1) * epochs`` epochs that mines after every ``epochs`` epochs
    (the last mining's table is kept for review); returns the callback, whose ``history``
    lists what each mining found.
    """
    if n < 0 or epochs < 1:
        raise HardmineError(f"n={n} must be >= 0 and epochs={epochs} >= 1")
    mining = HardMiningCallback(miner, positive=positive, every=epochs, score_dl=score_dl)
    learn.fit_one_cycle((n + 1) * epochs, lr, cbs=mining)
    return mining


try:  # ``learn.hardmine_rounds(...)``, fastai style
    from fastai.learner import Learner

    Learner.hardmine_rounds = hardmine_rounds
except ImportError:  # pragma: no cover - fastai's layout changed
    pass
