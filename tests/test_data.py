import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from hardmine.cli import app
from hardmine.core.errors import DataError
from hardmine.core.splits import grouped_split
from hardmine.data.sources import detect_source, load_samples
from hardmine.data.splits import make_or_load_split
from hardmine.engine.datasets import ImageDataset

runner = CliRunner()


def _write_image(path, colour=(120, 60, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)


# --------------------------------------------------------------------------- sources


def test_ham10000_source_maps_task_and_groups(demo_dir):
    table, report = load_samples(demo_dir)
    meta = pd.read_csv(demo_dir / "HAM10000_metadata.csv")
    assert report.source == "ham10000"
    assert len(table) == len(meta)
    assert set(table.columns) >= {"id", "path", "label", "group", "class_name", "dx_type", "age", "sex", "localization"}
    merged = table.merge(meta, left_on="id", right_on="image_id")
    assert (merged["group"] == merged["lesion_id"]).all()
    assert ((merged["dx"] == "mel") == (merged["label"] == 1)).all()
    # images are split over the two part folders and all resolved
    assert {p.split("/")[-2] for p in table["path"]} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}


def test_ham10000_negative_rest_and_excluded_classes(demo_copy):
    meta = pd.read_csv(demo_copy / "HAM10000_metadata.csv")
    meta.loc[:9, "dx"] = "bkl"
    meta.to_csv(demo_copy / "HAM10000_metadata.csv", index=False)
    table, report = load_samples(demo_copy)
    assert report.n_excluded == 10 and len(table) == len(meta) - 10
    table, _ = load_samples(demo_copy, negative="rest")
    assert len(table) == len(meta) and set(table[table.label == 0].class_name) == {"nv", "bkl"}
    table, _ = load_samples(demo_copy, positive="mel,bkl", negative="nv")
    assert set(table[table.label == 1].class_name) == {"mel", "bkl"}


