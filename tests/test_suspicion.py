"""Label suspicion: hand-computed evidence, the default rule, and the never-upweighted rule on planted flips."""

import numpy as np
import pandas as pd
import pytest

from hardmine.core.errors import HardmineError
from hardmine.core.evidence import gather_evidence, neighbour_prob
from hardmine.core.index import normalise
from hardmine.core.mining import MiningConfig, mine
from hardmine.core.suspicion import Evidence, suspects


def _circle(degrees):
    rad = np.deg2rad(degrees)
    return normalise(np.column_stack([np.cos(rad), np.sin(rad)]))


def test_neighbour_probability_by_hand():
    emb = _circle([0, 10, 20, 180, 190, 200])
    labels = np.array([1, 1, 0, 0, 0, 0])  # positives are a third of the data
    prob, pos, seen = neighbour_prob(emb, labels, np.arange(6), k=2)
    # image 0: neighbours 10 deg (pos) and 20 deg (neg): (1 / (1/3)) / (1 / (1/3) + 1 / (2/3)) = 2/3
    assert prob[0] == pytest.approx(2 / 3)
    assert prob[2] == pytest.approx(1.0) and prob[3] == pytest.approx(0.0)  # two positive / two negative neighbours
    assert (pos[0], seen[0]) == (1, 2)
    # images 0 and 1 are one lesion: image 0 may not lean on its twin, its next neighbours are 20 and 200 deg
    prob, pos, seen = neighbour_prob(emb, labels, np.array([0, 0, 1, 2, 3, 4]), k=2)
    assert prob[0] == pytest.approx(0.0) and pos[0] == 0


def test_suspicion_score_and_rule_by_hand():
    evidence = Evidence.of(oof=np.array([0.9, 0.9, 0.4, 0.7]), neighbours=np.array([0.8, 0.3, 0.9, 0.6]),
                        dynamics=np.array([0.7, 0.9, 0.9, 0.2]))  # fmt: skip
    assert evidence.score() == pytest.approx([0.8, 0.7, 2.2 / 3, 0.5])
    assert suspects(evidence, 0.7).tolist() == [True, True, True, False]
    assert suspects(evidence, 0.75).tolist() == [True, False, False, False]
    assert Evidence.of(evidence.oof, evidence.neighbours).score() == pytest.approx([0.85, 0.6, 0.65, 0.65])
    with pytest.raises(HardmineError, match="suspicion threshold 0"):
        suspects(evidence, 0)


def test_evidence_flags_planted_flips_far_above_clean_images(planted_world):
    labels, _, emb, groups, _, flipped = planted_world()
    evidence = gather_evidence(labels, groups, emb)
    score = evidence.score()
    assert score[flipped].mean() > 0.8 and score[~flipped].mean() < 0.3
    assert (evidence.neighbours_other[flipped] >= 7).mean() > 0.8  # most of their 10 neighbours say otherwise


def test_a_new_piece_keeps_counts_of_its_own(planted_world, monkeypatch):
    from hardmine.core import evidence as evidence_module

    def far_from_centre(inputs):  # a toy piece: its own count, under a name no built-in piece uses
        distance = np.linalg.norm(inputs.embeddings - inputs.embeddings.mean(axis=0), axis=1)
        return evidence_module.Piece(distance / distance.max(), {"far_rank": np.argsort(-distance)})

    monkeypatch.setitem(evidence_module.EVIDENCE, "far", far_from_centre)
    labels, _, emb, groups, _, _ = planted_world()
    evidence = gather_evidence(labels, groups, emb)
    assert set(evidence.parts) >= {"oof", "neighbours", "far"}
    assert evidence.details["far_rank"].shape == labels.shape and evidence.neighbours_other is not None
    monkeypatch.setitem(evidence_module.EVIDENCE, "far", lambda inputs: evidence_module.Piece(
        np.full(len(inputs.labels), 1.5)))  # not a probability: refused by name
    with pytest.raises(HardmineError, match="evidence piece 'far' returned .* outside \\[0, 1\\]"):
        gather_evidence(labels, groups, emb)
    back = Evidence.from_columns(pd.DataFrame(evidence.columns()))  # as scores.csv keeps it
    assert np.array_equal(back.details["far_rank"], evidence.details["far_rank"])
    assert np.array_equal(back.neighbours_other, evidence.neighbours_other)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_flips_are_quarantined_and_never_upweighted(seed, planted_world):
    labels, prob, emb, groups, hard, flipped = planted_world(seed=seed)
    result = mine(labels, prob, emb, threshold=0.5, config=MiningConfig(), groups=groups)
    upweighted = result.hard_mask() | (result.neighbour > 0)
    assert result.quarantined[flipped].mean() >= 0.7  # of all flipped labels, not a subset (0.73-0.91 measured)
    assert result.quarantined.sum() <= 3 * flipped.sum()
    assert upweighted[flipped].mean() <= 0.05
    assert upweighted[hard].mean() >= 2 * upweighted.mean()  # hard cases mined at twice the base rate
    # the never-upweighted rule: no suspect is a seed, a neighbour, or above its class-balance base
    assert not (upweighted & result.quarantined).any()
    for cls in (0, 1):
        plain = ~upweighted & ~result.quarantined & (labels == cls)
        assert np.allclose(result.weights[result.quarantined & (labels == cls)], result.weights[plain][0])
    # and no neighbour owes its boost to a suspect: every pair's seed passed triage
    assert not result.quarantined[result.pairs["seed"].to_numpy(dtype=int)].any()
    assert "suspicion(" in result.frame(np.arange(len(labels))).query("role == 'quarantined'")["reasons"].iloc[0]


