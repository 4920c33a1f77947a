"""Acquisition functions against hand-checked pools: what each must pick, and the rules every batch keeps."""

import shutil

import numpy as np
import pytest

from hardmine.core.acquisition import ACQUISITION, acquire
from hardmine.core.errors import HardmineError
from hardmine.core.index import normalise


def _circle(degrees) -> np.ndarray:
    radians = np.radians(np.asarray(degrees, dtype=float))
    return np.column_stack([np.cos(radians), np.sin(radians)]).astype(np.float32)


def test_uncertainty_and_positive_rank_by_hand():
    prob = np.array([0.05, 0.28, 0.31, 0.9, 0.5])
    emb = _circle([0, 60, 120, 180, 240])
    rows, reasons = acquire("margin", prob, emb, 2, threshold=0.3)  # nearest the tuned threshold, not 0.5
    assert rows.tolist() == [2, 1] and "at threshold 0.30" in reasons[0]
    assert acquire("entropy", prob, emb, 2, threshold=0.3)[0].tolist() == [2, 1]
    assert acquire("positive", prob, emb, 2)[0].tolist() == [3, 4]
    picked = acquire("random", prob, emb, 5, seed=1)[0].tolist()
    assert sorted(picked) == [0, 1, 2, 3, 4] and picked == acquire("random", prob, emb, 5, seed=1)[0].tolist()


def test_coreset_picks_the_farthest_point_then_the_next_farthest():
    emb = _circle([0, 10, 20, 90, 180])
    labeled = _circle([0])
    rows, reasons = acquire("coreset", np.full(5, 0.5), emb, 2, labeled_embeddings=labeled, labeled_labels=[1])
    assert rows.tolist() == [4, 3]  # 180 degrees from the labeled image, then 90 from both it and the pick
    assert "cosine distance 2.00" in reasons[0]


def test_seals_never_proposes_outside_the_labeled_positives_neighbourhood():
    rng = np.random.default_rng(0)
    near = normalise(np.array([1.0, 0, 0]) + 0.05 * rng.normal(size=(20, 3)))
    far = normalise(np.array([-1.0, 0, 0]) + 0.05 * rng.normal(size=(80, 3)))
    emb = np.vstack([near, far]).astype(np.float32)
    prob = np.concatenate([np.full(20, 0.9), np.full(80, 0.5)])  # the far images are the most uncertain
    rows, _ = acquire("seals", prob, emb, 30, labeled_embeddings=np.array([[1.0, 0, 0]], np.float32),
                      labeled_labels=[1], k=8)  # fmt: skip
    assert len(rows) == 8 and set(rows) <= set(range(20))  # short of the budget rather than outside the pool
    with pytest.raises(HardmineError, match="needs labeled positives"):
        acquire("seals", prob, emb, 5)


def test_hardmine_keeps_its_positive_quota_skips_duplicates_and_spreads_the_uncertain_picks():
    # pool on a circle: four likely positives (one a second view of another), then uncertain images in two
    # tight clumps and one alone, and certain negatives; the labeled image sits at 0 degrees
    degrees = [100, 100, 140, 160, 179, 180, 181, 270, 271, 300, *range(1, 11)]
    emb = _circle(degrees)
    prob = np.array([0.99, 0.98, 0.97, 0.96, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, *[0.01] * 10])
    rows, reasons = acquire("hardmine", prob, emb, 6, threshold=0.5, labeled_embeddings=_circle([0]),
                            labeled_labels=[1], positive_share=0.5)  # fmt: skip
    assert rows[:3].tolist() == [0, 2, 3] and 1 not in rows  # the quota, without the duplicate view
    assert all(r.startswith("positive quota") for r in reasons[:3])
    # then the uncertain, each the farthest from everything labeled (0) or picked (100-160) so far: the
    # clump at 270 (90 degrees from 0), then 300 (30 from 270), then the clump at 180 (20 from 160);
    # never two of one clump
    assert rows[3] in (7, 8) and rows[4] == 9 and rows[5] in (4, 5, 6)
    assert all(r.startswith("uncertain: P(pos) 0.50 at threshold 0.50, cosine distance") for r in reasons[3:])