def test_manifest_source(tmp_path):
    rows = []
    for i in range(6):
        label = "malignant" if i < 2 else "benign"
        _write_image(tmp_path / "imgs" / f"{i}.png")
        rows.append({"path": f"imgs/{i}.png", "label": label, "group": f"p{i // 2}"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    assert detect_source(tmp_path) == "manifest"
    table, report = load_samples(tmp_path)
    assert report.positive == ["malignant"]  # the rarer class by default
    assert table["label"].tolist() == [1, 1, 0, 0, 0, 0]
    assert table["group"].tolist() == ["p0", "p0", "p1", "p1", "p2", "p2"]
    table, _ = load_samples(tmp_path / "manifest.csv", positive="benign")
    assert table["label"].sum() == 4


def test_class_folders_source(tmp_path):
    for cls, n in (("mel", 2), ("nv", 3)):
        for i in range(n):
            _write_image(tmp_path / cls / f"{cls}{i}.jpg")
    assert detect_source(tmp_path) == "folders"
    table, _ = load_samples(tmp_path, positive="mel")
    assert sorted(table["id"]) == ["mel/mel0", "mel/mel1", "nv/nv0", "nv/nv1", "nv/nv2"]
    assert table["label"].sum() == 2
    assert (table["group"] == table["id"]).all()  # each image its own lesion, named with its class


def test_a_run_trusts_its_sources_own_rule_unless_told(tmp_path, demo_dir):
    from hardmine.core.mining import MiningConfig
    from hardmine.record.config import DataConfig, RunConfig

    for cls in ("mel", "nv"):
        _write_image(tmp_path / cls / "a.jpg")
    assert RunConfig(data=DataConfig(data=demo_dir)).mining.trusted == "dx_type=histo"
    assert RunConfig(data=DataConfig(data=tmp_path)).mining.trusted == ""  # class folders confirm nothing
    told = RunConfig(data=DataConfig(data=demo_dir), mining=MiningConfig(trusted="none"))
    assert told.mining.trusted == ""
    assert RunConfig(data=DataConfig(data=tmp_path / "absent")).mining.trusted == ""  # loading says why


# --------------------------------------------------------------------------- bad input


def test_metadata_missing(tmp_path):
    with pytest.raises(DataError, match="metadata file .*meta.csv not found"):
        load_samples(tmp_path, source="ham10000", metadata=tmp_path / "meta.csv")


def test_required_column_missing_is_named(demo_copy):
    meta = pd.read_csv(demo_copy / "HAM10000_metadata.csv").drop(columns="lesion_id")
    meta.to_csv(demo_copy / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match="required column.* lesion_id missing"):
        load_samples(demo_copy)


def test_unknown_dx_lists_what_was_found(demo_copy):
    meta = pd.read_csv(demo_copy / "HAM10000_metadata.csv")
    meta.loc[0, "dx"] = "melanoma"
    meta.to_csv(demo_copy / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match="unknown dx value.*melanoma"):
        load_samples(demo_copy)


def test_missing_images_count_and_first_ids(demo_copy):
    table, _ = load_samples(demo_copy)
    for path in table["path"][:3]:
        os.remove(path)
    with pytest.raises(DataError, match=f"3 image.* not found.*{table['id'][0]}"):
        load_samples(demo_copy)


def test_corrupt_image_named_and_skip_bad(demo_copy):
    table, _ = load_samples(demo_copy)
    bad = table["path"][5]
    with open(bad, "r+b") as fh:
        fh.truncate(200)
    with pytest.raises(DataError, match=f"1 unreadable image.*{bad} \\(Truncated File Read\\)"):  # says why
        load_samples(demo_copy, verify_images=True)
    kept, report = load_samples(demo_copy, verify_images=True, skip_bad=True)
    assert len(kept) == len(table) - 1 and report.bad_files == [bad]


def test_image_verification_is_remembered_until_a_file_changes(demo_copy, monkeypatch):
    import hardmine.data.images as images

    checked = []
    why = images.why_unreadable
    monkeypatch.setattr(images, "why_unreadable", lambda path: checked.append(str(path)) or why(path))
    table, _ = load_samples(demo_copy, verify_images=True)
    assert len(checked) == len(table) and images.verified_cache_path(demo_copy).is_file()
    checked.clear()
    load_samples(demo_copy, verify_images=True)
    assert checked == []  # nothing decoded again
    bad, touched = table["path"][5], table["path"][6]
    with open(bad, "r+b") as fh:
        fh.truncate(200)
    os.utime(touched, ns=(0, 10**9))  # same bytes, another modification time: checked again
    with pytest.raises(DataError, match="1 unreadable image"):
        load_samples(demo_copy, verify_images=True)
    assert sorted(checked) == sorted([bad, touched])


def test_the_image_caches_see_a_rewrite_that_keeps_size_and_modification_time(demo_copy):
    import json

    import hardmine.data.images as images
    from hardmine.engine.datasets import DecodedImages

    table, _ = load_samples(demo_copy, verify_images=True)
    path = table["path"][3]
    decoded = DecodedImages()
    decoded.budget = 10**9
    before = np.asarray(decoded.get(path, 24))
    info = os.stat(path)
    other = table["path"][4]
    garbage = (Path(other).read_bytes() * 3)[: info.st_size]  # another picture cut to the same size
    Path(path).write_bytes(garbage)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))  # the old modification time put back
    assert os.stat(path).st_size == info.st_size and os.stat(path).st_mtime_ns == info.st_mtime_ns
    with pytest.raises(DataError, match=f"1 unreadable image.*{path}"):  # check-data decodes it again
        load_samples(demo_copy, verify_images=True)
    with pytest.raises(DataError):
        decoded.get(path, 24)  # the decoded-image cache does not hand back the old picture
    assert before.shape == (24, 24, 3)
    # a cache entry forged for a bad file, or a damaged cache file, is not trusted
    cache = images.verified_cache_path(demo_copy)
    saved = json.loads(cache.read_text())
    saved["verified"][path] = images.file_stamp(path)
    cache.write_text(json.dumps(saved))
    with pytest.raises(DataError, match=f"1 unreadable image.*{path}"):
        load_samples(demo_copy, verify_images=True)


def test_class_without_samples(demo_copy):
    with pytest.raises(DataError, match=r"positive class \(bcc\) has no samples"):
        load_samples(demo_copy, positive="bcc")
    meta = pd.read_csv(demo_copy / "HAM10000_metadata.csv")
    meta["dx"] = "mel"
    meta.to_csv(demo_copy / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match=r"negative class \(nv\) has no samples"):
        load_samples(demo_copy)