def test_suspects_keep_no_boost_from_earlier_rounds(planted_world):
    labels, prob, emb, groups, _, flipped = planted_world(seed=4)
    previous = np.where(flipped, 8.0, 1.0)  # a flip that an earlier round upweighted
    result = mine(labels, prob, emb, threshold=0.5, config=MiningConfig(), groups=groups,
                  previous_weights=previous / previous.mean())
    caught = result.quarantined & flipped
    assert caught.any()
    for cls in (0, 1):
        plain = ~result.hard_mask() & (result.neighbour == 0) & ~result.quarantined & (labels == cls)
        assert result.weights[caught & (labels == cls)].max() <= result.weights[plain].max() + 1e-9



def test_out_of_fold_networks_replace_the_head_at_the_balanced_prior(planted_world):
    from hardmine.core.suspicion import at_prior

    # a 50:50-trained 0.8 at a 10% prior: odds 4 x (1/9) = 4/9 -> 4/13; 0.5 at 50:50 is the prior itself
    assert at_prior(np.array([0.8, 0.5]), 0.5, 0.1) == pytest.approx([4 / 13, 0.1])
    p = np.array([0.05, 0.3, 0.97])
    assert at_prior(at_prior(p, 0.2, 0.5), 0.5, 0.2) == pytest.approx(p)  # and back
    with pytest.raises(HardmineError, match="prior 1"):
        at_prior(p, 0.5, 1)
    from hardmine.record.config import TrainConfig

    # the prior a fold network's probabilities are at: balanced by oversampling or inverse weights, else the data's
    assert TrainConfig(sampling="oversample").probability_prior(0.1) == 0.5
    assert TrainConfig(sampling="none", loss="weighted-ce", class_weighting="inverse").probability_prior(0.1) == 0.5
    assert TrainConfig(sampling="none", loss="ce").probability_prior(0.1) == 0.1
    labels, _, emb, groups, _, _ = planted_world()
    oof_prob = np.linspace(0.01, 0.99, len(labels))
    evidence = gather_evidence(labels, groups, emb, oof_prob=oof_prob)
    assert evidence.oof == pytest.approx(np.where(labels == 1, 1 - oof_prob, oof_prob))  # P(the other class)
    assert evidence.neighbours == pytest.approx(gather_evidence(labels, groups, emb).neighbours)
    with pytest.raises(HardmineError, match="oof_prob has shape"):
        gather_evidence(labels, groups, emb, oof_prob=oof_prob[:-1])


def test_networks_evidence_is_the_suspicion_and_every_reading_bars_a_seed_by_hand():
    evidence = Evidence.of(oof=np.array([0.9, 0.3, 0.85, 0.5]), neighbours=np.array([0.8, 0.9, 0.2, 0.5]),
                        dynamics=np.array([0.7, 0.9, 0.2, 0.5]), networks=True)  # fmt: skip
    assert evidence.score() == pytest.approx([0.9, 0.3, 0.85, 0.5])  # the fold networks' evidence alone
    assert evidence.mean() == pytest.approx([0.8, 0.7, 1.25 / 3, 0.5])
    assert evidence.doubt() == pytest.approx([0.9, 0.7, 0.85, 0.5])  # the larger reading
    assert suspects(evidence).tolist() == [True, False, True, False]  # networks' default: 0.8
    head = Evidence.of(evidence.oof, evidence.neighbours, evidence.dynamics)
    assert suspects(head).tolist() == [True, True, False, False]  # the head's default: 0.7 on the mean
    assert head.doubt() == pytest.approx(head.score())
    # the scores.csv columns say which evidence it was, and read back as the same evidence
    columns = evidence.columns()
    assert "suspicion_networks" in columns and "suspicion_oof" not in columns
    back = Evidence.from_columns(pd.DataFrame(columns))
    assert back.networks and back.score() == pytest.approx(evidence.score())
    assert not Evidence.from_columns(pd.DataFrame(head.columns())).networks


@pytest.mark.parametrize("seed", [0, 1])
def test_with_out_of_fold_networks_planted_flips_are_quarantined_and_doubt_never_upweighted(seed, planted_world):
    labels, prob, emb, groups, hard, flipped = planted_world(seed=seed)
    # a network that never saw an image sees its latent malignancy, not its label: the world's own prob
    evidence = gather_evidence(labels, groups, emb, oof_prob=prob)
    result = mine(labels, prob, emb, threshold=0.5, config=MiningConfig(), groups=groups, evidence=evidence)
    upweighted = result.hard_mask() | (result.neighbour > 0)
    assert (result.quarantined == (evidence.score() >= 0.8)).all()
    assert result.quarantined[flipped].mean() >= 0.9 and result.quarantined.sum() <= 3 * flipped.sum()
    assert upweighted[flipped].mean() <= 0.05 and upweighted[hard].mean() >= 2 * upweighted.mean()
    assert not (upweighted & (evidence.doubt() >= 0.55)).any()
    # a label the networks trust but the round's own evidence doubts is not upweighted: make the round's
    # neighbours and dynamics say "wrong" for every image the first pass upweighted
    doubted = np.where(upweighted, 1.0, 0.0)
    contested = Evidence.of(evidence.oof, np.maximum(evidence.neighbours, doubted), doubted, networks=True)
    assert (contested.score() == evidence.score()).all() and (contested.doubt()[upweighted] >= 0.55).all()
    again = mine(labels, prob, emb, threshold=0.5, config=MiningConfig(), groups=groups, evidence=contested)
    assert (again.quarantined == result.quarantined).all()
    assert not ((again.hard_mask() | (again.neighbour > 0)) & upweighted).any()
