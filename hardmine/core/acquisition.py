"""Acquisition functions as plug-ins: which unlabeled images deserve an expert's label next.

Numpy in, numpy out. Each function in :data:`ACQUISITION` ranks the pool and
returns its picks in order with the reason each was picked; :func:`acquire`
validates the inputs once, runs one, and keeps a lesion's images together (a
picked image brings the other images of its lesion, which count against the
budget). Score direction: P(positive) is P(melanoma), higher = more likely the
costly class.

Adding one: write ``def my_function(pool: Pool, budget: int, *, my_option=1.0) -> Picks``
and add one line to :data:`ACQUISITION` (:mod:`hardmine.core.picking` holds what functions read and build
with: :class:`~hardmine.core.picking.Pool`, ``Batch``, ``k_center``). ``Pool`` holds only what every
function shares; a function's own options are its keyword-only parameters with
defaults, which :func:`acquire` checks by name (``acquire(..., my_option=2.0)``,
``--method-option my_option=2`` on the command line) and the function checks by value.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hardmine.core.errors import HardmineError, warn
from hardmine.core.metrics import check_binary
from hardmine.core.picking import DUPLICATE_SIM, Batch, Picks, Pool, k_center, whole_lesions

CANDIDATES_PER_LABEL = 10  # the uncertain candidates of ``hardmine``: this many per image of the batch


def random(pool: Pool, budget: int) -> Picks:
    """Uniformly at random: the baseline every other function is measured against."""
    order = np.random.default_rng(pool.seed).permutation(len(pool.prob_pos))[:budget]
    return order, ["random"] * len(order)


def margin(pool: Pool, budget: int) -> Picks:
    """Closest to the tuned threshold first (uncertainty sampling where the decision is made)."""
    order = np.argsort(-pool.uncertainty(), kind="stable")[:budget]
    return order, [f"margin: P(pos) {pool.prob_pos[i]:.2f} at threshold {pool.threshold:.2f}" for i in order]


def entropy(pool: Pool, budget: int) -> Picks:
    """Highest entropy of P(pos) re-centred on the threshold (so the threshold reads as 0.5)."""
    q = np.clip(1 / (1 + np.exp(-pool.log_odds())), 1e-12, 1 - 1e-12)
    h = -(q * np.log(q) + (1 - q) * np.log(1 - q))
    order = np.argsort(-h, kind="stable")[:budget]
    return order, [f"entropy {h[i]:.2f} at the threshold" for i in order]


def positive(pool: Pool, budget: int) -> Picks:
    """Most likely positive first: finds melanomas fastest, learns little about the boundary."""
    order = np.argsort(-pool.prob_pos, kind="stable")[:budget]
    return order, [f"likely positive: P(pos) {pool.prob_pos[i]:.2f}" for i in order]


def coreset(pool: Pool, budget: int) -> Picks:
    """k-center greedy: each pick is the pool image farthest (cosine) from the labeled set and earlier picks."""
    picks, distances = k_center(pool, np.arange(len(pool.prob_pos)), [], budget)
    reasons = ["coreset: farthest from everything labeled" if np.isinf(d) else
               f"coreset: cosine distance {d:.2f} to the nearest labeled or picked" for d in distances]  # fmt: skip
    return picks, reasons


def seals(pool: Pool, budget: int, *, k: int = 10) -> Picks:
    """SEALS: only the ``k`` nearest pool images of each labeled positive are candidates, most uncertain first.

    Never proposes outside that neighbourhood, so a batch can come back short of the budget.
    """
    if k < 1:
        raise HardmineError(f"seals: k={k} must be at least 1 (pool neighbours per labeled positive)")
    positives = _labeled_positives(pool)
    queries = np.ascontiguousarray(pool.labeled_embeddings[positives], dtype=np.float32)
    _, rows = pool._index().search(queries, min(k, len(pool.prob_pos)))
    candidates = np.unique(rows[rows >= 0])
    order = candidates[np.argsort(-pool.uncertainty()[candidates], kind="stable")][:budget]
    return order, [f"seals: near a labeled positive, P(pos) {pool.prob_pos[i]:.2f}" for i in order]


def hardmine(pool: Pool, budget: int, *, positive_share: float = 0.5) -> Picks:
    """The default: a positive quota, then the most uncertain at the threshold, spread out in embedding space.

    ``positive_share`` of the batch's images go to the most likely positives (finding melanomas is what
    an imbalanced pool makes expensive); the rest come from the ``CANDIDATES_PER_LABEL x budget`` images
    closest to the cost-tuned threshold, picked k-center greedy (each the farthest from everything
    labeled and picked so far), so the uncertain half is not many views of one region ("cluster-margin",
    Citovsky et al. 2021). A pick nearly identical (cosine >= 0.95) to one already in the batch is
    passed over. Chosen over a quota followed by neighbours of missed positives and uncertainty, and over
    a quota followed by plain k-center, on validation (``benchmarks/bench_active.py``, RESULTS.md).
    """
    if not 0 <= positive_share <= 1:
        raise HardmineError(f"hardmine: positive_share={positive_share} must be in [0, 1] (a share of the batch)")
    batch = Batch(pool)
    batch.take(np.argsort(-pool.prob_pos, kind="stable"), lambda i: f"positive quota: P(pos) {pool.prob_pos[i]:.2f}",
               int(round(positive_share * budget)))  # fmt: skip
    candidates = np.flatnonzero(~batch.taken)
    candidates = candidates[np.argsort(-pool.uncertainty()[candidates], kind="stable")][: CANDIDATES_PER_LABEL * budget]
    spread, distances = k_center(pool, candidates, batch.rows, budget)
    distance = dict(zip(spread.tolist(), distances.tolist(), strict=True))
    batch.take(spread, lambda i: f"uncertain: P(pos) {pool.prob_pos[i]:.2f} at threshold {pool.threshold:.2f}, "
                                 f"cosine distance {distance[i]:.2f} to the nearest labeled or picked",
               budget)  # fmt: skip
    return batch.picks()


def balanced(pool: Pool, budget: int) -> Picks:
    """Class-balanced selection around the threshold (Emam et al. 2021): half the batch from the images the
    model calls positive, the rest from those it calls negative, each side closest to the threshold first.

    On an imbalanced pool uncertainty alone asks mostly for negatives; this keeps the batch's predicted
    classes even, so the positive share follows what the model finds near its boundary rather than a fixed
    quota of the most likely positives. When fewer images are called positive, negatives fill the batch.
    """
    odds = pool.log_odds()
    by_closeness = np.argsort(np.abs(odds), kind="stable")
    called = odds[by_closeness] >= 0

    def why(i: int) -> str:
        side = "positive" if odds[i] >= 0 else "negative"
        return f"balanced, called {side}: P(pos) {pool.prob_pos[i]:.2f} at threshold {pool.threshold:.2f}"

    batch = Batch(pool)
    batch.take(by_closeness[called], why, int(round(budget / 2)))
    batch.take(by_closeness[~called], why, budget)
    return batch.picks()


TYPICAL_NEIGHBOURS = 20  # the neighbours whose mean distance measures a point's typicality (TypiClust)


def typical(pool: Pool, budget: int) -> Picks:
    """TypiClust (Hacohen et al. 2022), for a cold start: the most typical image of each uncovered cluster.

    The pool and the labeled set are clustered together by k-means into (labeled + budget) clusters
    (faiss, seeded); clusters that hold no labeled image are taken largest first, and from each the pool
    image whose 20 nearest cluster-mates are closest on average (the densest point: typical of its
    region, not an outlier). At a small budget typical points teach more than uncertain ones, which a
    model trained on few labels cannot yet judge. Reads no probability.
    """
    from hardmine.core.index import load_faiss

    emb = np.ascontiguousarray(pool.embeddings, dtype=np.float32)
    labeled = (np.zeros((0, emb.shape[1]), np.float32) if pool.labeled_embeddings is None else
               np.ascontiguousarray(pool.labeled_embeddings, dtype=np.float32))  # fmt: skip
    both = np.concatenate([emb, labeled])
    n_clusters = min(len(labeled) + budget, len(emb))
    kmeans = load_faiss().Kmeans(both.shape[1], n_clusters, niter=20, seed=pool.seed + 1, verbose=False,
                              min_points_per_centroid=1)  # small pools: no warning for few points a cluster
    kmeans.train(both)
    _, assigned = kmeans.index.search(both, 1)
    assigned = assigned[:, 0]
    in_pool, of_labeled = assigned[: len(emb)], assigned[len(emb):]
    sizes = np.bincount(in_pool, minlength=n_clusters)
    covered = np.zeros(n_clusters, dtype=bool)
    covered[of_labeled] = True
    order = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] and not covered[c]]
    order += [c for c in np.argsort(-sizes, kind="stable") if sizes[c] and covered[c]]  # when budget is left
    picks, reasons = [], []
    for c in order:
        members = np.flatnonzero(in_pool == c)
        k = min(TYPICAL_NEIGHBOURS, len(members) - 1)
        if k > 0:
            distance = 1 - emb[members] @ emb[members].T
            np.fill_diagonal(distance, np.inf)
            spread = np.mean(np.sort(distance, axis=1)[:, :k], axis=1)
            best = int(members[np.argmin(spread)])
        else:
            best = int(members[0])
        picks.append(best)
        state = "covered" if covered[c] else "no labeled image"
        reasons.append(f"typical: the densest image of a cluster of {sizes[c]} pool images ({state})")
    batch = Batch(pool)
    why = dict(zip(picks, reasons, strict=True))
    batch.take(np.array(picks, dtype=np.int64), lambda i: why[i], budget)
    return batch.picks()


def _labeled_positives(pool: Pool) -> np.ndarray:
    if pool.labeled_embeddings is None or pool.labeled_labels is None or not np.any(pool.labeled_labels == 1):
        raise HardmineError("this acquisition needs labeled positives and their embeddings; none were given")
    return np.flatnonzero(np.asarray(pool.labeled_labels) == 1)


AcquisitionFunction = Callable[..., Picks]  # (pool: Pool, budget: int, **its options) -> Picks

ACQUISITION: dict[str, AcquisitionFunction] = {
    "random": random,
    "margin": margin,
    "entropy": entropy,
    "positive": positive,
    "coreset": coreset,
    "seals": seals,
    "typical": typical,
    "balanced": balanced,
    "hardmine": hardmine,
}


def function_options(method: str | AcquisitionFunction) -> dict[str, Any]:
    """The options an acquisition function takes, with their defaults: its keyword-only parameters."""
    function = _function(method)
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}  # fmt: skip


def parse_options(method: str | AcquisitionFunction, pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` texts (``--method-option``) as the options of ``method``, each of its default's type;
    an unknown key, a malformed pair or a value of another type raises :class:`HardmineError` naming it."""
    known = function_options(method)
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HardmineError(f"--method-option {pair!r} is not valid; expected KEY=VALUE, e.g. positive_share=0.3")
        check_options(method, [key])
        kind = type(known[key])
        try:
            if kind is bool:
                if text.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                value: Any = text.strip().lower() in ("true", "1", "yes")
            else:
                value = kind(text.strip())
        except ValueError:
            raise HardmineError(f"--method-option {key}={text!r} is not valid; expected {kind.__name__} "
                                f"(default {known[key]!r})") from None  # fmt: skip
        options[key] = value
    return options