def test_image_id_outside_root_refused(demo_copy, tmp_path):
    meta = pd.read_csv(demo_copy / "HAM10000_metadata.csv")
    _write_image(tmp_path / "secret.jpg")
    meta.loc[0, "image_id"] = "../secret"
    meta.to_csv(demo_copy / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match="outside the data root"):
        load_samples(demo_copy)


def test_manifest_path_outside_root_refused(tmp_path):
    _write_image(tmp_path / "outside.png")
    root = tmp_path / "data"
    _write_image(root / "a.png")
    pd.DataFrame({"path": ["a.png", "../outside.png"], "label": [0, 1]}).to_csv(root / "manifest.csv", index=False)
    with pytest.raises(DataError, match="row 3: path '../outside.png' resolves outside the data root"):
        load_samples(root)


def test_cli_bad_input_is_one_line_no_traceback(demo_copy):
    (demo_copy / "HAM10000_metadata.csv").unlink()
    (demo_copy / "planted.csv").unlink()
    result = runner.invoke(app, ["check-data", str(demo_copy), "--source", "ham10000"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "metadata file" in lines[0]


def test_cli_check_data_summary(demo_dir):
    result = runner.invoke(app, ["check-data", str(demo_dir)])
    assert result.exit_code == 0, result.output
    words = ("ham10000", "mel", "nv", "train", "val", "test", "positive_rate", "unreadable files: none", "(70/15/15)")
    for word in words:
        assert word in result.output


def test_cli_check_data_skip_bad_reports(demo_copy):
    table, _ = load_samples(demo_copy)
    open(table["path"][0], "wb").write(b"not a jpeg")
    result = runner.invoke(app, ["check-data", str(demo_copy)])
    assert result.exit_code == 2 and "--skip-bad" in result.output
    result = runner.invoke(app, ["check-data", str(demo_copy), "--skip-bad"])
    assert result.exit_code == 0 and "skipped 1 unreadable" in result.output


# --------------------------------------------------------------------------- splits


def test_grouped_split_no_leakage_and_stratified(demo_dir):
    table, _ = load_samples(demo_dir)
    split = grouped_split(table["label"], table["group"], seed=1)
    per_group = pd.Series(split).groupby(table["group"]).nunique()
    assert (per_group == 1).all(), "a group appears in two splits"
    rate = table["label"].mean()
    for name, frac in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        part = table[split == name]
        assert abs(len(part) / len(table) - frac) < 0.05
        assert abs(part["label"].mean() - rate) < 0.04
    assert (grouped_split(table["label"], table["group"], seed=1) == split).all()
    assert (grouped_split(table["label"], table["group"], seed=2) != split).any()


def test_split_saved_and_reused(demo_dir, tmp_path):
    table, _ = load_samples(demo_dir)
    path = tmp_path / "split.csv"
    first = make_or_load_split(table, path, seed=0)
    saved = pd.read_csv(path)
    assert list(saved.columns) == ["id", "group", "split"]
    again = make_or_load_split(table, path, seed=99)  # seed ignored: the saved split wins
    assert (first == again).all()
    extra = pd.concat([table, table.iloc[:1].assign(id="new-image")], ignore_index=True)
    with pytest.raises(DataError, match="1 sample.* have no split, first 'new-image'"):
        make_or_load_split(extra, path)


def test_dataset_returns_image_label_index(demo_dir):
    table, _ = load_samples(demo_dir)
    ds = ImageDataset(table, image_size=24, train=True)
    image, label, index = ds[7]
    assert tuple(image.shape) == (3, 24, 24)
    assert label == table["label"][7] and index == 7
    assert not np.allclose(ds[7][0].numpy(), ds[7][0].numpy())  # training draws are augmented afresh
    plain = ImageDataset(table, image_size=24, train=False)
    assert np.array_equal(plain[7][0].numpy(), plain[7][0].numpy())  # evaluation is not


# --------------------------------------------------------------------------- demo data


def test_demo_data_deterministic_with_planted_sidecar(tmp_path):
    from hardmine.data.synth import generate_demo

    a = generate_demo(tmp_path / "a", n=120, size=24, seed=5)
    b = generate_demo(tmp_path / "b", n=120, size=24, seed=5)
    c = generate_demo(tmp_path / "c", n=120, size=24, seed=6)
    assert a.equals(b) and not a.equals(c)
    first = a["image_id"][0]
    part = "HAM10000_images_part_1"
    assert (tmp_path / "a" / part / f"{first}.jpg").read_bytes() == (
        tmp_path / "b" / part / f"{first}.jpg"
    ).read_bytes()
    assert list(a.columns) == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "pigment"]
    amelanotic = set(pd.read_csv(tmp_path / "a" / "planted.csv").query("detail == 'amelanotic'")["image_id"])
    assert (a.loc[a["image_id"].isin(amelanotic), "pigment"] == "pink").all()
    assert a.groupby("lesion_id").size().between(1, 4).all()
    assert abs((a["dx"] == "mel").mean() - 0.10) < 0.05
    planted = pd.read_csv(tmp_path / "a" / "planted.csv")
    assert set(planted["kind"]) == {"hard", "flipped"}
    assert set(planted["image_id"]) <= set(a["image_id"])
    n_flipped = (planted["kind"] == "flipped").sum()
    assert 1 <= n_flipped <= 0.05 * len(a)
    # flips are whole lesions: every image of a flipped lesion is flipped
    flipped_lesions = a[a.image_id.isin(planted[planted.kind == "flipped"].image_id)].lesion_id.unique()
    assert set(a[a.lesion_id.isin(flipped_lesions)].image_id) <= set(planted[planted.kind == "flipped"].image_id)
    # a label error is never a histopathology-confirmed diagnosis (HAM10000's trusted rule relies on it)
    assert (a.loc[a.lesion_id.isin(flipped_lesions), "dx_type"] != "histo").all()
    assert (a["dx_type"] == "histo").any()


def test_demo_data_cli(tmp_path):
    result = runner.invoke(app, ["demo-data", str(tmp_path / "d"), "--images", "60", "--size", "24", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "d" / "HAM10000_metadata.csv")) == 60
    result = runner.invoke(app, ["demo-data", str(tmp_path / "e"), "--images", "5"])
    assert result.exit_code == 2 and "at least 20" in result.output
    metadata = (tmp_path / "d" / "HAM10000_metadata.csv").read_bytes()
    result = runner.invoke(app, ["demo-data", str(tmp_path / "d"), "--images", "80", "--size", "24"])
    assert result.exit_code == 2 and "already holds files" in result.output and "--overwrite" in result.output
    assert (tmp_path / "d" / "HAM10000_metadata.csv").read_bytes() == metadata  # nothing replaced silently
    result = runner.invoke(app, ["demo-data", str(tmp_path / "d"), "--images", "80", "--size", "24", "--overwrite"])
    assert result.exit_code == 0 and len(pd.read_csv(tmp_path / "d" / "HAM10000_metadata.csv")) == 80
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["demo-data", str(tmp_path / "mine"), "--overwrite"])
    assert result.exit_code == 2 and "is not a demo set" in result.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    result = runner.invoke(app, ["demo-data", str(tmp_path / "f"), "--n", "60"])  # --n counts rounds elsewhere
    assert result.exit_code == 2 and "demo-data counts images with --images" in result.output
    assert not (tmp_path / "f").exists()


