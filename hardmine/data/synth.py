"""Demo data: procedurally drawn lesion-like images in the HAM10000 layout.

Each lesion has a latent *malignancy* ``m`` in [0, 1]. Nevi draw ``m`` around
0.25, melanomas around 0.75, with overlap. ``m`` drives what a CNN can learn:
border irregularity, asymmetry, number of colours (blue-grey and black
blotches), and border blur. Lesions with ``m`` near 0.5 are genuinely hard, and
so is a rare subtype: a fifth of melanomas are *amelanotic* (pink, little
pigment, red vascular blotches) among far more pink but regular benign nevi,
a small sub-population a model tends to miss. Both are recorded in
``planted.csv`` as ``hard``. About 2% of images carry a
flipped label: a lesion drawn clearly as one class but labelled as the other
(recorded as ``flipped``). Each lesion has 1-4 images: the same lesion seen
with a small shift, rotation, zoom and lighting change.

Core code never imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hardmine.core.errors import DataError, HardmineError
from hardmine.core.io import write_csv
from hardmine.core.metrics import COST_FN, COST_FP

if TYPE_CHECKING:
    from hardmine.core.mining import MiningConfig

SITES = ("back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest")
HARD_BAND = 0.1  # |m - 0.5| below this counts as a planted hard case
FLIP_MIN_DISTANCE = 0.22  # flipped lesions are drawn clearly: |m - 0.5| at least this
NOT_HISTO = ("follow_up", "consensus", "confocal")  # HAM10000's dx_type values other than histopathology

# RGB colours (0-1) of lesion pigment: browns for benign, then the melanoma palette.
_BROWNS = np.array([[0.55, 0.36, 0.22], [0.45, 0.28, 0.16], [0.62, 0.42, 0.27]])
_MALIGNANT = np.array([[0.12, 0.08, 0.07], [0.35, 0.40, 0.52], [0.62, 0.22, 0.20], [0.80, 0.70, 0.62]])
# Amelanotic melanoma: little pigment, pink-red, with red vascular blotches.
_PINK = np.array([0.86, 0.58, 0.58])
_VASCULAR = np.array([[0.78, 0.28, 0.32], [0.70, 0.20, 0.25], [0.90, 0.62, 0.62]])
AMELANOTIC_FRAC = 0.2  # share of melanoma lesions of the rare amelanotic subtype
PINK_NEVUS_FRAC = 0.15  # share of nevi that are pink too, so colour alone does not give melanoma away


def check_demo_options(*, n: int, positive_frac: float, size: int, seed: int, pool: int) -> None:
    """Raise :class:`HardmineError` naming the first option :func:`generate_demo` cannot make a demo set with."""
    if n < 20:
        raise HardmineError(f"n={n} is too small for a demo set; use at least 20")
    if not 0 < positive_frac < 1:
        raise HardmineError(f"positive_frac={positive_frac} must be in (0, 1)")
    if size < 16:
        raise HardmineError(f"size={size} must be at least 16")
    for name, value in (("seed", seed), ("pool", pool)):
        if value < 0:
            raise HardmineError(f"--{name} {value} is not valid; expected 0 or more")


def generate_demo(
    out: str | os.PathLike,
    n: int = 2300,
    positive_frac: float = 0.10,
    size: int = 64,
    seed: int = 0,
    flip_frac: float = 0.02,
    pool: int = 0,
    pool_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Write a HAM10000-layout demo folder and return its metadata table.

    With ``pool`` > 0, about that many more images (whole lesions, the same prior) form an unlabeled
    pool in ``pool_dir`` (default ``OUT-pool`` beside ``out``): ``images/<image_id>.jpg`` and
    ``pool.csv`` (``path, id, group`` and ``dx``, the true class, hidden from hardmine unless a
    simulated oracle is asked to answer from it).

    Writes ``HAM10000_metadata.csv`` (HAM10000's columns plus ``pigment``: ``pink`` for
    amelanotic melanomas and pink nevi, ``pigmented`` otherwise, the subgroup that
    ``hardmine compare --subgroup pigment`` reports), ``HAM10000_images_part_{1,2}/<image_id>.jpg``
    and ``planted.csv`` (``image_id, kind, detail``: kind ``hard|flipped``; detail
    ``boundary`` or ``amelanotic`` for hard cases, ``drawn as mel|nv`` for flips).
    Deterministic for a seed.
    """
    check_demo_options(n=n, positive_frac=positive_frac, size=size, seed=seed, pool=pool)
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = Path(out)
    parts = [out / "HAM10000_images_part_1", out / "HAM10000_images_part_2"]
    for part in parts:
        part.mkdir(parents=True, exist_ok=True)

    lesions = _plan_lesions(rng, n + pool, positive_frac, flip_frac)
    grid = _Grid(size)
    rows, planted = [], []
    image_number = 24306  # HAM10000's image ids start at ISIC_0024306
    for lesion in lesions:
        shape = _LesionShape(rng, lesion["m"], lesion["pink"])
        for _ in range(lesion["n_images"]):
            image_id = f"ISIC_{image_number:07d}"
            image_number += 1
            pixels = shape.render(rng, grid)
            part = parts[len(rows) % 2]
            Image.fromarray(pixels).save(part / f"{image_id}.jpg", quality=92)
            rows.append(
                {
                    "lesion_id": lesion["lesion_id"],
                    "image_id": image_id,
                    "dx": lesion["dx"],
                    "dx_type": lesion["dx_type"],
                    "age": lesion["age"],
                    "sex": lesion["sex"],
                    "localization": lesion["localization"],
                    "pigment": "pink" if lesion["pink"] else "pigmented",
                }
            )
            if lesion["kind"]:
                planted.append({"image_id": image_id, "kind": lesion["kind"], "detail": lesion["detail"]})
    metadata = pd.DataFrame(rows)
    planted = pd.DataFrame(planted, columns=["image_id", "kind", "detail"])
    if pool:
        metadata = _move_pool(metadata, planted, out, Path(pool_dir or pool_folder(out)), pool, rng)
        planted = planted[planted["image_id"].isin(set(metadata["image_id"]))]
    write_csv(out / "HAM10000_metadata.csv", metadata)
    write_csv(out / "planted.csv", planted)
    return metadata


