import warnings

import numpy as np
import pandas as pd
import pytest

from hardmine.core.index import NeighbourIndex, exact_neighbours, near_duplicate_pairs, normalise
from hardmine.core.mining import MiningConfig, expand, mine, select, triage
from hardmine.core.scores import Signals


def test_mining_finds_planted_hard_cases_and_quarantines_flips(planted_world):
    labels, prob, emb, groups, hard, flipped = planted_world()
    result = mine(labels, prob, emb, threshold=0.5, config=MiningConfig(max_frac=0.2), groups=groups)
    mined = result.hard_mask() | (result.neighbour > 0)
    base_rate = hard.mean()
    precision = hard[mined].mean()
    assert precision > 2.5 * base_rate, (precision, base_rate)
    assert mined[hard].mean() > 0.6
    worthy = select(labels, prob, threshold=0.5, max_frac=1.0).candidates & flipped
    assert worthy.sum() >= 20
    assert (result.quarantined & worthy).sum() >= 0.8 * worthy.sum()
    assert not (result.hard_mask() & result.quarantined).any()
    assert (result.neighbour[result.quarantined] == 0).all()
    # quarantined samples are not upweighted beyond their class-balance base
    base = result.weights[(~result.hard_mask()) & (result.neighbour == 0) & ~result.quarantined & (labels == 1)]
    assert np.allclose(result.weights[result.quarantined & (labels == 1)], base[0])


def test_select_quotas_order_and_reasons():
    labels = np.array([1] * 10 + [0] * 90)
    prob = np.r_[np.linspace(0.05, 0.95, 10), np.linspace(0.0, 0.9, 90)]
    sel = select(labels, prob, threshold=0.5, max_frac=0.2, band=0.5)
    # by hand: 5 positives missed (P < 0.5), quota 2, the two with the highest loss; 40 false alarms (P >= 0.5),
    # quota 18, the 18 most confident; missed positives first (cost ratio 10), then by loss
    assert sel.index.tolist() == [0, 1, *range(99, 81, -1)]
    assert set(sel.reasons) == {"misclassified"}
    # a larger quota takes every missed positive, then the correct ones within 0.5 log-odds of the threshold
    wide = select(labels, prob, threshold=0.5, max_frac=0.7, band=0.5)
    positives = wide.index[labels[wide.index] == 1]
    assert positives.tolist() == [0, 1, 2, 3, 4, 5]  # P 0.55 is within the band, P 0.65 (log-odds 0.62) is not
    assert wide.reasons[labels[wide.index] == 1].tolist() == ["misclassified"] * 5 + ["low-margin"]


def test_expand_equals_brute_force_neighbours():
    rng = np.random.default_rng(1)
    emb = normalise(rng.normal(size=(60, 5)))
    labels = rng.integers(0, 2, 60)
    groups = np.arange(60) // 3
    seeds = np.array([0, 7, 31])
    k, min_sim = 6, 0.1
    result = expand(emb, seeds, labels, groups, k=k, min_sim=min_sim, mode="both", seed_cap=100)
    expected = np.zeros(60)
    sims_all, ids_all = exact_neighbours(emb, emb[seeds], 60)
    for s, sims, ids in zip(seeds, sims_all, ids_all, strict=True):
        own_seen, taken = False, 0
        for j, sim in zip(ids, sims, strict=True):
            if j == s:
                continue
            if groups[j] == groups[s]:
                if own_seen:
                    continue
                own_seen = True
            taken += 1
            if taken > k:
                break
            if sim >= min_sim:
                expected[j] += (sim - min_sim) / (1 - min_sim)
    assert np.allclose(result.contribution, np.clip(expected, 0, 1), atol=1e-5)
    # same-label mode only reaches neighbours sharing the seed's label
    same = expand(emb, seeds, labels, groups, k=k, min_sim=min_sim, mode="same-label")
    pairs = same.pairs
    assert (labels[pairs["seed"].to_numpy()] == labels[pairs["neighbour"].to_numpy()]).all()


def test_expand_cap_per_seed_and_own_group_counts_once():
    emb = normalise(np.array([[1, 0], [1, 0.01], [1, 0.02], [1, 0.03], [0, 1], [0.2, 1]], float))
    labels = np.zeros(6, int)
    groups = np.array([0, 0, 0, 1, 2, 3])
    result = expand(emb, np.array([0]), labels, groups, k=2, min_sim=0.0, seed_cap=0.5)
    # of the two same-lesion images only the nearest counts, the second slot goes to lesion 1
    assert set(result.pairs["neighbour"]) == {1, 3}
    assert result.pairs["contribution"].sum() == pytest.approx(0.5)


def test_triage_confident_learning_and_persistent():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    prob = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.1, 0.95, 0.02])
    mask, why = triage(labels, prob, "confident")
    assert mask.tolist() == [False] * 6 + [True, True]
    assert why[6].startswith("confident-learning(p_pos=0.950")
    history = np.zeros((3, 8), bool)
    history[:, 2] = True
    mask, why = triage(labels, prob, "persistent", hard_history=history, persistent_rounds=3)
    assert np.flatnonzero(mask).tolist() == [2] and "persistent" in why[2]
    mask, _ = triage(labels, prob, "persistent", hard_history=history[:2], persistent_rounds=3)
    assert not mask.any()


