"""A PyTorch Lightning module with hardmine's callback: mine every epoch, draw the next by the curriculum.

Everything is ordinary Lightning except the lines marked ``# hardmine``. Run:

    python examples/lightning_callback.py --data demo/data --epochs 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from hardmine import HardMiner  # hardmine
from hardmine.integrations.lightning import HardMiningCallback  # hardmine

sys.path.insert(0, str(Path(__file__).parent))
from plain_pytorch_loop import LesionDataset, make_model  # noqa: E402 - the user's dataset and model


class Classifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = make_model()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


def main(argv: list[str] | None = None) -> HardMiningCallback:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args(argv)
    pl.seed_everything(0, verbose=False)

    dataset = LesionDataset(args.data, args.size)
    miner = HardMiner(dataset.labels, groups=dataset.meta.lesion_id)  # hardmine
    train_loader = DataLoader(dataset, batch_size=64, sampler=miner.sampler())  # hardmine: the sampler
    mining = HardMiningCallback(miner, DataLoader(dataset, batch_size=256), every_n_epochs=1)  # hardmine
    trainer = pl.Trainer(max_epochs=args.epochs, callbacks=[mining], use_distributed_sampler=False,  # hardmine
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="auto")  # fmt: skip
    trainer.fit(Classifier(), train_loader)
    for row in mining.history:
        print(f"epoch {row['epoch']}: {row['n_seeds']} seeds, {row['n_neighbours']} neighbours, "
              f"{row['n_quarantined']} quarantined")  # fmt: skip
    return mining


if __name__ == "__main__":
    main()
