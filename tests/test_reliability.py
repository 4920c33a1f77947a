"""Bad input, damaged run folders, two writers, file modes: one clear line, nothing lost."""

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from hardmine.cli import app
from hardmine.core.io import write_json
from hardmine.record.lock import LOCK_FILE
from hardmine.record.manifest import Manifest

runner = CliRunner()
FAST = ["--model", "tiny", "--epochs", "2", "--image-size", "24", "--device", "cpu", "--workers", "0"]
ROUNDS_THAT_TRAIN = ["--strategy", "finetune"]  # a resume point and an equal-epochs reference for the damage cases


def _image(path: Path, colour=(120, 60, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)


def _assert_one_line_error(result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for word in expected:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def finished_run(demo_dir, tmp_path_factory) -> Path:
    """A completed run (round 0 and one mining round) that tests copy and damage."""
    out = tmp_path_factory.mktemp("finished") / "run"
    args = ["round", "--data", str(demo_dir), "--out", str(out), "--n", "1", *FAST, *ROUNDS_THAT_TRAIN]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


# --------------------------------------------------------------------------- bad input, one table
# Every bad option, data set and run-folder command of the adversarial run that must be refused: exit 2,
# one line naming the value or file, no traceback, and nothing changed anywhere (the run, the demo data and
# a sentinel tree beside them, by checksum). Damaged runs that a resume repairs are the DAMAGE table below.


@dataclass
class Setting:
    """Where a case is made: a scratch folder, the shared demo data (read-only), a finished run to copy, and
    patches for what root cannot make here (a folder it may not read)."""

    tmp: Path
    demo: Path
    finished: Callable[[], Path]
    patches: list[tuple[object, str, object]] = field(default_factory=list)

    def during_the_command(self, target: object, name: str, value: object) -> None:
        """Set ``target.name`` to ``value`` while the command runs (not while the test looks at the files)."""
        self.patches.append((target, name, value))

    def data(self) -> Path:
        """A private copy of the demo data."""
        shutil.copytree(self.demo, self.tmp / "data")
        return self.tmp / "data"

    def run(self) -> Path:
        """A private copy of the finished run (made on the demo data)."""
        if not (self.tmp / "run").exists():
            shutil.copytree(self.finished(), self.tmp / "run")
        return self.tmp / "run"


def _no_metadata(s: Setting) -> list[str]:
    data = s.data()
    (data / "HAM10000_metadata.csv").unlink()
    return ["check-data", str(data)]


def _same_stem(s: Setting) -> list[str]:
    data = s.data()
    first = next((data / "HAM10000_images_part_1").glob("*.jpg"))
    _image(data / "HAM10000_images_part_2" / first.name, colour=(1, 2, 3))  # another image under the same name
    return ["check-data", str(data)]


def _symlink_image_outside(s: Setting) -> list[str]:
    tmp, data = s.tmp, s.data()
    victim = next((data / "HAM10000_images_part_1").glob("*.jpg"))
    shutil.move(victim, tmp / "outside.jpg")
    victim.symlink_to(tmp / "outside.jpg")
    return ["check-data", str(data)]


def _symlink_class_outside(s: Setting) -> list[str]:
    tmp = s.tmp
    _image(tmp / "elsewhere" / "a.png")
    _image(tmp / "data" / "nv" / "b.png")
    (tmp / "data" / "mel").symlink_to(tmp / "elsewhere")
    return ["check-data", str(tmp / "data")]


def _lesion_in_both_classes(s: Setting) -> list[str]:
    tmp = s.tmp
    for name in ("a", "b", "c"):
        _image(tmp / "data" / f"{name}.png")
    frame = pd.DataFrame({"path": ["a.png", "b.png", "c.png"], "label": [1, 0, 0], "group": ["L1", "L1", "L2"]})
    frame.to_csv(tmp / "data" / "manifest.csv", index=False)
    return ["check-data", str(tmp / "data")]


def _one_class(s: Setting) -> list[str]:
    tmp = s.tmp
    _image(tmp / "data" / "nv" / "a.png")
    return ["check-data", str(tmp / "data")]


def _folders_on_a_file(s: Setting) -> list[str]:
    tmp = s.tmp
    (tmp / "m.csv").write_text("path,label\n")
    return ["check-data", str(tmp / "m.csv"), "--source", "folders"]


def _train(*extra: str):
    return lambda s: ["train", "--data", str(s.demo), "--out", str(s.tmp / "run"), *FAST, *extra]


def _round(*extra: str):
    return lambda s: ["round", "--data", str(s.demo), "--out", str(s.tmp / "run"), "--n", "1", *FAST,
                      *(a.format(tmp=s.tmp) for a in extra)]


def _out_is_file(s: Setting) -> list[str]:
    tmp, demo = s.tmp, s.demo
    (tmp / "run").write_text("not a folder")
    return ["round", "--data", str(demo), "--out", str(tmp / "run"), *FAST]


def _out_under_file(s: Setting) -> list[str]:
    tmp, demo = s.tmp, s.demo
    (tmp / "blocker").write_text("a file where a folder should be")
    return ["train", "--data", str(demo), "--out", str(tmp / "blocker" / "run"), *FAST]


def _metadata_column(name: str):
    def make(s: Setting) -> list[str]:
        data = s.data()
        meta = pd.read_csv(data / "HAM10000_metadata.csv", dtype=str)
        meta[name] = "/etc/passwd" if name == "path" else "x"
        meta.to_csv(data / "HAM10000_metadata.csv", index=False)
        return ["check-data", str(data)]

    return make


def _manifest_column(s: Setting) -> list[str]:
    tmp = s.tmp
    for name in ("a", "b"):
        _image(tmp / "data" / f"{name}.png")
    pd.DataFrame({"path": ["a.png", "b.png"], "label": [1, 0], "class_name": ["x", "y"]}).to_csv(
        tmp / "data" / "manifest.csv", index=False)
    return ["check-data", str(tmp / "data")]


def _one_image_twice(s: Setting) -> list[str]:
    tmp = s.tmp
    for name in ("000", "001"):
        _image(tmp / "data" / "img" / f"{name}.png")
    pd.DataFrame({"path": ["img/000.png", "img/001.png", "img/../img/000.png"], "label": [1, 0, 1]}).to_csv(
        tmp / "data" / "manifest.csv", index=False)
    return ["check-data", str(tmp / "data")]


def _out_inside_the_data(s: Setting) -> list[str]:
    data = s.data()
    return ["train", "--data", str(data), "--out", str(data / "run"), *FAST]


def _nul_in_a_path(s: Setting) -> list[str]:
    tmp = s.tmp
    _image(tmp / "data" / "a.png")
    (tmp / "data" / "manifest.csv").write_text("path,label\na.png,1\nb\x00.png,0\n")
    return ["check-data", str(tmp / "data")]


def _four_images(s: Setting) -> list[str]:
    tmp = s.tmp
    for i, label in enumerate(("mel", "nv", "mel", "nv")):
        _image(tmp / "data" / label / f"{i}.png", (40 * i, 60, 90))
    return ["train", "--data", str(tmp / "data"), "--out", str(tmp / "run"), *FAST]


def _no_data(s: Setting) -> list[str]:
    tmp = s.tmp
    return ["train", "--out", str(tmp / "run"), *FAST]


def _single_positive(s: Setting) -> list[str]:
    _image(s.tmp / "data" / "mel" / "0.png", (200, 30, 30))
    for i in range(60):
        _image(s.tmp / "data" / "nv" / f"{i}.png", (30, 30, 4 * i))
    return ["train", "--data", str(s.tmp / "data"), "--out", str(s.tmp / "run"), *FAST]


def _unreadable_folder(s: Setting) -> list[str]:
    """A class sub-folder the user may not read (as root every folder is readable, so scandir is told so)."""
    data = s.tmp / "data"
    for name in ("mel/a.png", "mel/locked/b.png", "nv/c.png"):
        _image(data / name)
    real_scandir = os.scandir
    locked = str(data / "mel" / "locked")

    def scandir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    s.during_the_command(os, "scandir", scandir)
    return ["check-data", str(data)]


def _unreadable_listed_image(s: Setting) -> list[str]:
    data = s.tmp / "data"
    for name in ("a", "b"):
        _image(data / "img" / f"{name}.png")
    pd.DataFrame({"path": ["img/a.png", "img/b.png"], "label": [1, 0]}).to_csv(data / "manifest.csv", index=False)
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if os.fspath(path).endswith("b.png"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    s.during_the_command(os, "stat", stat)
    return ["check-data", str(data)]


def _image_of_20000_pixels_square(s: Setting) -> list[str]:
    """A PNG whose header says 20000 x 20000 (a decompression bomb), beside readable images."""
    import struct
    import zlib

    data = s.tmp / "data"
    for i in range(3):
        _image(data / "mel" / f"{i}.png")
        _image(data / "nv" / f"{i}.png")
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    (data / "mel" / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return ["check-data", str(data)]


def _demo_data(*extra: str):
    return lambda s: ["demo-data", str(s.tmp / "demo"), *extra]


def _relabel_out(target: str):
    """``relabel --out`` aimed at ``target`` (relative to the demo data the run was made on)."""

    def make(s: Setting) -> list[str]:
        run = s.run()
        (s.tmp / "d.csv").write_text("image_id,decision,new_label\n")
        image = next((s.demo / "HAM10000_images_part_1").glob("*.jpg")).name
        return ["relabel", str(run), str(s.tmp / "d.csv"), "--out", str(s.demo / target.format(image=image))]

    return make


def _relabel_moved_data(s: Setting) -> list[str]:
    run = s.run()
    config = json.loads((run / "config.json").read_text())
    config["data"]["data"] = str(s.tmp / "moved")
    write_json(run / "config.json", config)
    Manifest(run).rerecord_run_files()  # the run is whole: only its data is gone
    (s.tmp / "d.csv").write_text("image_id,decision,new_label\n")
    return ["relabel", str(run), str(s.tmp / "d.csv")]


def _overwrite_a_lookalike(s: Setting) -> list[str]:
    looks = s.tmp / "project"
    (looks / "src").mkdir(parents=True)
    (looks / "notes.md").write_text("mine")
    (looks / "config.json").write_text(json.dumps({"train": {"epochs": 2}}))
    return ["round", "--data", str(s.demo), "--out", str(looks), "--overwrite", *FAST]


def _on_run(edit, *command: str):
    """``command`` on a copy of the finished run after ``edit(run)``; "{image}" stands for a data image."""

    def make(s: Setting) -> list[str]:
        run = s.run()
        image = pd.read_csv(run / "samples.csv")["path"].iloc[0]
        edit(run)
        return [command[0], str(run), *(a.format(image=image, tmp=s.tmp) for a in command[1:])]

    return make


def _report(**fields):
    def edit(run: Path) -> None:
        report = json.loads((run / "report.json").read_text())
        report.update(fields)
        (run / "report.json").write_text(json.dumps(report))

    return edit


def _round_0_handed_back_then(edit):
    """A run whose report hands back round 0 (re-recorded, as if its rounds had gone that way), then ``edit``."""
    from hardmine.record.manifest import Manifest

    def apply(run: Path) -> None:
        _report(best_round=0, returned="round")(run)
        Manifest(run).refresh([run / "report.json"])
        edit(run)

    return apply


def _edit_threshold(run: Path) -> None:
    """round 0's threshold changed by one digit: a same-size edit only a checksum finds."""
    path = run / "round-000" / "metrics.json"
    metrics = json.loads(path.read_text())
    text = path.read_text()
    old = repr(metrics["threshold"])
    digit = old[-1]
    path.write_text(text.replace(old, old[:-1] + ("1" if digit != "1" else "2"), 1))


def _garble_model(run: Path) -> None:
    model = run / "round-000" / "model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only a checksum finds it
    model.write_bytes(bytes(data))


def _config_edit(edit):
    def apply(run: Path) -> None:
        config = json.loads((run / "config.json").read_text())
        edit(config)
        (run / "config.json").write_text(json.dumps(config))

    return apply


def _swap_classes(config: dict) -> None:
    config["classes"] = {"positive": config["classes"]["negative"], "negative": config["classes"]["positive"]}


def _truncate(name: str, size: int = 10):
    def damage(run: Path) -> None:
        with open(run / name, "r+b") as fh:
            fh.truncate(size)

    return damage


def _not_utf8(name: str):
    def damage(run: Path) -> None:
        data = bytearray((run / name).read_bytes())
        data[len(data) // 2] = 0xFF  # same size: only reading it finds the damage
        (run / name).write_bytes(bytes(data))

    return damage


def _object_dynamics(run: Path) -> None:
    import numpy as np

    np.savez(run / "round-000" / "dynamics.npz", loss=np.array([object(), 1], dtype=object), p_true=np.zeros(2))


def _unchanged(run: Path) -> None:
    pass


def _pool_of_copies(s: Setting) -> list[str]:
    """A pool whose every image is a renamed byte copy of an image of the finished run."""
    run = s.run()
    samples = pd.read_csv(run / "samples.csv")
    (s.tmp / "pool").mkdir()
    for i, path in enumerate(samples["path"][:3]):
        shutil.copy(path, s.tmp / "pool" / f"new_{i}.jpg")
    pd.DataFrame({"path": [f"pool/new_{i}.jpg" for i in range(3)]}).to_csv(s.tmp / "pool.csv", index=False)
    return ["query", str(run), "--pool", str(s.tmp / "pool.csv"), "--budget", "2"]


def _write(name: str, text: str):
    return lambda run: (run / name).write_text(text)


def _pool_folder(s: Setting) -> Path:
    """Four new images (none the run holds) in ``TMP/pool``."""
    for i, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200), (90, 90, 90)]):
        _image(s.tmp / "pool" / f"P{i}.png", colour)
    return s.tmp / "pool"


def _query(*extra: str):
    """``query`` of a copy of the finished run on a pool of four new images, with ``extra`` options."""
    return lambda s: ["query", str(s.run()), "--pool", str(_pool_folder(s)), "--budget", "2", *extra]


def _label_after(edit):
    """``label`` of answers to a real query of a copy of the finished run, after ``edit(run)``."""

    def make(s: Setting) -> list[str]:
        result = runner.invoke(app, _query("--method", "random")(s))
        assert result.exit_code == 0, result.output
        run = s.run()
        picked = pd.read_csv(run / "query.csv")
        pd.DataFrame({"image_id": picked["id"], "label": ["mel", "nv"][: len(picked)]}).to_csv(
            s.tmp / "answers.csv", index=False)
        edit(run)
        return ["label", str(run), str(s.tmp / "answers.csv")]

    return make


def _prob_not_a_number(run: Path) -> None:
    for path in (run / "query.csv", run / "queries" / "001" / "query.csv"):
        query = pd.read_csv(path, dtype=str)
        query.loc[0, "prob_pos"] = "abc"
        query.to_csv(path, index=False)


def _config_with_seed(s: Setting) -> list[str]:
    """A --config whose seed is 1e30 (an integer JSON holds, but no random generator takes)."""
    from hardmine.record.config import RunConfig

    config = RunConfig().to_dict()
    config["train"]["seed"] = 10**30
    (s.tmp / "seed.json").write_text(json.dumps(config))
    return ["round", "--config", str(s.tmp / "seed.json"), "--data", str(s.demo), "--model", "tiny",
            "--out", str(s.tmp / "run")]


def _config_with_train_key(s: Setting) -> list[str]:
    from hardmine.record.config import RunConfig

    config = RunConfig().to_dict()
    config["train"]["epochz"] = 3  # misspelt: never silently dropped
    (s.tmp / "typo.json").write_text(json.dumps(config))
    return ["round", "--config", str(s.tmp / "typo.json"), "--data", str(s.demo), "--model", "tiny",
            "--out", str(s.tmp / "run")]


BAD_INPUTS = {
    "image size too small for the model": (_train("--image-size", "8"), ["--image-size 8", "16 to"]),
    "negative image size": (_train("--image-size", "-5"), ["--image-size -5"]),
    "zero image size": (_train("--image-size", "0"), ["--image-size 0"]),
    "unknown device": (_train("--device", "foo"), ["--device 'foo'", "cuda:N"]),
    "negative workers": (_train("--workers", "-1"), ["--workers -1"]),
    "unknown model": (_train("--model", "foo"), ["--model 'foo'"]),
    "missing weights file": (_train("--weights", "nope.pt"), ["nope.pt", "not found"]),
    "ema out of range": (_round("--ema", "2"), ["ema"]),
    "unknown index codec": (_round("--index-codec", "zip"), ["zip"]),
    "negative alpha": (_round("--alpha", "-100"), ["alpha"]),
    "trusted column the data lacks": (_round("--trusted", "biopsy=yes"), ["no column 'biopsy'", "dx_type"]),
    "malformed trusted rule": (_round("--trusted", "dx_type"), ["expected COLUMN=VALUE"]),
    "audit similarity above 1": (_round("--audit-sim", "5"), ["--audit-sim 5.0", "(0, 1]"]),
    "nan learning rate": (_train("--lr", "nan"), ["--lr nan", "finite number > 0"]),
    "infinite learning rate": (_train("--lr", "inf"), ["--lr inf"]),
    "negative weight decay": (_train("--weight-decay", "-1"), ["--weight-decay -1.0", ">= 0"]),
    "nan weight decay": (_train("--weight-decay", "nan"), ["--weight-decay nan"]),
    "negative focal gamma": (_train("--loss", "focal", "--focal-gamma", "-5"), ["--focal-gamma -5.0"]),
    "negative seed": (_train("--seed", "-1"), ["--seed -1"]),
    "negative split seed": (_train("--split-seed", "-1"), ["--split-seed -1"]),
    "infinite cost of a miss": (_train("--cost-fn", "inf"), ["costs must be positive and finite"]),
    "nan round learning rate": (_round("--round-lr", "nan"), ["--round-lr nan"]),
    "nan guard tolerance": (_round("--guard-tol", "nan"), ["--guard-tol nan"]),
    "negative guard tolerance": (_round("--guard-tol", "-1"), ["--guard-tol -1.0"]),
    "metadata path column": (_metadata_column("path"), ["column 'path' is a name hardmine uses"]),
    "metadata group column": (_metadata_column("group"), ["column 'group' is a name hardmine uses"]),
    "metadata label column": (_metadata_column("label"), ["column 'label' is a name hardmine uses"]),
    "manifest class_name column": (_manifest_column, ["column 'class_name' is a name hardmine uses"]),
    "one image listed twice": (_one_image_twice, ["row 4: 'img/../img/000.png' is the image of row 2 again"]),
    "out inside the data folder": (_out_inside_the_data, ["is inside the data folder"]),
    "infinite alpha": (_round("--alpha", "inf"), ["alpha=inf", "finite"]),
    "product quantiser of no parts": (_round("--index-codec", "pq0"), ["index codec 'pq0' is not valid"]),
    "NUL byte in a manifest path": (_nul_in_a_path, ["holds a NUL byte"]),
    "negative freeze epochs": (_train("--freeze-epochs", "-1"), ["--freeze-epochs -1 is not valid"]),
    "out is a file": (_out_is_file, ["is a file"]),
    "out under a file": (_out_under_file, ["blocker", "Not a directory"]),
    "HAM10000 folders without metadata": (_no_metadata, ["HAM10000_metadata.csv not found", "not classes"]),
    "two images with one stem": (_same_stem, ["two different images named"]),
    "symlinked image outside the root": (_symlink_image_outside, ["outside the data root"]),
    "symlinked class folder outside the root": (_symlink_class_outside, ["outside the data root"]),
    "lesion in both classes": (_lesion_in_both_classes, ["lesion 'L1'", "both classes"]),
    "a single class": (_one_class, ["only one class found (nv)"]),
    "folders source on a file": (_folders_on_a_file, ["m.csv is a file", "sub-folder per class"]),
    "four images": (_four_images, ["the split of 4 images (4 lesions) leaves", "use more data"]),
    "no data": (_no_data, ["--data is required", "--config"]),
    "infinite cost of a false alarm": (_train("--cost-fp", "inf"), ["costs must be positive and finite"]),
    "nan focal gamma": (_train("--loss", "focal", "--focal-gamma", "nan"), ["--focal-gamma nan"]),
    "negative demo seed": (_demo_data("--seed", "-1"), ["--seed -1 is not valid", "0 or more"]),
    "a single positive image": (_single_positive, ["leaves val with 0 positive", "use more data"]),
    "a class folder that cannot be read": (_unreadable_folder, ["cannot read folder", "locked", "permission denied"]),
    "a listed image that cannot be read": (_unreadable_listed_image, ["cannot read", "b.png", "permission denied"]),
    "an image of 20000 x 20000 pixels": (_image_of_20000_pixels_square, ["huge.png", "decompression bomb"]),
    "relabel over the metadata": (_relabel_out("HAM10000_metadata.csv"), ["is not a manifest `hardmine relabel`"]),
    "relabel over the planted flips": (_relabel_out("planted.csv"), ["is not a manifest `hardmine relabel` wrote"]),
    "relabel over an image": (_relabel_out("HAM10000_images_part_1/{image}"), ["is not a manifest"]),
    "relabel out of the data root": (_relabel_out("../m.csv"), ["must be inside the data root"]),
    "relabel into a folder missing images": (_relabel_out("HAM10000_images_part_1/m.csv"),
                                             ["its folder does not hold every image"]),
    "relabel of data that moved": (_relabel_moved_data, ["is not there (moved or deleted?)"]),
    "overwrite of a folder that is not a run": (_overwrite_a_lookalike, ["--overwrite replaces only a hardmine run"]),
    "predict with the best round's metrics gone": (
        _on_run(_round_0_handed_back_then(lambda run: (run / "round-000" / "metrics.json").unlink()),
                "predict", "{image}", "--out", "{tmp}/p.csv"), ["the report hands back round 0"]),
    "predict with a garbled model": (_on_run(_round_0_handed_back_then(_garble_model), "predict", "{image}", "--out",
                                             "{tmp}/p.csv"), ["model.pt is damaged (contents differ"]),
    "predict with the class names swapped": (_on_run(_config_edit(_swap_classes), "predict", "{image}", "--out",
                                                     "{tmp}/p.csv"), ["config.json is damaged"]),
    "predict out naming a folder": (_on_run(_unchanged, "predict", "{image}", "--out", "{tmp}"), ["is a folder"]),
    "report best round not a number": (_on_run(_report(best_round="abc", returned="round"), "predict", "{image}",
                                               "--out", "{tmp}/p.csv"), ["report.json is damaged (", "--resume"]),
    "predict with an edited threshold": (_on_run(_round_0_handed_back_then(_edit_threshold), "predict", "{image}",
                                                 "--out", "{tmp}/p.csv"), ["metrics.json is damaged (contents differ"]),
    "report not an object": (_on_run(lambda run: (run / "report.json").write_text("[]"), "predict", "{image}",
                                     "--out", "{tmp}/p.csv"), ["report.json is damaged (holds list"]),
    "config image size not a number": (_on_run(_config_edit(lambda c: c["train"].update(image_size="big")),
                                               "evaluate"), ["train.image_size='big' is not valid"]),
    "gallery of mined rows not UTF-8": (_on_run(_not_utf8("round-000/mined.csv"), "gallery", "--round", "0"),
                                        ["mined.csv is damaged"]),
    "report of test predictions not UTF-8": (_on_run(_not_utf8("round-000/preds_test.csv"), "report"),
                                             ["preds_test.csv is damaged"]),
    "gallery of samples not UTF-8": (_on_run(_not_utf8("samples.csv"), "gallery", "--round", "0"),
                                     ["samples.csv is damaged"]),
    "gallery of scores not UTF-8": (_on_run(_not_utf8("round-000/scores.csv"), "gallery", "--round", "0"),
                                    ["scores.csv is damaged"]),
    "score of object-array dynamics": (_on_run(_object_dynamics, "score", "--round", "0"), ["dynamics.npz is damaged"]),
    "evaluate of a cut metrics file": (_on_run(_truncate("round-000/metrics.json", 200), "evaluate", "--round", "0",
                                               "--split", "test"), ["metrics.json is damaged", "--resume"]),
    "mine of cut embeddings": (_on_run(_truncate("round-000/embeddings.npy", 200), "mine", "--round", "0"),
                               ["embeddings.npy is damaged", "--resume"]),
    "gallery of a cut mined table": (_on_run(_truncate("round-000/mined.csv", 200), "gallery", "--round", "0"),
                                     ["mined.csv is damaged", "--resume"]),
    "gallery of a negative top-n": (_on_run(_unchanged, "gallery", "--top-n", "-5"), ["--top-n -5"]),
    "evaluate a checkpoint that is not there": (_on_run(_unchanged, "evaluate", "--checkpoint", "nope.pt"),
                                                ["nope.pt not found"]),
    "budget without a pool": (_round("--budget", "5"), ["--budget applies to queries of a pool: give --pool too"]),
    "method without a pool": (_round("--method", "random"), ["--method applies to queries of a pool"]),
    "a JSON list as --config": (lambda s: (s.tmp / "list.json").write_text("[1, 2]") and
                                ["round", "--config", str(s.tmp / "list.json"), "--out", str(s.tmp / "run")],
                                ["list.json holds a JSON list; expected a run's config.json"]),
    "a trillion epochs": (_train("--epochs", "1000000000000"), ["--epochs 1000000000000 is not valid; expected 1 to"]),
    "a trillion freeze epochs": (_train("--freeze-epochs", "1000000000000"), ["--freeze-epochs", "expected 0 to"]),
    "a trillion workers": (_train("--workers", "1000000000000"), ["--workers 1000000000000", "expected 0 to 1024"]),
    "a trillion threads": (_train("--threads", "1000000000000"), ["--threads 1000000000000", "expected 1 to 4096"]),
    "a trillion round epochs": (_round("--round-epochs", "1000000000000"), ["--round-epochs", "expected 1 to"]),
    "a trillion out-of-fold epochs": (_round("--oof-epochs", "1000000000000"), ["--oof-epochs", "expected 1 to"]),
    "a learning rate of 1e308": (_train("--lr", "1e308"), ["--lr 1e+308 is not valid", "up to 100"]),
    "a round learning rate of 1e308": (_round("--round-lr", "1e308"), ["--round-lr 1e+308", "up to 100"]),
    "a seed of 1e30 in a config": (_config_with_seed, ["--seed", "expected 0 to 4294967295"]),
    "an unknown key in --config's train section": (_config_with_train_key, ["train.epochz is not an option",
                                                                             "expected one of"]),
    "label reading a device": (_on_run(_unchanged, "label", "/dev/zero"), ["/dev/zero is not a regular file"]),
    "oracle error without an oracle": (_round("--pool", "{tmp}", "--oracle-error", "0.1"),
                                       ["--oracle-error applies to a simulated oracle's answers"]),
    "a pool folder that is not there": (_round("--pool", "{tmp}/nope"), ["--pool", "nope", "expected a folder"]),
    "a pool of byte copies of labeled images": (_pool_of_copies, ["every one of its 3 image(s) is a byte copy",
                                                                  "new_0 = "]),
    # query, label and round --pool: refused before anything is scored, kept or trained
    "query of a budget beyond the pool": (_query("--budget", "9"), ["--budget 9 must be between 1 and the 4 image"]),
    "query with an option its method lacks": (_query("--method-option", "kk=1"),
                                              ["acquisition 'hardmine' takes no option 'kk'", "positive_share=0.5"]),
    "query with an option of the wrong type": (_query("--method-option", "positive_share=half"),
                                               ["--method-option positive_share='half' is not valid; expected float"]),
    "query with a malformed option": (_query("--method-option", "positive_share"), ["expected KEY=VALUE"]),
    "query of a pool folder that is not there": (lambda s: ["query", str(s.run()), "--pool", str(s.tmp / "nope"),
                                                            "--budget", "2"], ["nope"]),  # fmt: skip
    "label with its answers log damaged": (_label_after(_write("labeled.csv", "garbage\n\x01\n")),
                                           ["labeled.csv is damaged", "restore it or remove it"]),
    "label with a probability that is not a number": (_label_after(_prob_not_a_number),
                                                      ["prob_pos 'abc' is not a number"]),
    "label with the batch's query.json damaged": (_label_after(_write("queries/001/query.json", "{bad")),
                                                  ["query.json is damaged"]),
    "label of an answers file that is not there": (_on_run(_unchanged, "label", "{tmp}/nope.csv"), ["nope.csv"]),
    "method option without a pool": (_round("--method-option", "k=3"),
                                     ["--method-option applies to queries of a pool"]),
    "round with a pool and an option its method lacks": (_round("--pool", "{tmp}", "--method-option", "kk=1"),
                                                          ["acquisition 'hardmine' takes no option 'kk'"]),
}


def _tree(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with the SHA-256 of its bytes ("" for a folder)."""
    import hashlib

    # the run's lock file names its last holder: a command that took the lock rewrote it, and that is all
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            for p in sorted(root.rglob("*")) if not p.is_symlink() and p.name != LOCK_FILE}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_changes_nothing(case, demo_dir, tmp_path, monkeypatch, request):
    make_args, expected = BAD_INPUTS[case]
    setting = Setting(tmp_path, demo_dir, lambda: request.getfixturevalue("finished_run"))
    args = make_args(setting)
    sentinel = tmp_path / "sentinel"  # files beside the run that no command may touch
    (sentinel / "nested").mkdir(parents=True)
    (sentinel / "notes.md").write_text("mine")
    (sentinel / "nested" / "model.pt").write_bytes(b"\x00" * 64)
    before = _tree(tmp_path), _tree(demo_dir)
    for target, name, value in setting.patches:
        monkeypatch.setattr(target, name, value)
    result = runner.invoke(app, args)
    monkeypatch.undo()
    _assert_one_line_error(result, *expected)
    assert (_tree(tmp_path), _tree(demo_dir)) == before  # nothing written, removed or changed, anywhere


@pytest.mark.parametrize(("args", "expected"), [
    (["train", "--data", ".", "--model", "tiny",
      "--out", "r", "--loss", "bogus"], "'bogus' is not one of 'ce', 'weighted-ce', 'focal'"),
    (["round", "--data", ".", "--model", "tiny", "--out", "r", "--epochs", "x"], "Invalid value for '--epochs'"),
    (["round", "--data", ".", "--model", "tiny",
      "--out", "r", "--update", "bogus"], "'bogus' is not one of 'finetune', 'retrain'"),
])  # fmt: skip
def test_usage_errors_are_one_line_from_the_installed_command(args, expected, tmp_path):
    result = subprocess.run([sys.executable, "-m", "hardmine", *args], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.stderr
    assert "--help" in lines[0] and list(tmp_path.iterdir()) == []


def test_a_second_copy_of_the_image_folders_is_skipped_with_a_warning(demo_copy):
    shutil.copytree(demo_copy / "HAM10000_images_part_1", demo_copy / "ham10000_images_part_1")  # as Kaggle ships it
    result = runner.invoke(app, ["check-data", str(demo_copy)])
    assert result.exit_code == 0, result.output
    assert "found twice (same name and size)" in result.stderr


def test_empty_lesion_ids_become_their_own_groups_with_a_warning(tmp_path):
    for name in ("a", "b", "c", "d"):
        _image(tmp_path / f"{name}.png")
    frame = pd.DataFrame({"path": ["a.png", "b.png", "c.png", "d.png"], "label": [1, 0, 0, 0],
                          "group": ["", "", "L2", "L2"]})  # fmt: skip
    frame.to_csv(tmp_path / "manifest.csv", index=False)
    from hardmine.core.errors import HardmineWarning
    from hardmine.data.sources import load_samples

    with pytest.warns(HardmineWarning, match="2 image\\(s\\) have no lesion id"):
        table, _ = load_samples(tmp_path)
    assert table["group"].tolist() == ["a", "b", "L2", "L2"]
    result = runner.invoke(app, ["check-data", str(tmp_path)])
    assert result.exit_code == 0 and "warning: 2 image(s) have no lesion id" in result.stderr


# --------------------------------------------------------------------------- damaged run folders


def _poisoned_resume_point(run: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > pwned.txt",))

    manifest = json.loads((run / "manifest.json").read_text())
    manifest["steps"] = [s for s in manifest["steps"] if not s.startswith("r001")]
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "round-001" / "last.pt").write_bytes(pickle.dumps({"model": Evil()}, protocol=2))


def _killed_in_round_1(then):
    """Round 1 unmarked as if killed during its training, then ``then(run)`` damages what a resume reads."""

    def damage(run: Path) -> None:
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["steps"] = [s for s in manifest["steps"] if not s.startswith("r001")]
        manifest["files"] = {name: record for name, record in manifest["files"].items()  # a killed step records none
                             if not (record["step"] or "").startswith("r001")}  # fmt: skip
        (run / "manifest.json").write_text(json.dumps(manifest))
        assert (run / "round-001" / "last.pt").exists()
        then(run / "round-001")

    return damage


def _resume_point_without_next_epoch(fit: Path) -> None:
    import torch

    state = torch.load(fit / "last.pt", weights_only=True)
    del state["next_epoch"]
    torch.save(state, fit / "last.pt")


def _manifest_edit(edit):
    def damage(run: Path) -> None:
        manifest = json.loads((run / "manifest.json").read_text())
        edit(manifest, run)
        (run / "manifest.json").write_text(json.dumps(manifest))

    return damage


def _record_outside(manifest: dict, run: Path) -> None:
    victim = run.parent / "outside" / "victim.txt"
    victim.parent.mkdir(exist_ok=True)
    victim.write_text("the user's")
    record = {"size": 1, "mtime_ns": 1, "sha256": "0" * 64, "step": "r001:mine"}
    manifest["files"]["../outside/victim.txt"] = record
    manifest["files"][str(victim)] = record


def _truncated_then_evaluated(run: Path) -> None:
    _truncate("round-000/scores.csv", 100)(run)
    assert runner.invoke(app, ["evaluate", str(run), "--round", "0"]).exit_code == 0  # rewrites metrics.json only


# damage -> None when resume must redo the damaged step, else words its one-line error names
DAMAGE = {
    "truncated round-001 scores": (_truncate("round-001/scores.csv", 100), None),
    "truncated round-000 metrics": (_truncate("round-000/metrics.json"), None),
    "truncated round-000 embeddings": (_truncate("round-000/embeddings.npy", 200), None),
    "truncated round-000 model": (_truncate("round-000/model.pt", 1000), None),
    "truncated round-000 mined": (_truncate("round-000/mined.csv", 50), None),
    "edited round-000 weights": (_write("round-000/weights.csv", "id,weight\nx,1\n"), None),
    "truncated scores, then evaluate": (_truncated_then_evaluated, None),
    "truncated manifest": (_truncate("manifest.json"), ["manifest.json is damaged", "delete it"]),
    "truncated config": (_truncate("config.json"), ["config.json is damaged"]),
    "config holding a list": (_write("config.json", "[]"), ["config.json is damaged"]),
    "truncated split": (_truncate("split.csv"), ["split.csv is damaged", "cannot be rebuilt"]),
    "poisoned resume point": (_poisoned_resume_point, ["last.pt is damaged or not a hardmine checkpoint"]),
    "resume point without next_epoch": (_killed_in_round_1(_resume_point_without_next_epoch),
                                        ["the resume point in", "is damaged (KeyError", "delete"]),
    "damaged history of a killed round": (_killed_in_round_1(lambda fit: (fit / "history.jsonl").write_text("{oops\n")),
                                          ["the resume point in", "is damaged (JSONDecodeError"]),
    "damaged dynamics of a killed round": (_killed_in_round_1(_truncate("dynamics.npz", 100)),
                                           ["the resume point in", "is damaged"]),
    "manifest recording a file outside the run": (_manifest_edit(_record_outside), ["outside the run folder"]),
    "manifest files as a list": (_manifest_edit(lambda m, run: m.update(files=[])), ["manifest.json is damaged"]),
    "manifest target not a number": (_manifest_edit(lambda m, run: m.update(target_round="abc")),
                                     ["manifest.json is damaged"]),
    "manifest record missing its size": (_manifest_edit(lambda m, run: m["files"]["config.json"].pop("size")),
                                         ["manifest.json is damaged", "incomplete"]),
    "manifest target edited by hand": (_manifest_edit(lambda m, run: m.update(target_round=400)),
                                       ["manifest.json is damaged (target_round 400 is not round 0 + 1 rounds"]),
    "manifest plan without its start": (_manifest_edit(lambda m, run: m.update(plan={"rounds": 400})),
                                        ["manifest.json is damaged (its plan {'rounds': 400} is incomplete"]),
    "manifest plan deleted, target raised": (_manifest_edit(lambda m, run: m.pop("plan") and m.update(target_round=4)),
                                             ["manifest.json is damaged (target_round 4 is there without its plan"]),
    **{f"manifest recording {name!r}": (_manifest_edit(lambda m, run, name=name: m["files"].update(
        {name: m["files"]["config.json"]})), ["manifest.json is damaged (it records", "not a file hardmine writes"])
       for name in ("", ".", "round-001", "con\x00fig.json")},
}


def test_a_resume_without_a_manifest_says_where_its_target_comes_from(finished_run, demo_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "manifest.json").unlink()
    args = ["round", "--data", str(demo_dir), "--out", str(run), "--n", "1", *FAST, *ROUNDS_THAT_TRAIN, "--resume"]
    result = runner.invoke(app, args, terminal_width=250)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "resuming towards round 1" in said and "no manifest records what the interrupted call aimed for" in said
    assert "from its manifest" not in said


def _run_state(run: Path) -> tuple[dict[str, str], object]:
    """A run's files by checksum, its manifest by content (a resume that saves it unchanged may lay it out
    anew), orphaned temp files left out (a killed write's leftovers, which the lock's holder removes first)."""
    files = {name: digest for name, digest in _tree(run).items() if not name.endswith(".tmp")}
    try:
        manifest = json.loads((run / "manifest.json").read_text())
        files.pop("manifest.json")
    except ValueError:
        manifest = None  # a damaged one is compared byte for byte
    return files, manifest


@pytest.mark.parametrize("case", list(DAMAGE))
def test_resume_redoes_a_damaged_step_or_names_the_file(case, finished_run, demo_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    orphan = run / "round-001" / ".scores.csv.abc.tmp"
    orphan.write_text("left by a kill")
    damage, expected = DAMAGE[case]
    damage(run)
    sentinel = tmp_path / "sentinel"  # beside the run: no resume may touch it, nor the data
    sentinel.mkdir()
    (sentinel / "notes.md").write_text("mine")
    run_before, beside_before = _run_state(run), (_tree(sentinel), _tree(demo_dir))
    args = ["round", "--data", str(demo_dir), "--out", str(run), "--n", "1", "--resume", *FAST, *ROUNDS_THAT_TRAIN]
    result = runner.invoke(app, args)
    assert (_tree(sentinel), _tree(demo_dir)) == beside_before
    if expected is not None:
        _assert_one_line_error(result, *expected)
        assert _run_state(run) == run_before  # refused: the run as it was, for the user to mend or delete
        assert not (tmp_path / "pwned.txt").exists()
        victim = tmp_path / "outside" / "victim.txt"
        assert not victim.parent.exists() or victim.read_text() == "the user's"
        return
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "is damaged" in result.stderr
    manifest = Manifest(run)
    assert [s.key for s in manifest.steps] == [s.key for s in Manifest(finished_run).steps]
    assert manifest.verify() == []
    assert not orphan.exists()


# --------------------------------------------------------------------------- security: the attacks, written out


def test_attack_a_crafted_manifest_cannot_delete_a_file_outside_the_run(finished_run, demo_dir, tmp_path):
    """Attack (item 1): a run folder handed to the user records, in ``manifest.json``, a file outside it
    (``../outside/victim.txt``, and the same file by its absolute path) with a wrong checksum under a mining
    step. ``round --resume`` said "victim.txt is damaged; redoing" and unlinked it. Every command that reads
    the manifest now refuses the run, and the victim stays."""
    run = tmp_path / "runs" / "run"
    shutil.copytree(finished_run, run)
    victim = tmp_path / "runs" / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("the user's")
    manifest = json.loads((run / "manifest.json").read_text())
    for name in ("../outside/victim.txt", str(victim)):
        manifest["files"][name] = {"size": 1, "mtime_ns": 1, "sha256": "0" * 64, "step": "r001:mine"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    image = pd.read_csv(run / "samples.csv")["path"].iloc[0]
    for command in (["round", "--data", str(demo_dir), "--out", str(run), "--n", "1", "--resume", *FAST,
                     *ROUNDS_THAT_TRAIN], ["evaluate", str(run)], ["mine", str(run), "--round", "0"],
                    ["predict", str(run), image, "--out", str(tmp_path / "p.csv")]):  # fmt: skip
        _assert_one_line_error(runner.invoke(app, command), "manifest.json is damaged", "outside the run folder")
        assert victim.read_text() == "the user's"


def test_attack_metadata_columns_cannot_point_at_other_files_or_merge_lesions(demo_dir, tmp_path):
    """Attack (item 5): columns in ``HAM10000_metadata.csv`` named like hardmine's own. A ``path`` column
    pointing at a file outside the data folder made the run read it (and ``--serve`` show its thumbnail),
    past the inside-the-root and symlink guards; a ``group`` column replaced ``lesion_id``, so one lesion
    could land in several splits. Both are refused by name, before anything is read or written."""
    from hardmine.core.errors import DataError
    from hardmine.data.sources import load_samples

    outside = tmp_path / "secret.jpg"
    _image(outside)
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    original = pd.read_csv(data / "HAM10000_metadata.csv", dtype=str)
    for column, value in (("path", str(outside)), ("group", original["image_id"])):
        original.assign(**{column: value}).to_csv(data / "HAM10000_metadata.csv", index=False)
        with pytest.raises(DataError, match=f"column '{column}' is a name hardmine uses"):
            load_samples(data)
        args = ["round", "--data", str(data), "--out", str(tmp_path / "run"), "--n", "1", *FAST]
        _assert_one_line_error(runner.invoke(app, args), f"column '{column}' is a name hardmine uses")
        assert not (tmp_path / "run").exists()


def test_damaged_array_without_a_record_is_one_error(tmp_path):
    from hardmine.core.errors import HardmineError
    from hardmine.core.io import load_array

    np_path = tmp_path / "x.npy"
    np_path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(HardmineError, match="x.npy is damaged"):
        load_array(np_path, mmap=True)


# --------------------------------------------------------------------------- one writer, file modes


def test_second_writer_is_refused_while_the_first_completes(demo_dir, tmp_path):
    out = tmp_path / "run"
    args = ["round", "--data", str(demo_dir), "--model", "tiny", "--out", str(out), "--n", "1",
            "--epochs", "12", "--image-size", "24",
            "--device", "cpu", "--workers", "0"]  # fmt: skip
    first = subprocess.Popen([sys.executable, "-m", "hardmine", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    lock = out / LOCK_FILE
    deadline = time.time() + 120
    while not (lock.exists() and f"pid {first.pid}" in lock.read_text()):
        assert first.poll() is None and time.time() < deadline, "the first run never took the lock"
        time.sleep(0.1)
    second = runner.invoke(app, args)
    _assert_one_line_error(second, "is in use by", f"pid {first.pid}")
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    steps = [s.key for s in Manifest(out).steps]
    assert steps == ["r000:train", "r000:score", "r000:mine", "r001:train", "r001:score", "r001:mine", "r001:report"]
    assert Manifest(out).verify() == []
    # the first process is gone: its lock went with it
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0


def test_a_run_made_by_another_process_meanwhile_is_said(demo_dir, tmp_path, monkeypatch):
    # two `train --out R` started together: the other one made R/config.json between this one's first look
    # and its lock (it read 'NoneType' object has no attribute 'get')
    import hardmine.run.opened as opened

    out = tmp_path / "run"
    real_load = opened.load_samples

    def load_while_another_makes_the_run(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        out.mkdir()
        (out / "config.json").write_text(json.dumps({"train": {"epochs": 2}}))
        return loaded

    monkeypatch.setattr(opened, "load_samples", load_while_another_makes_the_run)
    result = runner.invoke(app, ["train", "--data", str(demo_dir), "--out", str(out), *FAST])
    _assert_one_line_error(result, "another hardmine process made a run in", "run the command again")
    assert {p.name for p in out.iterdir()} <= {"config.json", LOCK_FILE}  # the other's run left as it made it


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_a_run_made_before_output_records_gets_them_on_resume(finished_run, demo_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["files"]  # as a run made by an earlier hardmine
    (run / "manifest.json").write_text(json.dumps(manifest))
    args = ["round", "--data", str(demo_dir), "--out", str(run), "--n", "1", *FAST, *ROUNDS_THAT_TRAIN]
    assert runner.invoke(app, args).exit_code == 0  # one more round: the old files are recorded now
    files = Manifest(run).files
    assert files["round-000/scores.csv"]["step"] == "r000:train"  # their own round's, never the new step's
    assert files["round-002/scores.csv"]["step"] == "r002:score" and Manifest(run).verify() == []


def test_images_are_read_as_they_are(tmp_path):
    import numpy as np

    from hardmine.data.images import load_image
    from hardmine.data.sources import load_samples

    grey = np.tile(np.linspace(0, 65535, 16, dtype=np.uint16), (16, 1))
    Image.fromarray(grey).save(tmp_path / "deep.png")  # a 16-bit scan (mode I;16)
    pixels = np.asarray(load_image(tmp_path / "deep.png"))
    assert pixels.shape == (16, 16, 3) and pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255
    assert 100 < pixels.mean() < 155  # a ramp, not 99.6% white
    # class folders: images in sub-folders count, and one name in two classes is two lesions
    _image(tmp_path / "folders" / "mel" / "x.png")
    _image(tmp_path / "folders" / "mel" / "2024" / "y.png")
    _image(tmp_path / "folders" / "nv" / "x.png", colour=(1, 2, 3))
    _image(tmp_path / "folders" / "nv" / "z.png", colour=(4, 5, 6))
    table, _ = load_samples(tmp_path / "folders", positive="mel", negative="nv")
    assert sorted(table["id"]) == ["mel/2024/y", "mel/x", "nv/x", "nv/z"]
    assert table["group"].nunique() == 4
    # a FIFO named like an image is not read (it would block)
    data = tmp_path / "ham"
    for i in range(3):
        _image(data / "HAM10000_images_part_1" / f"ISIC_{i:07d}.jpg", colour=(i, 2, 3))
    pd.DataFrame({"lesion_id": ["L0", "L1", "L2"], "image_id": [f"ISIC_{i:07d}" for i in range(3)],
                  "dx": ["mel", "nv", "nv"]}).to_csv(data / "HAM10000_metadata.csv", index=False)  # fmt: skip
    os.mkfifo(data / "HAM10000_images_part_1" / "ISIC_0000009.jpg")
    result = runner.invoke(app, ["check-data", str(data)])
    assert result.exit_code == 0, result.output



def test_ctrl_c_says_how_to_go_on(demo_dir, tmp_path):
    import signal

    run = tmp_path / "run"
    args = [sys.executable, "-m", "hardmine", "round", "--data", str(demo_dir), "--model", "tiny",
            "--out", str(run), "--n", "2",
            "--epochs", "30", "--image-size", "24", "--device", "cpu", "--workers", "0"]  # fmt: skip
    # Ctrl-C as a terminal sends it (a test started in the background inherits SIGINT ignored)
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    for _ in range(600):  # until training has started
        if (run / "round-000").exists() or child.poll() is not None:
            break
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130 and "Traceback" not in stderr
    assert "interrupted:" in stderr and "--resume" in stderr


def test_evaluate_defaults_to_the_model_the_run_hands_back(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    report = json.loads((run / "report.json").read_text())
    result = runner.invoke(app, ["evaluate", str(run), "--split", "test"], terminal_width=200)
    assert result.exit_code == 0, result.output
    reference = "the equal-epochs reference, round 0"
    expected = reference if report["returned"] == "reference" else f"round {report['best_round']}"
    assert f"{expected}, test" in " ".join(result.output.split())  # the table's title may wrap
    # --round takes what predict takes: best, reference or a number
    for value, title in (("best", expected), ("reference", reference), ("1", "round 1")):
        result = runner.invoke(app, ["evaluate", str(run), "--split", "test", "--round", value], terminal_width=200)
        assert result.exit_code == 0 and f"{title}, test" in " ".join(result.output.split()), result.output
    result = runner.invoke(app, ["evaluate", str(run), "--round", "latest"])
    assert result.exit_code == 2 and "--round 'latest' is not valid; expected best, reference" in result.output


def test_an_option_that_does_nothing_is_said(demo_dir, tmp_path):
    args = ["round", "--data", str(demo_dir), "--out", str(tmp_path / "run"), "--n", "0", *FAST, "--strategy", "head",
            "--round-epochs", "5", "--quarantine", "none", "--suspicion-threshold", "0.3"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "--round-epochs and --round-lr do nothing with --strategy head" in result.stderr
    assert "--suspicion-threshold does nothing with --quarantine none" in result.stderr
    from hardmine.record.config import RunConfig

    config = RunConfig()
    config.data.split_from, config.data.split_seed = "earlier", 3
    assert any("--split-seed does nothing with --split-from" in m for m in config.unused_options())



def test_a_small_validation_split_is_flagged_once(demo_dir, tmp_path):
    args = ["train", "--data", str(demo_dir), "--out", str(tmp_path / "run"), *FAST]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "warning: the validation split holds" in result.stderr and "positive lesion(s)" in result.stderr
    again = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--round", "0"])
    assert again.exit_code == 0 and "validation split holds" not in again.stderr  # said when the run is made


def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_stays(tmp_path, monkeypatch):
    import torch

    from hardmine.core.errors import HardmineError
    from hardmine.engine.train import save_state

    target = tmp_path / "model.pt"
    target.write_bytes(b"the earlier model")

    def full(obj, f):
        Path(f).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(HardmineError, match=r"cannot write .*model\.pt \(\d+ MiB free on its disk"):
        save_state(target, {"w": 1})
    assert target.read_bytes() == b"the earlier model" and not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("planted", [".important", ".git/HEAD", "diagram.png", "round-001/my_notes.txt",
                                     "label/keep.txt", "reference/keep.txt", "round-777/data.csv",
                                     "round-000/gallery/thumbs/notes.jpg"])  # fmt: skip
def test_attack_overwrite_never_deletes_what_hardmine_did_not_write(finished_run, demo_dir, tmp_path, planted):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / planted).parent.mkdir(parents=True, exist_ok=True)
    (run / planted).write_text("the user's")
    before = _tree(run)
    args = ["round", "--data", str(demo_dir), "--out", str(run), "--n", "0", *FAST, "--epochs", "3", "--overwrite"]
    result = runner.invoke(app, args)
    named = ".git/" if planted.startswith(".git/") else planted  # a folder of the user's is named whole
    _assert_one_line_error(result, "--overwrite would delete", named)
    assert _tree(run) == before


def test_overwrite_replaces_a_run_holding_only_what_hardmine_wrote(finished_run, demo_dir, tmp_path):
    from hardmine.record.layout import foreign_entries

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert foreign_entries(run) == []  # every file of a finished run (reference, galleries, plots) is known
    (run / "round-001" / ".scores.csv.a1b2c3d4.tmp").write_text("left by a kill")  # an atomic write's temporary
    assert foreign_entries(run) == []
    args = ["round", "--data", str(demo_dir), "--out", str(run), "--n", "0", *FAST, "--epochs", "3", "--overwrite"]
    assert runner.invoke(app, args).exit_code == 0 and not (run / "round-001").exists()


def test_attack_a_pickled_file_is_never_advised_to_be_loaded_unsafely(tmp_path):
    import numpy as np
    import torch

    from hardmine.core.errors import HardmineError
    from hardmine.core.io import load_array
    from hardmine.engine.models import read_state_dict

    torch.save({"model": {"w": torch.zeros(1)}, "payload": Path("not a tensor")}, tmp_path / "model.pt")
    np.save(tmp_path / "embeddings.npy", np.array([object()], dtype=object), allow_pickle=True)
    for read, name in ((read_state_dict, "model.pt"), (load_array, "embeddings.npy")):
        with pytest.raises(HardmineError) as caught:
            read(tmp_path / name)
        message = str(caught.value)
        assert name in message and "pickled Python objects, which hardmine never loads" in message
        assert "weights_only" not in message and "allow_pickle" not in message and "trust" not in message


def test_a_run_killed_during_creation_is_made_again(demo_dir, tmp_path):
    run = tmp_path / "run"
    args = ["round", "--data", str(demo_dir), "--out", str(run), "--n", "0", *FAST]
    assert runner.invoke(app, args).exit_code == 0
    samples = (run / "samples.csv").read_bytes()
    shutil.rmtree(run)
    run.mkdir()
    (run / "samples.csv").write_bytes(samples)  # killed after the sample table, before config.json
    (run / ".split.csv.a1b2c3d4.tmp").write_text("half")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "whose creation was interrupted" in result.output and (run / "config.json").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "samples.csv").write_text("not hardmine's, beside a note")
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["round", "--data", str(demo_dir), "--out", str(tmp_path / "mine"), "--n", "0", *FAST])
    assert result.exit_code == 2 and "is not a hardmine run directory" in result.output
    assert (tmp_path / "mine" / "samples.csv").read_text() == "not hardmine's, beside a note"
