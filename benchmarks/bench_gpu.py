"""hardmine's training and scoring against the hardware's own ceilings; the main job's wall time.

One table, measured in one process on data made here:

1. **model ceiling**: bare training steps and forward passes of the model on batches already on
   the device (channels-last on CUDA, the chosen precision), img/s;
2. **loader ceiling**: the same dataset, augmentation and loader settings as hardmine's, no model,
   batches moved to the device, img/s;
3. **bare loop**: plain PyTorch, that loader feeding the model (what a user's own loop gets);
4. **hardmine**: ``fit`` img/s (training epochs and their validation passes) and scoring img/s
   (``score_dataset`` over the training split), each as a ratio to the lower ceiling and to the
   bare loop;
5. **main job**: ``hardmine round --n 3`` (``run_rounds``, the CLI's code path) wall time per step;
6. **GPU utilisation** sampled with ``nvidia-smi`` during ``fit`` (n/a without one);
7. **an active-learning step** (full mode, or ``--active-step``): on 5,000 training labels, the code path of
   ``round --pool --oracle --n 1 --update finetune`` after round 0: the query of a 10,000-image pool by round
   0's model, the oracle's answers added, and the step fine-tuned on every label (a quarter of round 0's
   epochs) with its scoring, mining and report; the target on a GPU is under 3 minutes.

Full mode (a GPU machine, about 8 minutes on an H100/H200): ResNet-50 at 224 px, a demo set of
HAM10000's mel+nv size (7,818 images), ``round --n 3`` with 20 epochs::

    python benchmarks/bench_gpu.py --out /tmp/bench-gpu

Small mode (anywhere, about a minute on 2 CPU cores; a test runs it): the tiny CNN at 32 px on
1,200 images, ``round --n 1`` with 2 epochs::

    python benchmarks/bench_gpu.py --small --out /tmp/bench-small
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from hardmine.data.synth import generate_demo
from hardmine.engine.inference import (
    autocast_dtype,
    default_workers,
    forward,
    make_loader,
    resolve_device,
    to_device,
)
from hardmine.engine.models import build_model
from hardmine.engine.runtime import Engine
from hardmine.engine.train import Precision, fit
from hardmine.record.config import DataConfig, RoundsConfig, RunConfig, TrainConfig
from hardmine.run.opened import Run
from hardmine.run.rounds import run_rounds

FULL = {"model": "resnet50", "size": 224, "images": 7818, "batch": 128, "epochs": 20, "bench_epochs": 2,
        "rounds": 3, "ceiling_steps": 30}  # fmt: skip
SMALL = {"model": "tiny", "size": 32, "images": 1200, "batch": 64, "epochs": 2, "bench_epochs": 2, "rounds": 1,
         "ceiling_steps": 20}  # fmt: skip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_ceiling(cfg: TrainConfig, device, steps: int) -> tuple[float, float]:
    """Training and forward img/s of the bare model on one batch already on the device."""
    model = build_model(cfg.model, "none", seed=0).to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    precision = Precision(cfg.precision, device)  # backward and step, through a GradScaler for fp16
    dtype = precision.dtype
    x = to_device(torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size), device)
    y = torch.randint(0, 2, (cfg.batch_size,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step():
        logits, _ = forward(model, x, device, dtype)
        optimizer.zero_grad(set_to_none=True)
        precision.step(torch.nn.functional.cross_entropy(logits.float(), y), optimizer)

    rates = []
    model.train()
    for step in (train_step, lambda: forward(model, x, device, dtype)):
        with torch.set_grad_enabled(step is train_step):
            for _ in range(3):  # warm-up: cuDNN autotuning, allocator
                step()
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync(device)
        rates.append(steps * cfg.batch_size / (time.perf_counter() - start))
        model.eval()
    return rates[0], rates[1]


def loader_ceiling(engine: Engine, table, device, epochs: int, train: bool = True) -> float:
    """img/s of hardmine's dataset and loader settings with no model (batches to the device): the training
    loader (augmented, shuffled) or, without ``train``, the scoring one."""
    cfg = engine.config
    shuffle = torch.utils.data.RandomSampler(range(len(table))) if train else None
    loader = make_loader(engine.dataset(table, train=train), cfg.batch_size * (1 if train else 2), device,
                         cfg.num_workers, shuffle, cfg.image_size, persistent=True)  # fmt: skip
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images, _, _ in loader:
            to_device(images, device)
            count += len(images)
    sync(device)
    return count / (time.perf_counter() - start)


def bare_loop(engine: Engine, train, val, device, epochs: int) -> tuple[float, float]:
    """Plain PyTorch over the same loaders: training epochs each followed by a validation pass, then a
    forward pass over the training split; (fit-like img/s, forward img/s)."""
    cfg = engine.config
    model = build_model(cfg.model, "none", seed=0).to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    precision = Precision(cfg.precision, device)
    dtype = precision.dtype
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    shuffle = torch.utils.data.RandomSampler(range(len(train)))
    train_loader = make_loader(engine.dataset(train, train=True), cfg.batch_size, device, cfg.num_workers, shuffle,
                               cfg.image_size, persistent=True)  # fmt: skip
    val_loader = make_loader(engine.dataset(val), cfg.batch_size * 2, device, cfg.num_workers,
                             image_size=cfg.image_size, persistent=True)  # fmt: skip
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for images, labels, _ in train_loader:
            logits, _ = forward(model, to_device(images, device), device, dtype)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels.to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            precision.step(loss, optimizer)
        model.eval()
        with torch.no_grad():
            for images, _, _ in val_loader:
                forward(model, to_device(images, device), device, dtype)[0].float().cpu()
    sync(device)
    fit_rate = epochs * (len(train) + len(val)) / (time.perf_counter() - start)
    score_loader = make_loader(engine.dataset(train), cfg.batch_size * 2, device, cfg.num_workers,
                               image_size=cfg.image_size)  # fmt: skip
    start = time.perf_counter()
    with torch.no_grad():
        for images, _, _ in score_loader:
            logits, emb = forward(model, to_device(images, device), device, dtype)
            logits.float().cpu(), emb.float().cpu()
    sync(device)
    return fit_rate, len(train) / (time.perf_counter() - start)


class GpuUtilisation:
    """Mean GPU utilisation (%) sampled by ``nvidia-smi`` every half second while in a ``with`` block."""

    def __init__(self):
        self.samples: list[float] = []
        self.available = shutil.which("nvidia-smi") is not None and torch.cuda.is_available()

    def __enter__(self):
        self.stop = threading.Event()
        if self.available:
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        return self

    def _poll(self):
        while not self.stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                  "-i", str(torch.cuda.current_device())], capture_output=True, text=True)  # fmt: skip
            try:
                self.samples.append(float(out.stdout.strip().splitlines()[0]))
            except (ValueError, IndexError):
                pass

    def __exit__(self, *exc):
        self.stop.set()
        if self.available:
            self.thread.join()

    def text(self) -> str:
        return f"{np.mean(self.samples):.0f}% (mean of {len(self.samples)} samples)" if self.samples else "n/a"


def main_job(data: Path, out: Path, config: RunConfig, rounds: int) -> tuple[float, dict[str, float]]:
    """``hardmine round --n rounds`` in this process (the CLI's code path): total seconds and per step."""
    steps: dict[str, float] = {}
    last = [time.perf_counter(), "create run (verify images)"]

    def note(event: str, info: dict) -> None:
        if event == "step":
            now = time.perf_counter()
            steps[last[1]] = steps.get(last[1], 0.0) + now - last[0]
            last[:] = [now, f"round {info['round']}: {info['step']}"]

    start = time.perf_counter()
    run = Run.create(out, replace(config, data=replace(config.data, data=str(data))), overwrite=True)
    note("step", {"round": 0, "step": "train"})
    run_rounds(run, rounds, callback=note, finish_outputs=False)
    note("step", {"round": "end", "step": ""})
    return time.perf_counter() - start, steps


def active_step(data: Path, out: Path, config: RunConfig, budget: int) -> tuple[int, float]:
    """Round 0 on ``data`` (64% of it in the training split), then one active-learning step through
    :func:`hardmine.run.active.active_rounds` with the demo pool as the oracle: (labels the step saw, its
    seconds: query, label, training and report)."""
    from hardmine.data.synth import pool_folder
    from hardmine.run.active import active_rounds

    split = replace(config.data, data=str(data), split=(0.64, 0.18, 0.18))
    run = Run.create(out, replace(config, data=split, rounds=RoundsConfig(update="finetune")), overwrite=True)
    pool = pool_folder(data) / "pool.csv"
    active_rounds(run, 0, pool, budget, oracle="dx")  # round 0 alone
    start = time.perf_counter()
    active_rounds(run, 1, pool, budget, oracle="dx")
    return int((run.split == "train").sum()), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="the tiny model at 32 px: runs anywhere in a minute")
    parser.add_argument("--out", type=Path, default=Path("/tmp/hardmine-bench-gpu"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: hardmine's choice)")
    parser.add_argument("--images", type=int, default=None, help="demo set size (default: 7,818; small: 1,200)")
    parser.add_argument("--skip-main-job", action="store_true")
    parser.add_argument("--active-step", action=argparse.BooleanOptionalAction, default=None,
                        help="time an active-learning step (default: in full mode only)")
    args = parser.parse_args()
    sizes = dict(SMALL if args.small else FULL)
    if args.images is not None:
        sizes["images"] = args.images
    device = resolve_device(args.device)
    data = args.out / "data"
    made = time.perf_counter()
    active = not args.small if args.active_step is None else args.active_step
    if not (data / "HAM10000_metadata.csv").exists():
        pool = (10000 if not args.small else 600) if active else 0
        generate_demo(data, n=sizes["images"], positive_frac=0.142, size=sizes["size"], seed=0, pool=pool)
    made = time.perf_counter() - made
    train_cfg = TrainConfig(model=sizes["model"], image_size=sizes["size"], batch_size=sizes["batch"],
                            epochs=sizes["bench_epochs"], device=str(device), precision=args.precision,
                            num_workers=args.workers, seed=0)  # fmt: skip
    config = RunConfig(DataConfig(data=str(data)), train_cfg, rounds=RoundsConfig(strategy="head"))
    run = Run.create(args.out / "split", config, overwrite=True)
    train, val = run.part("train"), run.part("val")
    engine = Engine(train_cfg)
    rows: list[tuple[str, str]] = []
    ceiling_train, ceiling_forward = model_ceiling(train_cfg, device, sizes["ceiling_steps"])
    loader = loader_ceiling(engine, train, device, 1)
    loader = loader_ceiling(engine, train, device, 1)  # the second pass: decoded images are in RAM now
    score_loader = loader_ceiling(engine, train, device, 1, train=False)
    lower = min(ceiling_train, loader)
    import sklearn.metrics  # noqa: F401 - loaded once per process (1 s); fit's first validation would pay it
    bare_fit, bare_forward = bare_loop(engine, train, val, device, sizes["bench_epochs"])
    with GpuUtilisation() as utilisation:
        start = time.perf_counter()
        fit(engine.build_model(), engine.dataset(train, train=True), engine.dataset(val), train_cfg,
            args.out / "fit", resume=False)  # fmt: skip
        fit_rate = sizes["bench_epochs"] * (len(train) + len(val)) / (time.perf_counter() - start)
    model = engine.load_model(args.out / "fit" / "model.pt")
    start = time.perf_counter()
    engine.score(model, train)
    sync(device)
    score_rate = len(train) / (time.perf_counter() - start)
    workers = default_workers(device, sizes["size"]) if args.workers is None else args.workers
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    precision = autocast_dtype(args.precision, device)
    rows += [
        ("device", f"{name}, precision {str(precision).removeprefix('torch.') if precision else 'fp32'}"),
        ("setting", f"{sizes['model']} at {sizes['size']} px, batch {sizes['batch']}, {len(train)} train / "
                    f"{len(val)} val images, loader workers {workers}"),
        ("demo data made in", f"{made:.0f} s"),
        ("model ceiling: train steps", f"{ceiling_train:.0f} img/s"),
        ("model ceiling: forward", f"{ceiling_forward:.0f} img/s"),
        ("loader ceiling: training (no model)", f"{loader:.0f} img/s"),
        ("loader ceiling: scoring (no model)", f"{score_loader:.0f} img/s"),
        ("bare PyTorch loop: fit-like", f"{bare_fit:.0f} img/s"),
        ("bare PyTorch loop: forward", f"{bare_forward:.0f} img/s"),
        ("hardmine fit", f"{fit_rate:.0f} img/s = {fit_rate / lower:.2f}x the lower ceiling, "
                         f"{fit_rate / bare_fit:.2f}x the bare loop"),
        ("hardmine scoring", f"{score_rate:.0f} img/s = {score_rate / min(ceiling_forward, score_loader):.2f}x the "
                             f"lower ceiling, {score_rate / bare_forward:.2f}x the bare forward"),
        ("GPU utilisation during fit", utilisation.text()),
    ]  # fmt: skip
    if not args.skip_main_job:
        job_cfg = replace(config, train=replace(train_cfg, epochs=sizes["epochs"]))
        total, steps = main_job(data, args.out / "run", job_cfg, sizes["rounds"])
        rows.append((f"main job: round --n {sizes['rounds']}, {sizes['epochs']} epochs", f"{total:.0f} s"))
        rows += [(f"  {step}", f"{seconds:.1f} s") for step, seconds in steps.items()]
    if active:
        job_cfg = replace(config, train=replace(train_cfg, epochs=sizes["epochs"]))
        budget = 50 if args.small else 200
        labels, seconds = active_step(data, args.out / "active", job_cfg, budget)
        rows.append((f"active-learning step: query {budget}, label, fine-tune on {labels} labels, report",
                     f"{seconds:.0f} s"))  # fmt: skip
    width = max(len(k) for k, _ in rows)
    print(f"| {'what':<{width}} | figure |\n| {'-' * width} | --- |")
    for key, value in rows:
        print(f"| {key:<{width}} | {value} |")
    (args.out / "figures.json").write_text(json.dumps(dict(rows), indent=2))


if __name__ == "__main__":
    sys.exit(main())