def test_version_and_help():
    assert "hardmine 0.1.0" in runner.invoke(app, ["--version"]).output
    names = sorted(c.name for c in app.registered_commands)
    # every command is in README's command table, and every command there exists
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("## Commands", 1)[1].split("\n\n", 2)[1]
    assert sorted(set(re.findall(r"^\| `hardmine ([a-z-]+)", table, re.M))) == names
    for cmd in names:
        result = runner.invoke(app, [cmd, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, cmd
    round_help = runner.invoke(app, ["round", "--help-all"], env={"COLUMNS": "200"}).output
    for panel in ("Data", "Model and training", "Threshold", "Mining", "Scoring", "Rounds"):
        assert panel in round_help, panel
    for choices in ("finetune|retrain|head", "ce|weighted-ce|focal", "dermoscopy|light|none"):
        assert choices in round_help, choices  # typer lists the valid values and completes them
    # at 80 columns: no line wider, flags without a type, arguments in capitals
    narrow = runner.invoke(app, ["gallery", "--help"], env={"COLUMNS": "80"}).output
    assert max(map(len, narrow.splitlines())) <= 80 and "<bool>" not in narrow
    assert "RUN_DIR" in narrow and "run_dir" not in narrow and "--suspicion-threshold" in runner.invoke(
        app, ["round", "--help"], env={"COLUMNS": "80"}).output


def test_a_data_source_is_one_file_and_one_registry_line(tmp_path, monkeypatch):
    from toy_source import GROUND_TRUTH, Isic2020

    from hardmine.data.sources import DATA_SOURCES
    from hardmine.record.config import DataConfig

    rows = []
    for i in range(12):
        _write_image(tmp_path / "train" / f"ISIC_{i:07d}.jpg", (30 + 10 * i, 80, 60))
        rows.append({"image_name": f"ISIC_{i:07d}", "patient_id": f"IP_{i // 2}", "target": int(i < 4)})
    pd.DataFrame(rows).to_csv(tmp_path / GROUND_TRUTH, index=False)
    assert detect_source(tmp_path) == "folders"  # unknown, the layout reads as one class folder
    monkeypatch.setitem(DATA_SOURCES, "isic2020", Isic2020)  # the registry line
    DataConfig(data=str(tmp_path), source="isic2020").validate()
    assert detect_source(tmp_path) == "isic2020"
    table, report = load_samples(tmp_path, verify_images=True)
    assert report.source == "isic2020" and report.positive == ["1"] and report.negative == ["0"]
    assert table["label"].sum() == 4 and table["group"].nunique() == 6  # patients keep their images together
    assert table["id"].str.startswith("ISIC_").all() and table["path"].map(os.path.isfile).all()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.assign(split=["train", "val", "test", "test"]), "lesion 'L1' is in more than one split"),
    (lambda s: s.assign(split=["train", "train", "foo", "test"]), "unknown split value(s) foo; expected train"),
    (lambda s: pd.concat([s, s.iloc[[0]]]), "sample 'a' is listed more than once"),
])  # fmt: skip
def test_a_hand_edited_split_is_refused_before_anything_trains(tmp_path, edit, message):
    from hardmine.core.errors import DataError
    from hardmine.data.splits import make_or_load_split

    table = pd.DataFrame({"id": ["a", "b", "c", "d"], "group": ["L0", "L1", "L1", "L2"], "label": [1, 0, 0, 1]})
    split = pd.DataFrame({"id": table["id"], "group": table["group"], "split": ["train", "val", "val", "test"]})
    edit(split).to_csv(tmp_path / "split.csv", index=False)
    with pytest.raises(DataError, match=re.escape(message)):
        make_or_load_split(table, tmp_path / "split.csv")


def test_split_from_a_run_of_other_data_with_the_same_ids_is_refused(tmp_path):
    from hardmine.data.splits import make_split

    ids = [f"ISIC_{i:04d}" for i in range(80)]
    table = pd.DataFrame({"id": ids, "group": [f"L{i // 2}" for i in range(80)],
                          "label": [int((i // 2) % 3 == 0) for i in range(80)]})  # fmt: skip
    # the earlier run's data held the same ids in other lesions: image 0 and image 1 went to different splits
    earlier = pd.DataFrame({"id": ids, "group": [f"M{i}" for i in range(80)],
                            "split": ["train", "test", "val", "train"] * 20})  # fmt: skip
    earlier.to_csv(tmp_path / "split.csv", index=False)
    with pytest.raises(DataError, match="lesion 'L0' would sit in test and train .*made on other data"):
        make_split(table, split_from=tmp_path / "split.csv")
    earlier["split"] = [["train", "val", "test", "train"][(i // 2) % 4] for i in range(80)]  # lesions kept whole
    earlier.to_csv(tmp_path / "split.csv", index=False)
    assert make_split(table, split_from=tmp_path / "split.csv").groupby(table["group"]).nunique().max() == 1
