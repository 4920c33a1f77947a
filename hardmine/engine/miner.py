"""``HardMiner``: hard-example mining for a training loop you already have.

>>> miner = HardMiner(labels, groups=lesion_ids)          # doctest: +SKIP
>>> loader = DataLoader(train_ds, sampler=miner.sampler(), batch_size=64)
>>> for round in range(3):
...     train_some_epochs(model, loader)                 # your loop, unchanged
...     miner.score(model, score_loader)                 # or miner.update(probs=..., embeddings=...)
...     # the sampler now draws by the new curriculum weights; or use miner.weights

Your model may be any ``nn.Module`` whose forward returns logits ``(B, 2)``,
``(B, 1)``, or ``(B, C)`` with a chosen positive class (or ``(logits,
embedding)``): the input of its last ``nn.Linear`` is taken as the embedding,
from the same forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

import numpy as np
import pandas as pd

from hardmine.core import curriculum
from hardmine.core.errors import HardmineError, warn
from hardmine.core.index import normalise
from hardmine.core.metrics import COST_FN, COST_FP, check_binary, check_costs
from hardmine.core.mining import MiningConfig, MiningResult, mine
from hardmine.core.scores import as_signals
from hardmine.engine.collect import forward_collect


class HardMiner:
    """Stateful mining across rounds for user-owned loops.

    Parameters
    ----------
    labels : (N,) 0/1 labels of the training set, in dataset order.
    groups : (N,) group keys (lesion or patient ids); neighbours in a seed's own group count once.
    ids : (N,) sample ids for the mined table (default: row numbers).
    threshold : decision threshold for "misclassified" (update it as you tune it).
    config : :class:`hardmine.core.mining.MiningConfig`, or keyword overrides via ``**options`` (the
        given config is copied, never changed).
    seed : seed of the sampler and of the label-suspicion evidence's folds.
    cost_fn, cost_fp : what a missed positive and a false alarm cost; missed positives rank ahead of
        other seeds by their ratio.
    trusted : (N,) bool, labels confirmed outside the model (histopathology): never quarantined.
    """

    def __init__(
        self,
        labels,
        *,
        groups=None,
        ids=None,
        threshold: float = 0.5,
        config: MiningConfig | None = None,
        seed: int = 0,
        trusted=None,
        cost_fn: float = COST_FN,
        cost_fp: float = COST_FP,
        **options: Any,
    ):
        self.labels, _ = check_binary(labels)
        n = len(self.labels)
        if n and self.labels.mean() > 0.5:
            warn(f"{int(self.labels.sum())} of {n} labels are 1, the positive (costly, mined-for) class: the "
                 "majority; if your dataset numbers classes alphabetically (ImageFolder: melanoma=0), pass "
                 "labels == <melanoma's index> instead")  # fmt: skip
        self.trusted = None if trusted is None else np.asarray(trusted, dtype=bool)
        if self.trusted is not None and self.trusted.shape != (n,):
            raise HardmineError(f"trusted has shape {self.trusted.shape}; expected ({n},)")
        self.groups = None if groups is None else np.asarray(groups)
        if self.groups is not None and len(self.groups) != n:
            raise HardmineError(f"{len(self.groups)} groups for {n} labels")
        self.ids = np.arange(n) if ids is None else np.asarray(ids)
        if len(self.ids) != n:
            raise HardmineError(f"{len(self.ids)} ids for {n} labels")
        known = {f.name for f in fields(MiningConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise HardmineError(
                f"unknown mining option(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}"
            )
        config = replace(config or MiningConfig(), **options)
        config.validate()
        check_costs(cost_fn, cost_fp)
        self.costs = (float(cost_fn), float(cost_fp))
        self.config = config
        self.threshold = float(threshold)
        self.seed = int(seed)
        self.round = 0
        self.weights = curriculum.weights(self.labels, max_weight=config.max_weight, balance=config.balance)
        self.hard_history: list[np.ndarray] = []
        self.last: MiningResult | None = None
        self._sampler = None
        self._sampler_epoch = 0
        self._center: np.ndarray | None = None
        self._labeled: np.ndarray | None = None

    # ------------------------------------------------------------------ mining

    def update(
        self,
        probs: np.ndarray,
        embeddings: np.ndarray,
        threshold: float | None = None,
        triage_probs: np.ndarray | None = None,
        signals: Mapping[str, np.ndarray] | pd.DataFrame | None = None,
        oof_probs: np.ndarray | None = None,
        oof_prior: float = 0.5,
    ) -> MiningResult:
        """Mine from arrays you computed and refresh :attr:`weights` and the sampler.

        probs : (N,) P(positive), or (N, 2) class probabilities.
        embeddings : (N, D) embeddings; centred on their mean and L2-normalised here,
            as ``hardmine score`` does, so that ``min_sim`` means the same in both.
        oof_probs : (N,) P(positive) from models that never saw the sample (your own
            cross-validation, grouped by lesion): the label-suspicion evidence, as with
            ``hardmine score --triage networks`` (quarantine at 0.8 unless the config says otherwise).
        oof_prior : the positive share those models were trained at (0.5 when oversampled or
            class-weighted, else your data's share).
        signals : per-sample columns the hardness signal reads, by name (N,) each: a mapping such as
            ``{"dynamics": d, "forgetting": f}``, a score table (its numeric columns), or a
            :class:`hardmine.core.scores.Signals`; ``dynamics`` (1 - mean training confidence) also
            feeds the label-suspicion evidence.
        triage_probs : (N,) P(positive) for the probability-based quarantines (``confident``,
            ``both``); refused under ``suspicion`` (the default), whose out-of-fold input is ``oof_probs``.
        """
        if triage_probs is not None and self.config.quarantine == "suspicion":
            raise HardmineError("triage_probs is read by quarantine 'confident' or 'both'; under 'suspicion' (the "
                                "default) give probabilities from models that never saw the image as oof_probs")
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim == 2:
            probs = probs[:, 1]
        if len(probs) != len(self.labels):
            raise HardmineError(f"probs has {len(probs)} rows but the miner holds {len(self.labels)} labels")
        if threshold is not None:
            self.threshold = float(threshold)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        self._center = embeddings.mean(axis=0)
        emb = normalise(embeddings, center=self._center)
        self._labeled = emb  # the space a later query compares the pool with
        history = np.array(self.hard_history) if self.hard_history else None
        result = mine(self.labels, probs, emb, threshold=self.threshold, config=self.config, groups=self.groups,
                      triage_prob=triage_probs, signals=as_signals(signals), hard_history=history,
                      previous_weights=self.weights if self.round else None,
                      oof_prob=None if oof_probs is None else self._balanced(oof_probs, oof_prior),
                      trusted=self.trusted, cost_fn=self.costs[0], cost_fp=self.costs[1],
                      seed=self.seed)  # fmt: skip
        self.hard_history.append(result.hard_mask())
        self.last = result
        self.use_weights(result.weights)
        return result

    def _balanced(self, oof_probs, oof_prior: float) -> np.ndarray:
        from hardmine.core.suspicion import at_prior

        oof = np.asarray(oof_probs, dtype=np.float64)
        if oof.shape != self.labels.shape:
            raise HardmineError(f"oof_probs has shape {oof.shape}; expected {self.labels.shape}")
        return at_prior(oof, oof_prior, 0.5)

    def use_weights(self, weights: np.ndarray) -> None:
        """Take ``weights`` (N,) as the next round's curriculum and keep the sampler in step: what
        :meth:`update` ends with, and what a rank that did not mine does with the weights it receives."""
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != self.labels.shape:
            raise HardmineError(f"{len(weights)} weights but the miner holds {len(self.labels)} labels")
        self.weights = weights
        self.round += 1
        if self._sampler is not None:
            self._sampler.update_weights(self.weights)

    def score(
        self, model, loader, device=None, threshold: float | None = None, *, positive_class: int | None = None
    ) -> MiningResult:
        """Run ``model`` over ``loader`` (no augmentation) and :meth:`update`.

        The loader yields ``(x, y)``, ``(x, y, index)`` or dicts (``image``,
        ``label``, ``index`` keys). With an index, rows land by it and any order
        works; without one the order must be the dataset order, and a shuffling
        loader is refused. Labels in the batches are checked against the
        miner's, so a loader in another order fails loudly instead of mining the
        wrong images. Logits ``(B, 2)``; ``(B,)``/``(B, 1)`` (sigmoid); or
        ``(B, C)`` with ``positive_class``, the column mined against the rest.
        """
        probs, emb = forward_collect(model, loader, len(self.labels), device, positive_class=positive_class,
                                     labels=self.labels)  # fmt: skip
        return self.update(probs, emb, threshold)

    def query(
        self, pool_probs, pool_embeddings, budget: int, *, pool_ids=None, pool_groups=None, method: str = "hardmine",
        **options: Any,
    ):  # fmt: skip
        """Which unlabeled images to label next (:mod:`hardmine.core.acquisition`), numpy in.

        pool_probs : (P,) P(positive), or (P, 2) class probabilities, of the unlabeled images.
        pool_embeddings : (P, D) their embeddings from the same model; centred and normalised in the
            training set's space of the last :meth:`update` (their own mean before any).
        budget : images to pick; a lesion's images (``pool_groups``) are asked together.
        method : a name in :data:`hardmine.core.acquisition.ACQUISITION`; ``coreset``, ``seals`` and
            ``hardmine`` use the labeled set of the last update (its embeddings; ``seals`` its positives).
        **options : the function's own options, e.g. ``positive_share=0.3`` (``hardmine``) or ``k=5``
            (``seals``); :func:`hardmine.core.acquisition.function_options` lists them.

        Returns a DataFrame ``id, prob_pos, reason``, in pick order (``id``: ``pool_ids`` or row numbers).
        """
        import pandas as pd

        from hardmine.core.acquisition import acquire

        probs = np.asarray(pool_probs, dtype=np.float64)
        probs = probs[:, 1] if probs.ndim == 2 else probs
        embeddings = np.asarray(pool_embeddings, dtype=np.float32)
        emb = normalise(embeddings, center=embeddings.mean(axis=0) if self._center is None else self._center)
        labeled_labels = None if self._labeled is None else self.labels
        rows, reasons = acquire(method, probs, emb, budget, groups=pool_groups, threshold=self.threshold,
                                labeled_embeddings=self._labeled, labeled_labels=labeled_labels,
                                seed=self.seed + self.round, **options)  # fmt: skip
        ids = np.arange(len(probs)) if pool_ids is None else np.asarray(pool_ids)
        if len(ids) != len(probs):
            raise HardmineError(f"{len(ids)} pool ids for {len(probs)} pool images")
        return pd.DataFrame({"id": ids[rows], "prob_pos": probs[rows], "reason": reasons})

    def query_model(self, model, pool_loader, budget: int, *, device=None, positive_class: int | None = None,
                    n: int | None = None, **options):  # fmt: skip
        """:meth:`query` on the pool images ``pool_loader`` yields, from one forward per batch of ``model``.

        The loader (no augmentation, not shuffled unless it yields indices) gives ``(x,)``, ``(x, y)``,
        ``(x, y, index)`` or dicts, like :meth:`score`'s; ``n`` is the pool's size (default
        ``len(pool_loader.dataset)``). ``options`` are :meth:`query`'s (``pool_ids``, ``pool_groups``,
        ``method``...).
        """
        n = len(pool_loader.dataset) if n is None else n
        probs, emb = forward_collect(model, pool_loader, n, device, positive_class=positive_class)
        return self.query(probs, emb, budget, **options)

    # ------------------------------------------------------------------ outputs

    def sampler(self, num_samples: int | None = None, num_replicas: int | None = None, rank: int | None = None):
        """The :class:`hardmine.engine.sampler.CurriculumSampler` kept in step with :attr:`weights`, made on the
        first call; ``num_samples``: draws per epoch over all replicas (None: one per sample when made, and
        unchanged on later calls)."""
        from hardmine.engine.sampler import CurriculumSampler

        if self._sampler is None:
            self._sampler = CurriculumSampler(
                self.weights, num_samples=num_samples, seed=self.seed, num_replicas=num_replicas, rank=rank
            )
            self._sampler.set_epoch(self._sampler_epoch)  # 0, or where a loaded state left off
        elif num_samples is not None:
            self._sampler.set_num_samples(num_samples)
        return self._sampler

    def mined(self):
        """The last round's ``mined.csv`` table (DataFrame)."""
        if self.last is None:
            raise HardmineError("nothing mined yet: call update() or score() first")
        return self.last.frame(self.ids)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Plain state (tensors, numbers, strings) safe for ``torch.save`` / ``weights_only`` loading."""
        import torch

        history = np.array(self.hard_history, dtype=bool).reshape(len(self.hard_history), len(self.labels))
        return {
            "round": self.round,
            "threshold": self.threshold,
            "seed": self.seed,
            "weights": torch.as_tensor(self.weights),
            "hard_history": torch.as_tensor(history),
            "sampler_epoch": self._sampler.next_epoch if self._sampler is not None else 0,
            "config": self.config.to_dict(),
            "costs": list(self.costs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        weights = np.asarray(state["weights"], dtype=np.float64)
        if weights.shape != self.labels.shape:
            raise HardmineError(f"state holds {len(weights)} weights but the miner holds {len(self.labels)} labels")
        self.round = int(state["round"])
        self.threshold = float(state["threshold"])
        self.seed = int(state["seed"])
        self.weights = weights
        self.hard_history = list(np.asarray(state["hard_history"], dtype=bool))
        self.config = MiningConfig(**state["config"])
        self.costs = tuple(float(c) for c in state.get("costs", self.costs))
        self._sampler_epoch = int(state["sampler_epoch"])
        if self._sampler is not None:
            self._sampler.seed = self.seed
            self._sampler.update_weights(self.weights)
            self._sampler.set_epoch(self._sampler_epoch)
