"""Gallery decisions applied to a new manifest that the next run reads; the user's metadata untouched."""

import json
import shlex

import pandas as pd
import pytest
from typer.testing import CliRunner

from hardmine.cli import app
from hardmine.core.errors import DataError
from hardmine.data.sources import load_samples
from hardmine.views.relabel import apply_decisions

runner = CliRunner()


@pytest.fixture
def trained(demo_copy, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(demo_copy), "--model", "tiny",
            "--out", str(run), "--epochs", "1", "--image-size", "24",
            "--device", "cpu", "--workers", "0"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    return run, demo_copy


def test_relabel_round_trip_feeds_the_next_run(trained, tmp_path):
    run, data = trained
    metadata_before = (data / "HAM10000_metadata.csv").read_bytes()
    samples = pd.read_csv(run / "samples.csv", dtype=str)
    mel, nv = samples[samples.class_name == "mel"].id.iloc[0], samples[samples.class_name == "nv"].id.iloc[:2]
    # the image column spelled `id`, as `hardmine label` takes it too
    decisions = pd.DataFrame({"id": [mel, nv.iloc[0], nv.iloc[1]], "current_label": ["mel", "nv", "nv"],
                              "decision": ["relabel", "exclude", "keep"], "new_label": ["nv", "", ""]})  # fmt: skip
    decisions.to_csv(tmp_path / "decisions.csv", index=False)
    result = runner.invoke(app, ["relabel", str(run), str(tmp_path / "decisions.csv")])
    assert result.exit_code == 0, result.output
    assert "1 relabelled (1 whole lesion(s)), 1 excluded, 2 reviewed" in result.output
    assert "--positive mel --negative nv" in result.output
    manifest = data / "relabelled-run.csv"
    table, _ = load_samples(manifest, positive="mel", negative="nv")
    by_path = {p: row for p, row in zip(table["path"], table.itertuples(), strict=True)}
    original = samples.set_index("id")
    assert by_path[original.loc[mel, "path"]].class_name == "nv" and by_path[original.loc[mel, "path"]].label == 0
    assert by_path[original.loc[mel, "path"]].relabelled_from == "mel"
    assert original.loc[nv.iloc[0], "path"] not in by_path and original.loc[nv.iloc[1], "path"] in by_path
    assert len(table) == len(samples) - 1 and set(table["group"]) <= set(samples["group"])
    assert "dx_type" in table.columns  # metadata travels with the images
    assert (data / "HAM10000_metadata.csv").read_bytes() == metadata_before


@pytest.mark.parametrize(("rows", "expected"), [
    ("image_id,decision,new_label\nnot-an-image,relabel,nv\n", "row 2: image_id 'not-an-image' is not in"),
    ("image_id,decision,new_label\n{id},flip,nv\n", "row 2: decision 'flip' is not valid"),
    ("image_id,decision,new_label\n{id},relabel,melanoma\n", "row 2: new_label 'melanoma' is not a class"),
    ("image_id,decision,new_label\n{id},exclude,\n{id},keep,\n", "has more than one decision"),
    ("what\nx\n", "column(s) image_id, decision missing"),
    ("id,what\nx,y\n", "column(s) decision missing; expected image_id (or id), decision"),
    ("image_id,current_label,decision,new_label\n{id},{other},relabel,{other}\n", "but the run labels it"),
])  # fmt: skip
def test_bad_decisions_are_refused_naming_the_row(trained, tmp_path, rows, expected):
    run, data = trained
    first = pd.read_csv(run / "samples.csv", dtype=str).iloc[0]
    other = "nv" if first["class_name"] == "mel" else "mel"
    (tmp_path / "d.csv").write_text(rows.format(id=first["id"], other=other))
    with pytest.raises(DataError, match=expected.replace("(", "\\(").replace(")", "\\)")):
        apply_decisions(run, tmp_path / "d.csv")
    assert not (data / "relabelled-run.csv").exists()


@pytest.mark.parametrize("target", ["HAM10000_metadata.csv", "planted.csv", "HAM10000_images_part_1/{image}"])
def test_attack_relabel_never_replaces_a_file_it_did_not_write(trained, tmp_path, target):
    """Attack (item 2): ``relabel RUN dec.csv --out DATA/HAM10000_metadata.csv`` exited 0 and replaced the
    user's metadata (the file the run was trained on); so did an ``--out`` naming an image or ``planted.csv``."""
    run, data = trained
    (tmp_path / "d.csv").write_text("image_id,decision,new_label\n")
    image = next((data / "HAM10000_images_part_1").glob("*.jpg")).name
    victim = data / target.format(image=image)
    before = victim.read_bytes()
    result = runner.invoke(app, ["relabel", str(run), str(tmp_path / "d.csv"), "--out", str(victim)])
    assert result.exit_code == 2 and "is not a manifest `hardmine relabel` wrote" in result.stderr
    assert victim.read_bytes() == before
    ours = data / "relabelled-run.csv"  # its own earlier manifest may be written again
    assert runner.invoke(app, ["relabel", str(run), str(tmp_path / "d.csv")]).exit_code == 0
    assert runner.invoke(app, ["relabel", str(run), str(tmp_path / "d.csv"), "--out", str(ours)]).exit_code == 0
    # a user's file that only looks like one (the same header, other images) is not replaced either
    look_alike = data / "my-notes.csv"
    look_alike.write_text("path,label,group,relabelled_from,id,reviewed\nmine.jpg,mel,L1,,MY_OWN_1,\n")
    result = runner.invoke(app, ["relabel", str(run), str(tmp_path / "d.csv"), "--out", str(look_alike)])
    assert result.exit_code == 2 and "wrote for this run" in result.stderr
    assert "MY_OWN_1" in look_alike.read_text()
    look_alike.unlink()


def test_guarded_values_from_the_gallery_download_read_back_as_written(tmp_path):
    # the page writes '-1 for a label -1 and '-scan0 for an id -scan0 (a spreadsheet would run them as formulas)
    from hardmine.views.relabel import read_decisions

    samples = pd.DataFrame({"id": ["-scan0", "=scan1", "scan2"], "class_name": ["-1", "1", "1"], "group": list("abc")})
    (tmp_path / "d.csv").write_text('image_id,current_label,decision,new_label\n"\'-scan0","\'-1","relabel","1"\n'
                                    '"\'=scan1","1","relabel","\'-1"\n"scan2","1","exclude",""\n')  # fmt: skip
    chosen = read_decisions(tmp_path / "d.csv", samples)
    assert chosen["image_id"].tolist() == ["-scan0", "=scan1", "scan2"]
    assert chosen["new_label"].tolist() == ["1", "-1", ""]


def test_a_manifest_left_with_one_class_is_flagged(trained, tmp_path):
    run, _ = trained
    samples = pd.read_csv(run / "samples.csv", dtype=str)
    mel = samples[samples.class_name == "mel"]
    rows = "\n".join(f"{i},mel,relabel,nv" for i in mel["id"])
    (tmp_path / "d.csv").write_text(f"image_id,current_label,decision,new_label\n{rows}\n")
    result = runner.invoke(app, ["relabel", str(run), str(tmp_path / "d.csv")])
    assert result.exit_code == 0 and "holds one class only (nv)" in result.stderr


def _lesion_with(samples, class_name, images=2):
    counts = samples[samples.class_name == class_name].groupby("group")["id"].apply(list)
    return counts[counts.map(len) >= images].iloc[0]


def test_relabel_applies_to_the_lesion_and_a_mixed_lesion_is_refused(trained, tmp_path):
    run, data = trained
    samples = pd.read_csv(run / "samples.csv", dtype=str)
    first, second = _lesion_with(samples, "mel")[:2]
    (tmp_path / "mixed.csv").write_text(f"image_id,decision,new_label\n{first},relabel,nv\n{second},keep,\n")
    with pytest.raises(DataError, match=f"lesion .* would have two diagnoses: {first} relabelled nv, {second} kept"):
        apply_decisions(run, tmp_path / "mixed.csv")
    (tmp_path / "d.csv").write_text(f"image_id,decision,new_label\n{first},relabel,nv\n")
    path, counts = apply_decisions(run, tmp_path / "d.csv")
    manifest = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("id")
    lesion = samples.loc[samples.id == first, "group"].iloc[0]
    mates = samples.loc[samples.group == lesion, "id"]
    assert (manifest.loc[mates, "label"] == "nv").all() and counts["relabelled"] == len(mates) >= 2
    assert (manifest.loc[mates, "reviewed"] == "yes").all() and (manifest["reviewed"] == "yes").sum() == len(mates)
    # the next run reads it (a lesion of one class), with the run's own ids
    table, _ = load_samples(path, positive="mel", negative="nv")
    assert set(table["id"]) == set(samples["id"])


def test_the_review_loop_closes_on_the_same_split(trained, tmp_path):
    """relabel (a keep recorded as reviewed) -> a round on the earlier split -> before against after on the
    same test lesions."""
    run, data = trained
    samples = pd.read_csv(run / "samples.csv", dtype=str)
    split = pd.read_csv(run / "split.csv", dtype=str)
    train_ids = set(split.loc[split.split == "train", "id"])
    mel = next(i for i in _lesion_with(samples, "mel", 1) if i in train_ids)
    nv = next(i for i in samples.loc[samples.class_name == "nv", "id"] if i in train_ids)
    (tmp_path / "d.csv").write_text(f"image_id,decision,new_label\n{mel},relabel,nv\n{nv},keep,\n")
    result = runner.invoke(app, ["relabel", str(run), str(tmp_path / "d.csv")])
    assert result.exit_code == 0, result.output
    # the whole next command, the run's recipe through its saved configuration: run as printed
    printed = next(line for line in result.output.splitlines() if line.startswith("next: "))
    args = shlex.split(printed.removeprefix("next: hardmine "))
    assert "..." not in args and args[args.index("--config") + 1] == str(run / "config.json")
    assert args[args.index("--split-from") + 1] == str(run) and "reviewed=yes" in args
    after = tmp_path / "after"
    args[args.index("--out") + 1] = str(after)  # beside this test's files, not the shared run's
    result = runner.invoke(app, [*args, "--n", "0"])
    assert result.exit_code == 0, result.output
    new_split = pd.read_csv(after / "split.csv", dtype=str).set_index("id")["split"]
    assert new_split.to_dict() == split.set_index("id")["split"].to_dict()  # no image moved
    before = json.loads((after / "report.json").read_text())["before"]
    assert before["images"] == int((split.split == "test").sum()) and before["relabelled"] == 0
    assert {"before", "after", "low", "high", "verdict"} <= set(before["sens_at_spec90"])
    printed = " ".join(result.output.split())  # the console wraps long lines where it likes
    assert "before (" in printed and "against after, on the same" in printed
    assert before["recipe_changes"] == [] and "trained differently" not in printed  # the same recipe, as printed
    assert "Before and after the review" in (after / "report.html").read_text()
    # another recipe: the difference mixes it in with the label fixes, and both pages say so
    other = tmp_path / "other"
    args[args.index("--out") + 1] = str(other)
    result = runner.invoke(app, [*args, "--n", "0", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    changes = json.loads((other / "report.json").read_text())["before"]["recipe_changes"]
    assert changes == ["train.epochs: 1 then, 2 now"]
    assert "trained differently (train.epochs: 1 then, 2 now)" in " ".join(result.output.split())
    assert "trained differently (train.epochs: 1 then, 2 now)" in (other / "report.html").read_text()
    # the reviewed images are trusted: never quarantined
    mined = pd.read_csv(after / "round-000" / "mined.csv", dtype=str)
    assert not set(mined.loc[mined.role == "quarantined", "id"]) & {mel, nv}
