"""A fastai Learner with hardmine's callback: mine every epoch, draw the next by the curriculum.

Everything is ordinary fastai except the lines marked ``# hardmine``. Run:

    python examples/fastai_callback.py --data demo/data --epochs 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from fastai.vision.all import CategoryBlock, DataBlock, ImageBlock, Learner, Resize, accuracy, nn

from hardmine import HardMiner  # hardmine
from hardmine.integrations.fastai import HardMiningCallback  # hardmine


def main(argv: list[str] | None = None) -> HardMiningCallback:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args(argv)

    meta = pd.read_csv(args.data / "HAM10000_metadata.csv")
    meta = meta[meta.dx.isin(["mel", "nv"])].reset_index(drop=True)
    files = {p.stem: str(p) for p in args.data.rglob("*.jpg")}
    meta["path"] = meta.image_id.map(files)
    meta["is_valid"] = meta.lesion_id.astype("category").cat.codes % 5 == 0  # lesion-grouped validation split
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_x=lambda r: r.path, get_y=lambda r: r.dx,
                      splitter=lambda df: (np.flatnonzero(~df.is_valid), np.flatnonzero(df.is_valid)),
                      item_tfms=Resize(args.size))  # fmt: skip
    dls = block.dataloaders(meta, bs=32, num_workers=0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))  # fmt: skip

    train = dls.train.items  # hardmine: labels and lesions of the training items, in their order
    miner = HardMiner(train.dx.eq("mel").to_numpy(), groups=train.lesion_id.to_numpy())  # hardmine
    mining = HardMiningCallback(miner, positive="mel", every=1)  # hardmine
    learn = Learner(dls, model, metrics=accuracy, cbs=mining)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(args.epochs, 3e-3)
    for row in mining.history:
        print(f"epoch {row['epoch']}: {row['n_seeds']} seeds, {row['n_neighbours']} neighbours, "
              f"{row['n_quarantined']} quarantined")  # fmt: skip
    return mining


if __name__ == "__main__":
    main()
