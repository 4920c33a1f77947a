"""A real-image benchmark in the HAM10000 layout, built from scikit-learn's bundled digits.

The 1,797 handwritten digits (8x8 scans shipped with scikit-learn, nothing is
downloaded) become "lesions": digit 9 is the positive class (``dx = mel``,
about 10%), every other digit the negative one (``dx = nv``); the 6s are the
negatives that a 180-degree rotation turns into 9s, so dermoscopy augmentation
is wrong here (use ``--augment light``). Each source digit is one lesion with
1-3 images, each image a separate "acquisition": upscaled to 32 px, shifted,
tinted and noised; lesions come from one of two scanners, ``B`` with lower
contrast and more noise (a subgroup column, ``localization``). A few lesions
get a flipped label (``planted.csv``). Source digits are split once into a
training pool and a disjoint external set (more scanner ``B``), so the external
set holds no image of a digit the models trained on.

Usage::

    python benchmarks/make_digits.py OUT [--seed 0] [--flip-frac 0.03]
    hardmine compare --data OUT/pool --external OUT/external --augment light --subgroup localization ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits

POSITIVE_DIGIT = 9
SIZE = 32


def _acquire(digit: np.ndarray, rng: np.random.Generator, scanner: str) -> Image.Image:
    """One noisy RGB acquisition of an 8x8 digit (values 0-16)."""
    small = Image.fromarray((digit / 16 * 255).astype(np.uint8))
    ink = np.asarray(small.resize((SIZE - 6, SIZE - 6), Image.BILINEAR), float) / 255
    canvas = np.zeros((SIZE, SIZE))
    dx, dy = rng.integers(0, 7, 2)
    canvas[dy : dy + SIZE - 6, dx : dx + SIZE - 6] = ink
    contrast, noise = (0.9, 0.06) if scanner == "A" else (0.55, 0.14)
    paper = np.array([0.93, 0.88, 0.80]) + rng.normal(0, 0.03, 3)
    colour = np.array([0.15, 0.12, 0.35]) + rng.normal(0, 0.05, 3)
    rgb = paper * (1 - contrast * canvas[..., None]) + colour * contrast * canvas[..., None]
    rgb += rng.normal(0, noise, rgb.shape)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def _write(out: Path, images: np.ndarray, targets: np.ndarray, rng: np.random.Generator, flip_frac: float,
           scanner_b: float, prefix: str) -> pd.DataFrame:  # fmt: skip
    rows, planted = [], []
    folder = out / "HAM10000_images_part_1"
    folder.mkdir(parents=True, exist_ok=True)
    flipped = rng.random(len(images)) < flip_frac
    for i, (digit, target) in enumerate(zip(images, targets, strict=True)):
        lesion = f"HAM_{prefix}{i:05d}"
        dx = "mel" if (target == POSITIVE_DIGIT) != flipped[i] else "nv"
        scanner = "B" if rng.random() < scanner_b else "A"
        dx_type = "histo" if rng.random() < 0.5 else "follow_up"
        for _ in range(int(rng.choice([1, 1, 2, 3]))):
            image_id = f"ISIC_{prefix}{len(rows):06d}"
            _acquire(digit, rng, scanner).save(folder / f"{image_id}.jpg", quality=92)
            rows.append({"lesion_id": lesion, "image_id": image_id, "dx": dx, "dx_type": dx_type, "age": 50.0,
                         "sex": "unknown", "localization": f"scanner-{scanner}", "digit": int(target)})  # fmt: skip
            if flipped[i]:
                planted.append({"image_id": image_id, "kind": "flipped", "detail": f"digit {target} labelled {dx}"})
    meta = pd.DataFrame(rows)
    meta.to_csv(out / "HAM10000_metadata.csv", index=False)
    pd.DataFrame(planted, columns=["image_id", "kind", "detail"]).to_csv(out / "planted.csv", index=False)
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flip-frac", type=float, default=0.03)
    parser.add_argument("--external-frac", type=float, default=0.25)
    args = parser.parse_args()
    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(digits.target))
    cut = int(len(order) * (1 - args.external_frac))
    pool = _write(args.out / "pool", digits.images[order[:cut]], digits.target[order[:cut]], rng, args.flip_frac,
                  0.3, "P")  # fmt: skip
    ext = _write(args.out / "external", digits.images[order[cut:]], digits.target[order[cut:]], rng, 0.0, 0.6, "E")
    for name, meta in (("pool", pool), ("external", ext)):
        share_b = (meta["localization"] == "scanner-B").mean()
        print(f"{name}: {len(meta)} images, {meta['lesion_id'].nunique()} lesions, "
              f"{(meta['dx'] == 'mel').mean():.3f} positive, scanner B {share_b:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