def _function(method: str | AcquisitionFunction) -> AcquisitionFunction:
    if callable(method):
        return method
    if method not in ACQUISITION:
        raise HardmineError(f"acquisition {method!r} is not valid; expected one of {', '.join(ACQUISITION)}")
    return ACQUISITION[method]


def _name(method: str | AcquisitionFunction) -> str:
    return method if isinstance(method, str) else getattr(method, "__name__", repr(method))


def check_options(method: str | AcquisitionFunction, names) -> None:
    """Raise :class:`HardmineError` naming the first of ``names`` that ``method`` takes no option of."""
    known = function_options(method)
    unknown = [name for name in names if name not in known]
    if unknown:
        offered = ", ".join(f"{k}={v!r}" for k, v in known.items()) or "none"
        raise HardmineError(f"acquisition {_name(method)!r} takes no option {unknown[0]!r}; its options: {offered}")


def acquire(
    method: str | AcquisitionFunction,
    prob_pos,
    embeddings: np.ndarray,
    budget: int,
    *,
    groups=None,
    threshold: float = 0.5,
    labeled_embeddings: np.ndarray | None = None,
    labeled_labels=None,
    seed: int = 0,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick up to ``budget`` pool images to label with acquisition function ``method``.

    Parameters
    ----------
    method : a name in :data:`ACQUISITION`, or an acquisition function itself (a candidate measured
        beside the registered ones without registering it).
    prob_pos : (N,) P(positive) of the pool. embeddings : (N, D) L2-normalised pool embeddings.
    budget : images to pick (a lesion's images count one each).
    groups : (N,) lesion ids: a picked image brings its lesion's other pool images; a lesion that
        would not fit whole in what is left of the budget is passed over.
    threshold, labeled_*, seed : see :class:`Pool`.
    **options : the function's own options (:func:`function_options`), e.g. ``positive_share`` of
        ``hardmine`` or ``k`` of ``seals``; a name it does not take raises :class:`HardmineError`.

    Returns
    -------
    rows : (B,) pool rows to label, in pick order (lesions whole). reasons : (B,) why each was picked.
    """
    function = _function(method)
    check_options(method, options)
    _, prob = check_binary(np.zeros(len(np.asarray(prob_pos)), dtype=int), prob_pos)
    emb = np.asarray(embeddings)
    n = len(prob)
    if emb.ndim != 2 or len(emb) != n:
        raise HardmineError(f"pool embeddings have shape {emb.shape}; expected ({n}, D)")
    if not 1 <= budget <= n:
        raise HardmineError(f"budget {budget} must be between 1 and the pool's {n} images")
    if labeled_embeddings is not None and np.shape(labeled_embeddings)[1:] != emb.shape[1:]:
        raise HardmineError(f"labeled embeddings have shape {np.shape(labeled_embeddings)}; "
                            f"expected (M, {emb.shape[1]})")
    lesions = None
    if groups is not None:
        keys = np.asarray(groups)
        lesions = np.unique(keys if keys.dtype.kind in "iub" else keys.astype(str), return_inverse=True)[1]
    if lesions is not None and len(lesions) != n:
        raise HardmineError(f"{len(lesions)} lesion ids for a pool of {n} images")
    pool = Pool(prob, emb, threshold, labeled_embeddings, None if labeled_labels is None else
                check_binary(labeled_labels)[0], seed, lesions)  # fmt: skip
    # each pick brings at least one image, so `budget` picks fill the batch (a lesion that would not fit whole is
    # passed over, and the batch then comes back short by less than that lesion)
    order, why = function(pool, budget, **options)
    order = _checked_picks(_name(method), order, why, n, budget)
    rows, reasons = whole_lesions(pool, order, why, budget)
    if len(rows) < budget:
        warn(_why_short(_name(method), pool, rows, budget))
    return rows, reasons


def _why_short(name: str, pool: Pool, rows: np.ndarray, budget: int) -> str:
    """One line on why a batch came back with fewer than ``budget`` images: what can leave it short, with the
    counts of this pool."""
    emb = np.asarray(pool.embeddings, dtype=np.float32)
    left = np.setdiff1d(np.arange(len(emb)), rows)
    near = int((np.max(emb[left] @ emb[rows].T, axis=1) >= DUPLICATE_SIM).sum()) if len(rows) and len(left) else 0
    causes = [f"an image nearly identical (cosine >= {DUPLICATE_SIM}) to a picked one is passed over ({near} of "
              f"the {len(left)} left are)"]  # fmt: skip
    if pool.lesions is not None:
        causes.append("a lesion is asked whole or not at all")
    causes.append("some functions propose only part of the pool (seals: the neighbours of labeled melanomas)")
    return (f"acquisition {name!r} picked {len(rows)} of the {budget} images asked; what leaves a batch short: "
            + "; ".join(causes))


def _checked_picks(name: str, order, why, n: int, budget: int) -> np.ndarray:
    """A function's picks as (B,) int64 rows, after asserting what every function promises: rows unique and
    inside the pool, at most ``budget`` of them, and a reason (non-empty text) for each."""
    rows = np.asarray(order)
    if rows.ndim != 1 or (len(rows) and rows.dtype.kind not in "iu"):
        raise HardmineError(f"acquisition {name!r} returned rows of shape {rows.shape} and type {rows.dtype}; "
                            "expected (B,) integer pool rows")  # fmt: skip
    problems = [
        (len(rows) > budget, f"{len(rows)} picks for a budget of {budget}"),
        (len(rows) and (rows.min() < 0 or rows.max() >= n), f"a row outside the pool of {n} images"),
        (len(np.unique(rows)) != len(rows), "a row picked twice"),
        (len(why) != len(rows), f"{len(why)} reasons for {len(rows)} picks"),
        (any(not isinstance(r, str) or not r.strip() for r in why), "a pick without a reason"),
    ]
    for failed, what in problems:
        if failed:
            raise HardmineError(f"acquisition {name!r} returned {what}; expected unique pool rows, at most the "
                                "budget, a reason each")  # fmt: skip
    return rows.astype(np.int64)