def test_mined_frame_contract(planted_world):
    labels, prob, emb, groups, _, _ = planted_world(n=400)
    ids = np.array([f"img{i}" for i in range(400)], dtype=object)
    result = mine(labels, prob, emb, threshold=0.5, config=MiningConfig(k=5), groups=groups)
    frame = result.frame(ids)
    assert list(frame.columns) == ["id", "label", "role", "reasons", "hardness", "weight"]
    assert set(frame["role"]) == {"seed", "neighbour", "quarantined"}
    assert frame["id"].is_unique
    seeds = frame[frame.role == "seed"]
    assert seeds["reasons"].isin(["misclassified", "low-margin"]).all()
    nb = frame[frame.role == "neighbour"]
    assert nb["reasons"].str.match(r"^neighbour-of:img\d+@0\.\d{3}").all()
    assert frame[frame.role == "quarantined"]["reasons"].str.startswith("quarantined:").all()
    assert result.weights.mean() == pytest.approx(1.0)


def test_bad_input_is_rejected_or_a_clean_noop(planted_world):
    labels, prob, emb, groups, _, _ = planted_world(n=100)
    with pytest.raises(ValueError, match="embeddings have 99 rows but there are 100 labels"):
        mine(labels, prob, emb[:99])
    bad = prob.copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match="1 NaN value.*row 7"):
        mine(labels, bad, emb)
    with pytest.raises(ValueError, match="k=100 neighbours asked for but only 100 samples"):
        mine(labels, prob, emb, config=MiningConfig(k=100))
    perfect = labels.astype(float)  # every sample right and confident: nothing to mine
    result = mine(labels, perfect, emb, threshold=0.5)
    assert len(result.seeds) == 0 and "no seeds" in result.message
    assert result.weights.mean() == pytest.approx(1.0)
    empty = mine(labels, perfect, emb, threshold=0.5, config=MiningConfig(quarantine="none"))
    empty = empty.frame(np.arange(100).astype(str))
    assert empty.empty and empty["reasons"].str.split("|").empty  # text columns stay text (they were float)
    assert [str(t) for t in empty.dtypes] == ["object", "int64", "object", "object", "float64", "float64"]
    previous = np.linspace(0.5, 1.5, 100)
    result = mine(labels, perfect, emb, threshold=0.5, previous_weights=previous)
    assert np.array_equal(result.weights, previous)
    with pytest.raises(ValueError, match="hardness='sharpness' is not valid; expected one of loss, margin, el2n, "
                                         "dynamics, entropy, forgetting"):
        MiningConfig(hardness="sharpness").validate()


def test_index_exact_and_ivf_recall():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 32))
    x = normalise(centres[rng.integers(0, 50, 4000)] + 0.3 * rng.normal(size=(4000, 32)))
    exact = NeighbourIndex().build(x)
    assert exact.kind == "exact"
    sims, ids = exact.search(x[:20], 10)
    ref_sims, ref_ids = exact_neighbours(x, x[:20], 10)
    assert np.allclose(sims, ref_sims, atol=1e-5)
    ivf = NeighbourIndex(exact_max=1000).build(x)
    sq8 = NeighbourIndex(exact_max=1000, codec="sq8").build(x)
    _, sq8_ids = sq8.search(x[:200], 10)
    assert ivf.kind.startswith("ivf")
    _, ivf_ids = ivf.search(x[:200], 10)
    _, ref_ids = exact_neighbours(x, x[:200], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ivf_ids, ref_ids, strict=True)])
    assert recall >= 0.95
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(sq8_ids, ref_ids, strict=True)])
    assert recall >= 0.95 and sq8.kind.endswith("sq8")
    with pytest.raises(ValueError, match="index codec 'zip' is not valid"):
        NeighbourIndex(codec="zip")
    with pytest.raises(ValueError, match="k=5000 is larger than the 4000"):
        exact.search(x[:1], 5000)


def test_near_duplicate_pairs_cross_partitions_only():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 8))
    x[10] = x[3] + 1e-4  # a duplicate across splits
    x[20] = x[21] + 1e-4  # a duplicate within one split
    parts = np.array(["train"] * 15 + ["val"] * 15)
    ids = np.array([f"i{i}" for i in range(30)])
    parts[10] = "test"
    pairs = near_duplicate_pairs(normalise(x), ids, parts, min_sim=0.999)
    assert len(pairs) == 1
    row = pairs.iloc[0]
    assert {row.id_a, row.id_b} == {"i3", "i10"} and {row.part_a, row.part_b} == {"train", "test"}
    assert list(pairs.columns) == ["id_a", "part_a", "id_b", "part_b", "similarity"] and row.similarity >= 0.999


