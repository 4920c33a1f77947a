"""Training steps per second with 1 and with 2 torch threads, on an idle machine or beside one busy core.

What `configure_threads` (hardmine.engine.runtime) is chosen from: the cores other processes
leave free. Each (model, size) trains on a fixed batch of 64 for 4-second windows, 1 then 2
threads, twice; ``--busy`` first starts a process that keeps one core busy for the whole run.

    python benchmarks/bench_threads.py            # idle
    python benchmarks/bench_threads.py --busy     # one core taken by another process
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import torch

from hardmine.engine.models import build_model

CASES = (("tiny", 32), ("tiny", 64), ("resnet18", 64))


def _spin() -> None:
    while True:
        pass


def rate(name: str, size: int, threads: int, seconds: float = 4.0) -> float:
    """Training images per second of ``name`` at ``size`` px with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    model = build_model(name, "none", seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randn(64, 3, size, size), torch.randint(0, 2, (64,))

    def step() -> None:
        logits, _ = model(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(3):  # warm-up
        step()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * 64 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--busy", action="store_true", help="keep one core busy with another process")
    args = parser.parse_args()
    spinner = multiprocessing.Process(target=_spin, daemon=True) if args.busy else None
    if spinner:
        spinner.start()
    try:
        print("| model, size | 1 thread img/s | 2 threads img/s | 2 / 1 |\n| --- | --- | --- | --- |")
        for name, size in CASES:
            for _ in range(2):
                one, two = rate(name, size, 1), rate(name, size, 2)
                print(f"| {name}, {size} px | {one:.0f} | {two:.0f} | {two / one:.2f}x |", flush=True)
    finally:
        if spinner:
            spinner.terminate()


if __name__ == "__main__":
    main()