def remove_demo(out: str | os.PathLike) -> None:
    """Delete the demo set in ``out`` and its pool folder, refusing (naming it) any file a demo set does not hold:
    ``--overwrite`` replaces what :func:`generate_demo` made, never a folder of the user's own."""
    import shutil

    out = Path(out)
    ours = {"HAM10000_metadata.csv", "planted.csv", "HAM10000_images_part_1", "HAM10000_images_part_2",
            "hardmine-answers"}  # fmt: skip
    if out.exists():
        if not (out / "planted.csv").is_file() or not (out / "HAM10000_metadata.csv").is_file():
            raise DataError(f"{out} is not a demo set (no planted.csv beside HAM10000_metadata.csv); --overwrite "
                            "replaces only a demo set: choose another folder")  # fmt: skip
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ours)
        if foreign:
            raise DataError(f"{out} holds files a demo set does not ({', '.join(foreign[:5])}); --overwrite replaces "
                            "only a demo set: move them or choose another folder")  # fmt: skip
    pool = pool_folder(out)
    if pool.exists():
        foreign = sorted(p.name for p in pool.iterdir() if p.name not in {"images", "pool.csv"})
        if foreign:
            raise DataError(f"{pool} holds files a demo pool does not ({', '.join(foreign[:5])}); move them first")
    for folder in (out, pool):
        if folder.exists():
            shutil.rmtree(folder)


def pool_folder(out: str | os.PathLike) -> Path:
    """Where ``generate_demo(out, pool=N)`` puts the unlabeled pool by default: ``OUT-pool`` beside ``out``."""
    out = Path(out)
    return out.parent / f"{out.name}-pool"


