"""An ordinary PyTorch training loop with hardmine added in a few lines.

Everything here is the user's own code (dataset, model, optimiser, loop) except
the lines marked ``# hardmine``. Run:

    python examples/plain_pytorch_loop.py --data demo/data --rounds 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hardmine import HardMiner  # hardmine


class LesionDataset(Dataset):
    """The user's dataset: HAM10000 metadata, melanoma (1) vs nevus (0)."""

    def __init__(self, root: Path, size: int = 32):
        meta = pd.read_csv(root / "HAM10000_metadata.csv")
        self.meta = meta[meta.dx.isin(["mel", "nv"])].reset_index(drop=True)
        files = {p.stem: p for p in root.rglob("*.jpg")}
        self.paths = [files[i] for i in self.meta.image_id]
        self.labels = (self.meta.dx == "mel").astype(int).to_numpy()
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image = Image.open(self.paths[i]).convert("RGB").resize((self.size, self.size))
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
        return x, int(self.labels[i]), i


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 2),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> HardMiner:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    dataset = LesionDataset(args.data, args.size)
    model = make_model()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)

    miner = HardMiner(dataset.labels, groups=dataset.meta.lesion_id, ids=dataset.meta.image_id)  # hardmine
    train_loader = DataLoader(dataset, batch_size=64, sampler=miner.sampler())  # hardmine: the sampler
    score_loader = DataLoader(dataset, batch_size=256)

    for round_ in range(args.rounds):
        for epoch in range(args.epochs):
            miner.sampler().set_epoch(round_ * args.epochs + epoch)  # hardmine
            model.train()
            for x, y, _ in train_loader:
                loss = nn.functional.cross_entropy(model(x), y)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        result = miner.score(model, score_loader)  # hardmine: mine; the sampler follows
        print(f"round {round_}: {result.stats['n_seeds']} seeds, {result.stats['n_neighbours']} neighbours, "
              f"{result.stats['n_quarantined']} quarantined, max weight {miner.weights.max():.2f}")  # fmt: skip
    return miner


if __name__ == "__main__":
    main()
