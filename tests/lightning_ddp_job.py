"""Run by test_integrations: Lightning DDP on 2 CPU processes with the mining callback.

Each rank writes what it drew per epoch and the sampler's weights at each epoch start to OUT/rank<R>.json.
"""

import json
import os
import sys

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hardmine import HardMiner
from hardmine.integrations.lightning import HardMiningCallback


class Module(pl.LightningModule):
    def __init__(self, out: str):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
        self.out, self.drawn, self.weights = out, {}, {}

    def forward(self, x):
        return self.net(x)

    def on_train_epoch_start(self):
        self.weights[self.current_epoch] = self.trainer.train_dataloader.sampler.weights.tolist()

    def training_step(self, batch, batch_idx):
        xb, yb, ib = batch
        self.drawn.setdefault(self.current_epoch, []).extend(ib.tolist())
        return nn.functional.cross_entropy(self(xb), yb)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_end(self):
        with open(os.path.join(self.out, f"rank{self.global_rank}.json"), "w") as fh:
            json.dump({"drawn": self.drawn, "weights": self.weights, "world": self.trainer.world_size}, fh)


if __name__ == "__main__":
    torch.manual_seed(0)
    x = torch.randn(120, 6)
    y = (x[:, 0] > 0.8).long()
    miner = HardMiner(y.numpy(), k=5, seed=1)  # built before the process group exists, as users do
    mining = HardMiningCallback(miner, DataLoader(TensorDataset(x, y), batch_size=64), every_n_epochs=1)
    trainer = pl.Trainer(max_epochs=3, callbacks=[mining], accelerator="cpu", devices=2, strategy="ddp_spawn",
                         use_distributed_sampler=False, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(Module(sys.argv[1]), DataLoader(TensorDataset(x, y, torch.arange(120)), sampler=miner.sampler(),
                                                batch_size=32))  # fmt: skip