def test_a_quarantine_of_a_large_share_warns_about_the_model(planted_world):
    from hardmine.core.errors import HardmineWarning

    labels, prob, emb, groups, _, _ = planted_world()
    with warnings.catch_warnings():
        warnings.simplefilter("error", HardmineWarning)  # a sane quarantine is silent
        mine(labels, prob, emb, threshold=0.5, config=MiningConfig(quarantine="confident"), groups=groups)
    with pytest.warns(HardmineWarning, match="quarantined as suspected label errors.*too weak"):
        # a model that has the classes the wrong way round quarantines most of the data
        result = mine(labels, 1 - prob, emb, threshold=0.5, config=MiningConfig(quarantine="confident"), groups=groups)
    assert result.quarantined.mean() > 0.2


def test_trusted_labels_are_never_quarantined_and_may_be_seeds(planted_world):
    labels, prob, emb, groups, hard, flipped = planted_world()
    config = MiningConfig(max_frac=0.2)
    plain = mine(labels, prob, emb, threshold=0.5, config=config, groups=groups)
    # histology confirmed the hard positives and half of the quarantine (as if those were real but odd cases)
    trusted = (hard & (labels == 1)) | (plain.quarantined & (np.arange(len(labels)) % 2 == 0))
    guarded = mine(labels, prob, emb, threshold=0.5, config=config, groups=groups, trusted=trusted)
    assert plain.quarantined[trusted].any() and not guarded.quarantined[trusted].any()
    assert (guarded.quarantined == (plain.quarantined & ~trusted)).all()  # the rest of the triage is unchanged
    seeds = np.zeros(len(labels), bool)
    seeds[guarded.seeds] = True
    assert seeds[trusted & plain.quarantined].any()  # a confirmed label the model gets wrong is worth upweighting
    with pytest.raises(ValueError, match="--trusted 'dx_type' is not valid; expected COLUMN=VALUE"):
        MiningConfig(trusted="dx_type").validate()


def test_a_toy_signal_reading_any_score_column_is_one_file_and_one_registry_line(demo_dir, tmp_path, monkeypatch):
    from toy_signal import swing

    from hardmine.core.mining.seeds import rank01
    from hardmine.core.scores import HARDNESS
    from hardmine.record.config import DataConfig, RunConfig, TrainConfig
    from hardmine.run.opened import Run
    from hardmine.run.steps import mine_round, score_round, train_round
    from hardmine.views.planted import round_planted_recovery

    monkeypatch.setitem(HARDNESS, "swing", swing)  # the registry line
    train = TrainConfig(model="tiny", image_size=24, epochs=2, device="cpu", num_workers=0)
    run = Run.create(tmp_path / "run", RunConfig(DataConfig(data=str(demo_dir)), train))
    train_round(run, 0)
    score_round(run, 0)
    planted = pd.read_csv(demo_dir / "planted.csv")
    mine_round(run, 0, MiningConfig(hardness="swing"))
    mined, scores = run.mined(0), run.scores(0).set_index("id")
    seeds = mined[mined["role"] == "seed"]
    assert len(seeds) > 0
    # every seed's hardness is its rank by the column the toy reads
    ranks = pd.Series(rank01(scores["variability"].to_numpy()), index=scores.index)
    assert seeds["hardness"].to_numpy() == pytest.approx(ranks[seeds["id"]].to_numpy(), abs=1e-6)
    assert round_planted_recovery(run.root, 0, planted)["flips"] > 0
    # a signal reading a recorded column works in planted recovery too (forgetting raised there before)
    mine_round(run, 0, MiningConfig(hardness="forgetting"))
    assert round_planted_recovery(run.root, 0, planted)["flips"] > 0
    with pytest.raises(ValueError, match="needs the score column 'variability'.*the scores have: prob_pos, "):
        swing(np.array([0.5]), Signals.from_scores(scores.drop(columns="variability").reset_index()))


def test_hardness_signals_by_hand():
    from hardmine.core.scores import hardness_scores

    labels, prob = np.array([1, 1, 0, 0]), np.array([0.5, 0.9, 0.5, 0.9])  # p(true label) 0.5, 0.9, 0.5, 0.1
    p_true = np.array([0.5, 0.9, 0.5, 0.1])
    assert hardness_scores("loss", labels, prob) == pytest.approx(-np.log(p_true))
    assert hardness_scores("margin", labels, prob) == pytest.approx(-np.log(p_true / (1 - p_true)), abs=1e-6)
    assert hardness_scores("el2n", labels, prob) == pytest.approx(np.sqrt(2) * (1 - p_true))
    entropy = hardness_scores("entropy", labels, prob)
    assert entropy == pytest.approx([np.log(2), 0.325083, np.log(2), 0.325083], abs=1e-6)  # uncertainty, either side
    assert hardness_scores("forgetting", labels, prob, {"forgetting": np.array([3, 0, 1, 2])}).tolist() == [3, 0, 1, 2]
    with pytest.raises(ValueError, match="needs the score column 'forgetting' .recorded while training"):
        hardness_scores("forgetting", labels, prob)
    # seeds rank by the chosen signal: with forgetting, the most-forgotten misclassified image leads
    seeds = select(labels, prob, threshold=0.5, scores="forgetting", max_frac=1.0,
                   signals={"forgetting": np.array([0, 0, 1, 5])})
    assert seeds.index[0] == 3