def test_typical_takes_the_densest_image_of_each_cluster_no_label_covers():
    rng = np.random.default_rng(3)
    centres = _circle([0, 90, 180, 270])
    clusters = [normalise(c + 0.03 * rng.normal(size=(25, 2))) for c in centres]
    outliers = _circle([45, 135, 225, 315])  # alone between the clusters: never typical of anything
    emb = np.vstack([*clusters, outliers]).astype(np.float32)
    labeled = centres[:1]  # the cluster at 0 degrees is covered by a label
    rows, reasons = acquire("typical", np.full(len(emb), 0.5), emb, 3, labeled_embeddings=labeled,
                            labeled_labels=[1])  # fmt: skip
    picked_clusters = {int(r) // 25 for r in rows}
    assert picked_clusters == {1, 2, 3}  # one image from each uncovered cluster, none from the covered one
    for r in rows:  # the densest: closer to its cluster's centre than most of its cluster
        own = emb[(int(r) // 25) * 25:(int(r) // 25 + 1) * 25]
        distance = 1 - own @ centres[int(r) // 25]
        assert 1 - emb[r] @ centres[int(r) // 25] <= np.quantile(distance, 0.5)
    assert all("no labeled image" in reason for reason in reasons)


def test_balanced_keeps_the_batch_half_called_positive_on_an_imbalanced_pool():
    rng = np.random.default_rng(4)
    prob = np.concatenate([rng.uniform(0.31, 0.9, 10), rng.uniform(0.0, 0.29, 190)])  # 5% called positive
    emb = normalise(rng.normal(size=(200, 8))).astype(np.float32)
    rows, reasons = acquire("balanced", prob, emb, 10, threshold=0.3)
    called = prob[rows] >= 0.3
    assert called.sum() == 5 and sum(r.startswith("balanced, called positive") for r in reasons) == 5
    assert prob[rows][called].max() <= np.sort(prob[:10])[5]  # the positives nearest the threshold
    assert prob[rows][~called].min() >= np.sort(prob[10:])[-6]  # the negatives nearest it
    margin_rows, _ = acquire("margin", prob, emb, 10, threshold=0.3)
    assert (prob[margin_rows] >= 0.3).sum() < 5  # what plain uncertainty would have asked


@pytest.mark.parametrize("name", sorted(ACQUISITION))
def test_a_lesions_images_are_asked_together_and_every_pick_says_why(name):
    rng = np.random.default_rng(2)
    emb = normalise(rng.normal(size=(60, 6))).astype(np.float32)
    prob = rng.uniform(0, 1, 60)
    groups = np.arange(60) // 3  # three images per lesion
    labeled = normalise(rng.normal(size=(5, 6))).astype(np.float32)
    options = {"k": 20} if name == "seals" else {}  # enough neighbours of the two positives to fill the batch
    rows, reasons = acquire(name, prob, emb, 9, groups=groups, labeled_embeddings=labeled,
                            labeled_labels=[1, 0, 1, 0, 0], **options)  # fmt: skip
    assert len(rows) == 9 and len(set(rows.tolist())) == 9 and all(reasons)
    for lesion in set(groups[rows]):
        assert set(np.flatnonzero(groups == lesion)) <= set(rows.tolist())


def test_a_short_batch_says_why_and_k_center_fills_a_small_pool():
    from hardmine.core.errors import HardmineWarning

    emb = _circle([0, 1, 2, 90, 180, 270])  # three near-duplicates at 0 degrees
    prob = np.array([0.9, 0.9, 0.9, 0.5, 0.45, 0.55])
    with pytest.warns(HardmineWarning, match="picked 4 of the 6 images asked; .*nearly identical.*2 of the 2 left"):
        rows, _ = acquire("hardmine", prob, emb, 6)
    assert sorted(rows.tolist()) == [0, 3, 4, 5]  # the quota's one, then every distinct uncertain image
    rows, _ = acquire("hardmine", prob[3:], emb[3:], 3)  # no duplicates: the whole small pool, no warning
    assert sorted(rows.tolist()) == [0, 1, 2]


def test_bad_input_is_one_clear_error():
    emb = _circle([0, 90, 180])
    with pytest.raises(HardmineError, match="acquisition 'margin' takes no option 'k'; its options: none"):
        acquire("margin", [0.1, 0.5, 0.9], emb, 1, k=3)
    with pytest.raises(HardmineError, match="hardmine: positive_share=1.5 must be in"):
        acquire("hardmine", [0.1, 0.5, 0.9], emb, 1, positive_share=1.5)
    with pytest.raises(HardmineError, match="budget 4 must be between 1 and the pool's 3 images"):
        acquire("margin", [0.1, 0.5, 0.9], emb, 4)
    with pytest.raises(HardmineError, match="acquisition 'uncertain' is not valid; expected one of random"):
        acquire("uncertain", [0.1, 0.5, 0.9], emb, 1)
    with pytest.raises(HardmineError, match="pool embeddings have shape"):
        acquire("margin", [0.1, 0.5], emb, 1)


def test_a_toy_acquisition_with_an_option_of_its_own_is_one_file_and_one_registry_line(monkeypatch, planted_world):
    from toy_acquisition import above

    from hardmine import HardMiner
    from hardmine.core.acquisition import function_options, parse_options

    monkeypatch.setitem(ACQUISITION, "above", above)  # the registry line
    prob = np.array([0.95, 0.2, 0.85, 0.6, 0.1, 0.9])
    emb = normalise(np.random.default_rng(0).normal(size=(6, 4))).astype(np.float32)
    assert function_options("above") == {"floor": 0.5}
    rows, reasons = acquire("above", prob, emb, 5, floor=0.8)
    assert rows.tolist() == [0, 5, 2] and reasons[0] == "P(pos) 0.95 above the floor 0.80"
    assert acquire("above", prob, emb, 5)[0].tolist() == [0, 5, 2, 3]  # the default floor
    assert parse_options("above", ["floor=0.8"]) == {"floor": 0.8}
    with pytest.raises(HardmineError, match="acquisition 'above' takes no option 'flor'; its options: floor=0.5"):
        acquire("above", prob, emb, 5, flor=0.8)
    with pytest.raises(HardmineError, match="--method-option floor='high' is not valid; expected float"):
        parse_options("above", ["floor=high"])
    with pytest.raises(HardmineError, match="above: floor=2.0 must be a probability"):
        acquire("above", prob, emb, 5, floor=2.0)
    # the library's query passes the option on
    labels, p, e, groups, _, _ = planted_world(n=300)
    miner = HardMiner(labels[:200], groups=groups[:200])
    miner.update(p[:200], e[:200])
    picked = miner.query(p[200:], e[200:], 10, method="above", floor=0.7)
    assert len(picked) and (picked["prob_pos"] >= 0.7).all()


def test_acquire_asserts_what_a_function_returns(monkeypatch):
    emb = _circle([0, 90, 180, 270])
    prob = [0.1, 0.5, 0.9, 0.3]
    for name, picks, what in (
        ("twice", (np.array([1, 1]), ["a", "b"]), "a row picked twice"),
        ("outside", (np.array([7]), ["a"]), "a row outside the pool of 4 images"),
        ("greedy", (np.array([0, 1, 2]), ["a", "b", "c"]), "3 picks for a budget of 2"),
        ("mute", (np.array([0, 1]), ["a", ""]), "a pick without a reason"),
    ):
        monkeypatch.setitem(ACQUISITION, name, lambda pool, budget, picks=picks: picks)
        with pytest.raises(HardmineError, match=f"acquisition '{name}' returned {what}"):
            acquire(name, prob, emb, 2)


def test_hard_miner_queries_the_pool_in_its_training_space(planted_world):
    from hardmine import HardMiner

    labels, prob, emb, groups, _, _ = planted_world(n=600)
    train, pool = np.arange(400), np.arange(400, 600)
    miner = HardMiner(labels[train], groups=groups[train])
    miner.update(prob[train], emb[train])
    picked = miner.query(prob[pool], emb[pool], 20, pool_ids=[f"P{i}" for i in pool], pool_groups=groups[pool],
                         positive_share=0.5)  # fmt: skip
    assert len(picked) == 20 and picked["id"].str.startswith("P").all() and picked["reason"].str.len().min() > 0
    rows = picked["id"].str[1:].astype(int).to_numpy()
    quota = rows[picked["reason"].str.startswith("positive quota").to_numpy()]
    assert len(quota) >= 5 and set(quota) <= set(pool[np.argsort(-prob[pool])[:15]])  # the most likely positives
    assert picked["reason"].str.startswith("same lesion as").sum() == len(rows) - len(set(groups[rows]))
    for lesion in set(groups[rows]):  # lesions asked whole
        assert set(np.flatnonzero(groups[pool] == lesion) + 400) <= set(rows)
    positives_found = labels[rows].mean()
    assert positives_found >= 2 * labels[pool].mean()  # far more melanomas per label than the pool's rate
    random = miner.query(prob[pool], emb[pool], 20, method="random")
    assert set(random.columns) == {"id", "prob_pos", "reason"} and (random["reason"] == "random").all()


def test_query_model_reads_unlabeled_batches_of_a_plain_pytorch_model():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from hardmine.engine.miner import HardMiner

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    train_x, pool_x = torch.randn(40, 4), torch.randn(30, 4)
    miner = HardMiner(np.r_[np.ones(8, int), np.zeros(32, int)])
    miner.score(model, DataLoader(TensorDataset(train_x, torch.as_tensor(miner.labels)), batch_size=16))
    picked = miner.query_model(model, DataLoader(TensorDataset(pool_x), batch_size=7), 5, method="positive")
    with torch.no_grad():
        prob = torch.softmax(model(pool_x), dim=1)[:, 1].numpy()
    assert picked["id"].tolist() == np.argsort(-prob, kind="stable")[:5].tolist()  # (x,) batches, in loader order
    assert np.allclose(picked["prob_pos"], np.sort(prob)[::-1][:5], atol=1e-6)


def test_query_command_picks_from_the_pool_and_refuses_bad_pools(demo_dir, tmp_path):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from hardmine.cli import app
    from hardmine.data.synth import generate_demo

    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(demo_dir), "--model", "tiny",
                                 "--out", str(run), "--epochs", "1",
                                 "--image-size", "24", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    generate_demo(tmp_path / "unlabeled", n=60, positive_frac=0.2, size=24, seed=9)
    meta = pd.read_csv(tmp_path / "unlabeled" / "HAM10000_metadata.csv")
    paths = {p.stem: p.relative_to(tmp_path / "unlabeled") for p in (tmp_path / "unlabeled").rglob("*.jpg")}
    pool = pd.DataFrame({"path": [str(paths[i]) for i in meta["image_id"]], "id": "POOL_" + meta["image_id"],
                         "group": "PL_" + meta["lesion_id"]})  # fmt: skip
    pool.to_csv(tmp_path / "unlabeled" / "pool.csv", index=False)
    query = ["query", str(run), "--pool", str(tmp_path / "unlabeled" / "pool.csv"), "--budget", "12"]
    result = runner.invoke(app, [*query, "--method-option", "share=1"])
    assert result.exit_code == 2 and "acquisition 'hardmine' takes no option 'share'; its options: positive_share=0.5" \
        in result.output and "Traceback" not in result.output
    assert not (run / "query.csv").exists()
    result = runner.invoke(app, [*query, "--method-option", "positive_share=1"])  # the whole batch: likeliest positives
    assert result.exit_code == 0, result.output
    picked = pd.read_csv(run / "query.csv", keep_default_na=False)
    assert not picked["reason"].str.startswith("uncertain").any()
    assert json.loads((run / "query.json").read_text())["method_options"] == {"positive_share": 1.0}
    assert len(picked) <= 12 and picked["id"].str.startswith("POOL_").all() and picked["reason"].str.len().min() > 0
    for lesion in set(picked["group"]):  # lesions asked whole
        assert set(pool.loc[pool["group"] == lesion, "id"]) <= set(picked["id"])
    result = runner.invoke(app, ["query", str(run), "--pool", str(tmp_path / "unlabeled" / "pool.csv"),
                                 "--budget", "1000"])  # fmt: skip
    # checked before the pool is scored; the first batch's 12 images wait for answers, so 48 are left to ask
    assert result.exit_code == 2
    assert "--budget 1000 must be between 1 and the 48 image(s) the pool holds" in result.output
    assert "12 pool image(s) of open batch(es) 1 wait for answers" in result.output
    labeled = pd.read_csv(run / "samples.csv").iloc[0]  # a labeled image copied into the pool under its id
    shutil.copy(labeled["path"], tmp_path / "unlabeled" / "copy.jpg")
    pd.concat([pool, pd.DataFrame({"path": ["copy.jpg"], "id": [labeled["id"]], "group": ["X"]})]).to_csv(
        tmp_path / "unlabeled" / "mixed.csv", index=False)
    result = runner.invoke(app, ["query", str(run), "--pool", str(tmp_path / "unlabeled" / "mixed.csv"),
                                 "--budget", "5"])  # fmt: skip
    assert result.exit_code == 2 and f"{labeled['id']} (" in result.output
    assert "already in the labeled data" in result.output
    assert pd.read_csv(run / "query.csv", keep_default_na=False).equals(picked)  # the last query is kept


def test_the_active_learning_benchmark_loop_labels_what_each_function_picks(planted_world):
    import runpy
    from pathlib import Path

    registered = dict(ACQUISITION)
    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_active_cheap.py"))
    assert ACQUISITION == registered  # its candidates are its own table: hardmine's registry is left as it was
    labels, _, emb, groups, _, _ = planted_world(n=900, flip_frac=0.0)
    train, val, test = np.arange(600), np.arange(600, 750), np.arange(750, 900)
    start = np.arange(60)
    splits = (emb[train], emb[val], emb[test])
    ys = (labels[train], labels[val], labels[test])
    rows = {name: bench["run_method"](name, 0, splits, ys, groups[train], start, 30, 3, 0.0)
            for name in ("random", "positive")}  # fmt: skip
    for name, history in rows.items():
        assert [row["labels"] for row in history] == [0, 30, 60, 90], name  # whole lesions of two fill 30 exactly
        assert all(len(row["test"]) == len(test) for row in history)
    # on embeddings that encode the class, the positive-seeking batch finds more melanomas than random
    assert rows["positive"][-1]["found"] > 2 * rows["random"][-1]["found"]
