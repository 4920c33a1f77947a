
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hardmine.core.errors import ModelError
from hardmine.engine.losses import class_weights, per_sample_loss, weighted_mean
from hardmine.engine.models import build_model, load_weights


def test_class_weights_by_hand():
    w = class_weights([90, 10], "inverse")
    # inverse frequency, scaled so that sum(n_c * w_c) = N
    raw = np.array([1 / 90, 1 / 10])
    assert np.allclose(w, raw * 100 / (90 * raw[0] + 10 * raw[1]))
    assert w[1] / w[0] == pytest.approx(9.0)
    beta = 0.99
    w = class_weights([90, 10], "effective", beta=beta)
    eff = (1 - beta) / (1 - beta ** np.array([90, 10]))
    assert w[1] / w[0] == pytest.approx(eff[1] / eff[0])
    with pytest.raises(ValueError, match="counts are \\[5.0, 0.0\\]"):
        class_weights([5, 0])


def test_losses_by_hand():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5]])
    y = torch.tensor([0, 1, 1])
    p = torch.softmax(logits, 1)
    p_true = p[torch.arange(3), y]
    ce = -torch.log(p_true)
    assert torch.allclose(per_sample_loss(logits, y, "ce"), ce)
    cw = torch.tensor([0.5, 3.0])
    weighted = per_sample_loss(logits, y, "weighted-ce", cw)
    assert torch.allclose(weighted, cw[y] * ce)
    assert torch.allclose(weighted, F.cross_entropy(logits, y, weight=cw, reduction="none"))
    focal = per_sample_loss(logits, y, "focal", cw, gamma=2.0)
    assert torch.allclose(focal, cw[y] * (1 - p_true) ** 2 * ce)
    assert torch.allclose(per_sample_loss(logits, y, "focal", None, gamma=0.0), ce)
    sw = torch.tensor([1.0, 2.0, 0.0])
    assert torch.allclose(weighted_mean(ce, sw), (ce * sw).sum() / 3)


def test_tiny_model_one_forward_gives_logits_and_embedding():
    model = build_model("tiny").eval()
    x = torch.randn(4, 3, 32, 32)
    logits, emb = model(x)
    assert logits.shape == (4, 2) and emb.shape == (4, model.embedding_dim)
    assert torch.allclose(model.head(emb), logits, atol=1e-6)


def test_torchvision_model_head_replaced():
    model = build_model("resnet18").eval()
    logits, emb = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 2) and emb.shape == (2, 512)
    assert torch.allclose(model.head(emb), logits, atol=1e-5)
    model = build_model("efficientnet_b0").eval()
    logits, emb = model(torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 2) and emb.shape == (1, 1280)


def test_unknown_model_name():
    with pytest.raises(ModelError, match="--model 'resnet9000' is not known"):
        build_model("resnet9000")


def test_checkpoint_roundtrip_weights_only(tmp_path):
    model = build_model("tiny")
    torch.save(model.state_dict(), tmp_path / "m.pt")
    other = build_model("tiny", weights=str(tmp_path / "m.pt"))
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    # the torchvision model's own state dict (keys without the "backbone." prefix) loads too, head included
    torch.save(model.backbone.state_dict(), tmp_path / "b.pt")
    fresh = build_model("tiny", seed=123)
    assert not torch.equal(fresh.head.weight, model.head.weight)
    load_weights(fresh, tmp_path / "b.pt")
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_wrong_shape_file_fails_clearly_and_another_head_is_a_starting_point(tmp_path):
    three = build_model("tiny", num_classes=3, seed=5).state_dict()
    torch.save(three, tmp_path / "three.pt")
    # a classifier of 3 classes is a starting point: everything but its head loads, the 2-class head is new
    started = build_model("tiny", weights=str(tmp_path / "three.pt")).state_dict()
    assert torch.equal(started["backbone.features.0.0.weight"], three["backbone.features.0.0.weight"])
    assert started["backbone.fc.weight"].shape == (2, 64)
    three["backbone.features.0.0.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(three, tmp_path / "narrow.pt")
    with pytest.raises(ModelError, match="does not fit model tiny: .*shape mismatch.*features.0.0.weight \\(8, 3"):
        build_model("tiny", weights=str(tmp_path / "narrow.pt"))
    with pytest.raises(ModelError, match="weights file .*nope.pt not found"):
        build_model("tiny", weights=str(tmp_path / "nope.pt"))


def test_imagenet_offline_fails_with_clear_message(no_network):
    with pytest.raises(ModelError, match="no ImageNet weights for resnet18 offline.*resnet18-.*pth.*--weights none"):
        build_model("resnet18", weights="imagenet")


def test_timm_backbones_by_name():
    timm = pytest.importorskip("timm")
    model = build_model("timm:test_efficientnet", "none", seed=0)
    logits, embedding = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 2) and embedding.shape == (2, model.embedding_dim)
    assert timm.is_model("test_efficientnet")
    with pytest.raises(ModelError, match="timm has no model 'no_such_net'"):
        build_model("timm:no_such_net")
    from hardmine.record.config import TrainConfig

    TrainConfig(model="timm:test_efficientnet", image_size=32).validate()
