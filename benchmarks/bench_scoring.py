"""Throughput of the scoring pass against a bare ``model(x)`` loop.

Both loops see the same already-decoded batches (decoding is not measured):
the bare loop only calls the model; the scoring pass is
``hardmine.engine.scoring.score_dataset`` (one forward for logits and embeddings,
the score table, normalised embeddings). Prints images/s of both and their
ratio (target >= 0.9) at two image sizes: the tiny model on CPU, and
resnet50 where a GPU is present.

    python benchmarks/bench_scoring.py [--n 2048] [--sizes 64 128]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hardmine.engine.models import build_model
from hardmine.engine.scoring import score_dataset


class DecodedImages:
    """Pre-decoded random images: (image, label, index) like hardmine's dataset."""

    def __init__(self, n: int, size: int):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, size, size, generator=generator)
        self.labels = (torch.rand(n, generator=generator) < 0.1).long().numpy()
        self.image_size = size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i]), i


def bench(model_name: str, device: str, n: int, size: int, batch: int, repeats: int = 3) -> dict:
    model = build_model(model_name, seed=0).eval().to(device)
    data = DecodedImages(n, size)
    loader = torch.utils.data.DataLoader(data, batch_size=batch)
    ids = np.arange(n)

    def bare() -> None:
        with torch.no_grad():
            for x, _, _ in loader:
                model(x.to(device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def scoring() -> None:
        score_dataset(model, data, ids, device=device, batch_size=batch, num_workers=0)

    bare()  # warm-up
    times = {"bare": [], "scoring": []}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits both alike
        for name, fn in (("bare", bare), ("scoring", scoring)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    bare_s, scoring_s = min(times["bare"]), min(times["scoring"])
    return {"model": model_name, "device": device, "size": size, "bare_img_s": n / bare_s,
            "scoring_img_s": n / scoring_s, "ratio": bare_s / scoring_s}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    rows = [bench("tiny", "cpu", args.n, size, args.batch) for size in args.sizes]
    if torch.cuda.is_available():
        rows += [bench("resnet50", "cuda", args.n, size, args.batch) for size in (224, 299)]
    print(f"{'model':>9} {'device':>6} {'size':>5} {'bare img/s':>11} {'scoring img/s':>14} {'ratio':>6}")
    for r in rows:
        print(f"{r['model']:>9} {r['device']:>6} {r['size']:>5} {r['bare_img_s']:>11.0f} {r['scoring_img_s']:>14.0f} "
              f"{r['ratio']:>6.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
