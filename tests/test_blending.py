"""recommend.py scores with the scorer training chose (EASE or EASE-recent alone, or mixed with
the model) only when training saved it for the very model it loads; the reasons come from that
scorer. Toys computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bert4rec import blending, checkpoint, db, page, reasons
from bert4rec.data import ItemMapping
from bert4rec.model import BERT4Rec, ModelConfig
from bert4rec.recommender import Recommender, WatchedTitles, json_document

TITLES = (11, 12, 13, 14, 15)
INF = float("-inf")


def save_model(folder, *, epoch: int = 3, fingerprint: str = "abc") -> ItemMapping:
    mapping = ItemMapping(TITLES)
    torch.manual_seed(0)
    model = BERT4Rec(
        ModelConfig(
            num_items=5, max_seq_len=8, hidden=16, layers=1, heads=2, ff_dim=32, dropout=0.1
        )
    )
    payload = checkpoint.model_payload(
        model, mapping, epoch=epoch, train_config={}, data_fingerprint=fingerprint, metrics={}
    )
    checkpoint.save(payload, folder / checkpoint.BEST_MODEL_FILE)
    return mapping


def toy_weights() -> torch.Tensor:
    """Item-item weights: title 15 follows 11 (3.0) and 12 (2.0); 14 follows 12 (0.5); 13
    follows 11 (0.3)."""
    weights = torch.zeros(5, 5)
    weights[0, 4], weights[1, 4], weights[1, 3], weights[0, 2] = 3.0, 2.0, 0.5, 0.3
    return weights


def ease_only(fingerprint: str = "abc", epoch: int = 3) -> blending.Blend:
    return blending.Blend(toy_weights(), math.inf, "EASE", 100.0, 1.0, fingerprint, epoch)


def recent_only(share: float = 1.0) -> blending.Blend:
    return blending.Blend(
        toy_weights(), 1.0, "EASE-recent", 100.0, share, "abc", 3, ("EASE", "EASE-recent")
    )


def catalogue() -> list[db.Anime]:
    return [db.Anime(i, f"Title {i}") for i in TITLES]


def test_a_matching_blend_decides_and_is_announced(tmp_path):
    save_model(tmp_path)
    blending.save(recent_only(), tmp_path / checkpoint.BLEND_FILE)
    notes = []
    recommender = Recommender.load(tmp_path, catalogue(), notify=notes.append)
    assert recommender.blend is not None
    assert (
        "Scoring: EASE-recent alone (lambda 100, decay 1 title), chosen on validation over the "
        "model alone, EASE alone, EASE-recent alone and the model's mixes with each." in notes
    )
    result = recommender.recommend(WatchedTitles(watched=(11,)), top_k=4)
    top = result.items
    assert top[0].anime.anime_id == 15
    assert 11 not in [r.anime.anime_id for r in top]  # a watched title is never recommended
    # --json and the page say which scorer made the list, and that its score is no probability
    document = json_document(recommender, result, name="x", source="titles", watched=1)
    assert document["scoring"].startswith("EASE-recent alone (lambda 100, decay 1 title)")
    assert document["score"].endswith("it is not a probability")
    assert "EASE-recent&#x27;s score" in page.render(document)  # the reasons' method
    assert "Scoring: EASE-recent alone (lambda 100, decay 1 title)" in page.render(document)


def test_a_file_written_before_ease_recent_loads_as_plain_ease(tmp_path):
    save_model(tmp_path)
    old = {  # what blending.save wrote before the item-item part had a name and a decay
        "kind": blending.BLEND_KIND,
        "ease_weights": toy_weights(),
        "ease_weight": 1.0,
        "ease_lambda": 100.0,
        "data_fingerprint": "abc",
        "model_epoch": 3,
    }
    torch.save(old, tmp_path / checkpoint.BLEND_FILE)
    notes = []
    recommender = Recommender.load(tmp_path, catalogue(), notify=notes.append)
    blend = recommender.blend
    assert (blend.name, blend.decay, blend.lam, blend.share) == ("EASE", math.inf, 100.0, 1.0)
    assert (
        "Scoring: EASE alone (lambda 100), chosen on validation over the model alone, EASE alone "
        "and the model's mixes with it." in notes
    )
    # Plain EASE: both titles count alike, 11 + 12 -> 15 scores 3 + 2, 14 0.5, 13 0.3.
    result = recommender.recommend(WatchedTitles(watched=(11, 12)), top_k=1)
    assert [(r.anime.anime_id, r.credit) for r in result.items[0].reasons] == [
        (11, pytest.approx(3.0)),
        (12, pytest.approx(2.0)),
    ]
    # and it is written back in the new form, unchanged
    blending.save(blend, tmp_path / "again.pth")
    again = blending.load(tmp_path / "again.pth")
    assert torch.equal(again.weights, blend.weights) and again._replace(weights=None) == (
        blend._replace(weights=None)
    )


def test_a_blend_of_another_model_is_ignored(tmp_path):
    save_model(tmp_path, epoch=4)
    blending.save(ease_only(epoch=3), tmp_path / checkpoint.BLEND_FILE)
    notes = []
    recommender = Recommender.load(tmp_path, [db.Anime(i) for i in TITLES], notify=notes.append)
    assert recommender.blend is None and "Scoring: the BERT4Rec model alone." in notes


def test_both_parts_are_standardised_over_the_titles_that_may_be_ranked():
    # vocab: padding, titles 1..4, MASK. Title 1 is the user's own: the model scores it (10),
    # the part gives it -inf. Over titles 2..4 alone the model's [1, 2, 3] standardises to
    # [-a, 0, a] with a = sqrt(3/2), and the part's [0, 1, 5] (mean 2, variance 14/3) to
    # [-2, -1, 3] / sqrt(14/3).
    model = torch.tensor([[INF, 10.0, 1.0, 2.0, 3.0, INF]])
    part = torch.tensor([[INF, INF, 0.0, 1.0, 5.0, INF]])
    a, b = math.sqrt(3 / 2), math.sqrt(14 / 3)
    mixed = blending.blend(model, part, 0.25)
    expected = [0.75 * m + 0.25 * e for m, e in zip((-a, 0.0, a), (-2 / b, -1 / b, 3 / b))]
    assert mixed[0, 2:5].tolist() == pytest.approx(expected)
    assert torch.isinf(mixed[0, [0, 1, 5]]).all()
    # The credits' scales are the same spreads: (1 - w) / sd of the model, w / sd of the part.
    model_scale, part_scale = blending.credit_scales(model, part, 0.25)
    assert model_scale.tolist() == pytest.approx([0.75 / math.sqrt(2 / 3)])
    assert part_scale.tolist() == pytest.approx([0.25 / b])
    # A scorer alone keeps its own units.
    assert [s.tolist() for s in blending.credit_scales(model, part, 1.0)] == [[0.0], [1.0]]


def test_blend_scores_leave_out_the_history_padding_and_tokens():
    model_scores = blending.in_vocab_layout(torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]]), 8)
    half = recent_only(share=0.5).scores(model_scores, [np.array([1])])
    assert half[0, 1] == INF  # the history's own title
    assert torch.isinf(half[0, [0, 6, 7]]).all()  # padding and special tokens
    assert half[0, 5] == half[0, 2:6].max()


def test_reasons_under_ease_recent_are_its_exact_contributions(tmp_path):
    save_model(tmp_path)
    blending.save(recent_only(), tmp_path / checkpoint.BLEND_FILE)
    recommender = Recommender.load(tmp_path, catalogue())
    # Decay 1: 12 (the newest) counts 1, 11 counts exp(-1). Title 15 scores
    # exp(-1) * 3.0 + 1 * 2.0; 14 1 * 0.5; 13 exp(-1) * 0.3.
    result = recommender.recommend(WatchedTitles(watched=(11, 12)), top_k=1)
    top = result.items[0]
    assert top.anime.anime_id == 15
    assert [(r.anime.anime_id, r.credit) for r in top.reasons] == [
        (12, pytest.approx(2.0)),
        (11, pytest.approx(3.0 * math.exp(-1))),
    ]
    assert top.reason == "because you watched Title 12, Title 11"
    credits = reasons.part_credits(recent_only().part(), np.array([1, 2]), [3, 4, 5])
    assert credits.items.tolist() == [1, 2]
    np.testing.assert_allclose(
        credits.values,
        [[0.3 * math.exp(-1), 0.0], [0.0, 0.5], [3.0 * math.exp(-1), 2.0]],
        rtol=1e-6,
    )
    # A title listed twice counts once, at its newest place (age 0 here).
    again = reasons.part_credits(recent_only().part(), np.array([1, 2, 1]), [5])
    np.testing.assert_allclose(again.values, [[3.0, 2.0 * math.exp(-1)]], rtol=1e-6)
    # No network is asked: the model ranked nothing.
    assert "EASE-recent's score" in recommender.reason_method


def test_an_item_item_scorer_alone_ranks_without_running_the_network(tmp_path, monkeypatch):
    save_model(tmp_path)
    blending.save(recent_only(), tmp_path / checkpoint.BLEND_FILE)
    recommender = Recommender.load(tmp_path, catalogue())
    expected = recommender.recommend(WatchedTitles(watched=(11, 12)), top_k=3).items

    def refuse(*args, **kwargs):
        raise AssertionError("the network ran although its scores weigh nothing")

    monkeypatch.setattr(recommender.model, "next_item_logits", refuse)
    again = recommender.recommend(WatchedTitles(watched=(11, 12)), top_k=3).items
    assert [(r.anime.anime_id, r.probability, r.reason) for r in again] == [
        (r.anime.anime_id, r.probability, r.reason) for r in expected
    ]
    assert [r.anime.anime_id for r in again][:2] == [15, 14]
    # A mix needs the network.
    blending.save(recent_only(share=0.5), tmp_path / checkpoint.BLEND_FILE)
    mixed = Recommender.load(tmp_path, catalogue())
    monkeypatch.setattr(mixed.model, "next_item_logits", refuse)
    with pytest.raises(AssertionError, match="the network ran"):
        mixed.recommend(WatchedTitles(watched=(11, 12)), top_k=3)


def test_reasons_under_a_mix_weigh_each_part_by_its_share_over_its_spread(tmp_path):
    save_model(tmp_path)
    blending.save(recent_only(share=0.5), tmp_path / checkpoint.BLEND_FILE)
    recommender = Recommender.load(tmp_path, catalogue())
    model, mapping = recommender.model, recommender.mapping
    history = np.array([1, 2])  # titles 11, 12: 13, 14 and 15 may be recommended
    result = recommender.recommend(WatchedTitles(watched=(11, 12)), top_k=3)
    inputs = torch.tensor([[1, 2, mapping.mask_index]])
    with torch.no_grad():
        logits = model.next_item_logits(inputs)[0, 3:6].double()
    part = torch.tensor([0.3 * math.exp(-1), 0.5, 3.0 * math.exp(-1) + 2.0], dtype=torch.float64)
    model_scale = 0.5 / logits.std(unbiased=False)  # spreads over the three titles alone
    part_scale = 0.5 / part.std(unbiased=False)
    for item in result.items:
        target = mapping.index(item.anime.anime_id)
        lifts = reasons.model_credits(
            model, history, [target], mapping.mask_index, least=reasons.MIN_LIFT
        )
        shares = reasons.part_credits(recent_only().part(), history, [target])
        for reason in item.reasons:
            column = mapping.index(reason.anime.anime_id) - 1  # both list titles 1 and 2
            expected = model_scale * lifts.values[0, column] + part_scale * shares.values[0, column]
            assert reason.credit == pytest.approx(float(expected), rel=1e-4)
    assert sum(len(item.reasons) for item in result.items) >= 2
    assert "the model's log-probability" in recommender.reason_method


def test_a_title_leads_at_most_a_third_of_a_list_and_is_named_in_at_most_half():
    # Six recommendations that title 1 lifts most, then 2, then 3 (weakly); the last only 1.
    rows = [[(1, 3.0), (2, 2.0), (3, 0.5)] for _ in range(5)] + [[(1, 3.0), (2, -1.0)]]
    chosen = reasons.choose(rows, [None] * 6)
    # 2 of 6 first at most; 3 is too weak to follow 1 or 2 (under half the first's credit).
    # The last, which only 1 lifts, keeps 1 first: the others have 2 nearly as good.
    assert chosen == [
        [(1, 3.0), (2, 2.0)],
        [(2, 2.0)],  # 1 leads no more; it would follow 2, which it lifts more
        [(2, 2.0)],
        [(3, 0.5)],
        [(3, 0.5)],
        [(1, 3.0)],
    ]
    # Title 1 lifts each of four a little less than its own title: named in two at most.
    seconds = [[(t, 3.0), (1, 2.0)] for t in (2, 3, 4, 5)]
    assert reasons.choose(seconds, [None] * 4) == [
        [(2, 3.0), (1, 2.0)],
        [(3, 3.0), (1, 2.0)],
        [(4, 3.0)],
        [(5, 3.0)],
    ]
    # A fixed reason (a Continue entry's predecessor) is given whatever the credits, and counts.
    fixed = reasons.choose(rows[:4], [9, None, None, None])
    assert fixed == [[(9, None)], [(1, 3.0), (2, 2.0)], [(3, 0.5)], []]


def test_without_a_title_the_reason_says_what_ranks_it():
    history = [db.Anime(i, genres=("Action", "Drama")) for i in range(3)]
    history.append(db.Anime(3, genres=("Comedy",)))
    popular = db.Anime(10, popularity_rank=4, genres=("Horror",))
    assert reasons.without_a_title(popular, history, 600) == (
        "one of the most watched anime (#4 on AniList)"
    )
    action = db.Anime(11, popularity_rank=300, genres=("Action", "Sports"))
    assert reasons.without_a_title(action, history, 600) == (
        "Action, like 3 of the 4 titles you watched"
    )
    other = db.Anime(12, popularity_rank=300, genres=("Horror",))
    assert reasons.without_a_title(other, history, 600).startswith("ranked by your history")