def _move_pool(metadata: pd.DataFrame, planted: pd.DataFrame, out: Path, pool_dir: Path, size: int,
               rng: np.random.Generator) -> pd.DataFrame:  # fmt: skip
    """Move whole random lesions (about ``size`` images) out of the labeled set into an unlabeled pool folder."""
    per_lesion = metadata.groupby("lesion_id", sort=False).size()
    order = rng.permutation(per_lesion.index.to_numpy())
    chosen = set(order[np.cumsum(per_lesion[order].to_numpy()) <= size])
    moved = metadata[metadata["lesion_id"].isin(chosen)]
    flipped = set(planted.loc[planted["kind"] == "flipped", "image_id"])
    (pool_dir / "images").mkdir(parents=True, exist_ok=True)
    for image_id in moved["image_id"]:
        source = next(out.glob(f"HAM10000_images_part_*/{image_id}.jpg"))
        os.replace(source, pool_dir / "images" / f"{image_id}.jpg")
    truth = [("nv" if dx == "mel" else "mel") if i in flipped else dx for i, dx in zip(moved["image_id"], moved["dx"],
             strict=True)]  # fmt: skip
    write_csv(pool_dir / "pool.csv", pd.DataFrame({"path": [f"images/{i}.jpg" for i in moved["image_id"]],
                                                   "id": moved["image_id"].to_numpy(),
                                                   "group": moved["lesion_id"].to_numpy(), "dx": truth}))  # fmt: skip
    return metadata[~metadata["lesion_id"].isin(chosen)].reset_index(drop=True)


def _plan_lesions(rng: np.random.Generator, n: int, positive_frac: float, flip_frac: float) -> list[dict]:
    """Choose lesions (class, latent m, image count) adding up to ``n`` images."""
    counts: list[int] = []
    while sum(counts) < n:
        counts.append(int(min(rng.choice([1, 1, 1, 2, 2, 3, 4]), n - sum(counts))))
    # Melanoma lesions: a random subset whose images add up to the positive fraction.
    is_mel = np.zeros(len(counts), dtype=bool)
    target, taken = round(n * positive_frac), 0
    for i in rng.permutation(len(counts)):
        if taken + counts[i] <= target:
            is_mel[i] = True
            taken += counts[i]
    lesions = []
    for i, n_images in enumerate(counts):
        m = float(np.clip(rng.normal(0.74 if is_mel[i] else 0.26, 0.14), 0.0, 1.0))
        pink = bool(rng.random() < (AMELANOTIC_FRAC if is_mel[i] else PINK_NEVUS_FRAC))
        amelanotic = bool(is_mel[i] and pink)
        lesions.append(
            {
                "lesion_id": f"HAM_{i:07d}",
                "dx": "mel" if is_mel[i] else "nv",
                "m": m,
                "pink": pink,
                "n_images": n_images,
                "kind": "hard" if amelanotic or abs(m - 0.5) < HARD_BAND else "",
                "detail": "amelanotic" if amelanotic else ("boundary" if abs(m - 0.5) < HARD_BAND else ""),
                "dx_type": str(rng.choice(["histo", *NOT_HISTO])),
                "age": float(rng.integers(4, 18) * 5),
                "sex": str(rng.choice(["male", "female"])),
                "localization": str(rng.choice(SITES)),
            }
        )
    # Flip the labels of clear-cut lesions, half the image budget from each class.
    budget = max(2, round(flip_frac * n))
    clear = [i for i in rng.permutation(len(lesions)) if abs(lesions[i]["m"] - 0.5) >= FLIP_MIN_DISTANCE]
    for dx, share in (("mel", budget // 2), ("nv", budget - budget // 2)):
        flipped = 0
        for i in clear:
            if flipped >= share:
                break
            if lesions[i]["dx"] == dx and lesions[i]["kind"] == "":
                lesions[i]["dx"] = "nv" if dx == "mel" else "mel"
                lesions[i]["kind"] = "flipped"
                lesions[i]["detail"] = f"drawn as {dx}"
                # a histopathology-confirmed diagnosis is not a label error (HAM10000's dx_type=histo): a
                # flipped lesion's came from the other ways; deterministic, so the draws above are unchanged
                if lesions[i]["dx_type"] == "histo":
                    lesions[i]["dx_type"] = NOT_HISTO[i % len(NOT_HISTO)]
                flipped += lesions[i]["n_images"]
    return lesions


class _Grid:
    def __init__(self, size: int):
        self.size = size
        ax = (np.arange(size) + 0.5) / size * 2 - 1
        self.y, self.x = np.meshgrid(ax, ax, indexing="ij")


class _LesionShape:
    """The fixed look of one lesion; each render is a slightly different view."""

    def __init__(self, rng: np.random.Generator, m: float, pink: bool = False):
        self.m = m
        self.radius = rng.uniform(0.38, 0.6)
        n_harm = 6
        irregular = 0.03 + 0.30 * m**1.5
        self.harm_amp = irregular * rng.uniform(0.3, 1.0, n_harm) / np.arange(1, n_harm + 1) ** 0.6
        self.harm_phase = rng.uniform(0, 2 * np.pi, n_harm)
        self.asym = 0.3 * m * rng.uniform(0.5, 1.0)  # squash one side
        self.asym_dir = rng.uniform(0, 2 * np.pi)
        self.blur = 0.03 + 0.12 * m
        self.skin = np.array([0.93, 0.76, 0.66]) * rng.uniform(0.85, 1.05) + rng.normal(0, 0.02, 3)
        self.base = _BROWNS[rng.integers(len(_BROWNS))] * rng.uniform(0.85, 1.1)
        palette = _MALIGNANT
        if pink:  # amelanotic melanoma, or a pink (dermal) nevus when m is low
            self.base = _PINK * rng.uniform(0.92, 1.05)
            palette = _VASCULAR
        # Melanoma-like blotches: count and intensity rise with m.
        n_blotch = int(rng.poisson(4.5 * m**2))
        self.blotches = [
            (
                palette[rng.integers(len(palette))],
                rng.uniform(-0.45, 0.45, 2),
                rng.uniform(0.12, 0.3),
                rng.uniform(0.5, 0.95),
            )
            for _ in range(n_blotch)
        ]
        self.texture_seed = int(rng.integers(2**31))

    def render(self, rng: np.random.Generator, grid: _Grid) -> np.ndarray:
        """Draw one view as a ``(size, size, 3)`` uint8 array."""
        angle = rng.uniform(0, 2 * np.pi)
        shift = rng.normal(0, 0.06, 2)
        zoom = rng.uniform(0.9, 1.1)
        x = (grid.x - shift[0]) / zoom
        y = (grid.y - shift[1]) / zoom
        r = np.hypot(x, y)
        theta = np.arctan2(y, x) + angle
        k = np.arange(1, len(self.harm_amp) + 1)[:, None, None]
        wobble = (self.harm_amp[:, None, None] * np.sin(k * theta + self.harm_phase[:, None, None])).sum(0)
        squash = 1 - self.asym * np.clip(np.cos(theta - self.asym_dir), 0, None)
        edge = self.radius * squash * (1 + wobble)
        inside = 1 / (1 + np.exp((r - edge) / self.blur * 3))  # soft mask, blurrier when malignant
        pigment = np.broadcast_to(self.base, (*r.shape, 3)).copy()
        # Darker centre, like a real naevus network.
        pigment *= (0.85 + 0.25 * np.clip(r / np.maximum(edge, 1e-3), 0, 1))[..., None]
        for colour, centre, spread, strength in self.blotches:
            cx, cy = _rotate(centre, -angle)
            d2 = (x - cx) ** 2 + (y - cy) ** 2
            weight = strength * np.exp(-d2 / (2 * spread**2))[..., None]
            pigment = pigment * (1 - weight) + colour * weight
        texture = np.random.default_rng(self.texture_seed).normal(0, 0.035, (*r.shape, 3))
        lighting = rng.uniform(0.9, 1.08)
        image = (self.skin * (1 - inside[..., None]) + pigment * inside[..., None] + texture) * lighting
        image += rng.normal(0, 0.015, image.shape)
        return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def _rotate(point: np.ndarray, angle: float) -> tuple[float, float]:
    c, s = np.cos(angle), np.sin(angle)
    return float(c * point[0] - s * point[1]), float(s * point[0] + c * point[1])


def planted_recovery(
    planted: pd.DataFrame,
    ids,
    labels,
    prob_pos,
    threshold: float,
    mined: pd.DataFrame,
    config: MiningConfig | None = None,
    signals: Mapping[str, np.ndarray] | None = None,
    *,
    cost_fn: float = COST_FN,
    cost_fp: float = COST_FP,
) -> dict[str, float]:
    """How one mining step treated a demo set's planted cases.

    Parameters
    ----------
    planted : the demo's ``planted.csv`` (``image_id, kind, detail``).
    ids, labels, prob_pos : (N,) the mined split's sample ids, 0/1 labels and P(positive).
    threshold : the decision threshold the step mined at.
    mined : the step's ``mined.csv`` table (``id, role, ...``).
    config : the :class:`hardmine.core.mining.MiningConfig` it ran with (default options if None).
    signals : the score columns the hardness signal reads (:class:`hardmine.core.scores.Signals` of the
        step's ``scores.csv``), e.g. ``dynamics`` or ``forgetting``.
    cost_fn, cost_fp : the costs it ranked missed positives by (the run's threshold costs).

    Returns
    -------
    ``hard_recall`` (share of planted hard images among seeds + neighbours), ``mined_share``,
    ``hard_lift`` (their ratio: how far above the base rate), ``flips`` (all flipped labels of
    the split), ``flips_quarantined`` and ``flips_upweighted`` (made a seed or a neighbour),
    both over all flips, ``flips_seed_worthy`` (flips :func:`hardmine.core.mining.select` would
    seed without triage), ``quarantined`` and ``quarantine_precision`` (share of the
    quarantined that are planted flips).
    """
    from hardmine.core.mining import MiningConfig, select

    config = config or MiningConfig()
    ids = pd.Series(np.asarray(ids).astype(str))
    hard = ids.isin(planted.loc[planted["kind"] == "hard", "image_id"]).to_numpy()
    flipped = ids.isin(planted.loc[planted["kind"] == "flipped", "image_id"]).to_numpy()
    roles = ids.map(dict(zip(mined["id"].astype(str), mined["role"], strict=True))).fillna("").to_numpy()
    is_mined = np.isin(roles, ("seed", "neighbour"))
    quarantined = roles == "quarantined"
    would_seed = np.zeros(len(ids), dtype=bool)
    would_seed[select(labels, prob_pos, threshold=threshold, scores=config.hardness, band=config.band,
                      max_frac=config.max_frac, cost_fn=cost_fn, cost_fp=cost_fp,
                      signals=signals).index] = True  # fmt: skip
    worthy = would_seed & flipped
    return {
        "hard_recall": float(is_mined[hard].mean()),
        "mined_share": float(is_mined.mean()),
        "hard_lift": float(is_mined[hard].mean() / max(is_mined.mean(), 1e-12)),
        "flips": int(flipped.sum()),
        "flips_seed_worthy": int(worthy.sum()),
        "flips_quarantined": int((quarantined & flipped).sum()),
        "flips_upweighted": int((is_mined & flipped).sum()),
        "quarantined": int(quarantined.sum()),
        "quarantine_precision": float(flipped[quarantined].mean()) if quarantined.any() else float("nan"),
    }
