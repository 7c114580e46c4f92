"""recommend.py blends with EASE only when training saved a blend for the very model it loads."""

from __future__ import annotations

import numpy as np
import torch

from bert4rec import blending, checkpoint, db, page
from bert4rec.data import ItemMapping
from bert4rec.model import BERT4Rec, ModelConfig
from bert4rec.recommender import Recommender, WatchedTitles, json_document

TITLES = (11, 12, 13, 14, 15)


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


def ease_only(fingerprint: str = "abc", epoch: int = 3) -> blending.Blend:
    # Title 5 follows title 1 strongly; with the whole share on EASE it must come first.
    weights = torch.zeros(5, 5)
    weights[0, 4] = 1.0
    return blending.Blend(weights, 1.0, 100.0, fingerprint, epoch)


def test_a_matching_blend_decides_and_is_announced(tmp_path):
    save_model(tmp_path)
    blending.save(ease_only(), tmp_path / checkpoint.BLEND_FILE)
    notes = []
    catalogue = [db.Anime(i, f"Title {i}") for i in TITLES]
    recommender = Recommender.load(tmp_path, catalogue, notify=notes.append)
    assert recommender.blend is not None
    assert any(n.startswith("Scoring: EASE alone (lambda 100), chosen on") for n in notes)
    result = recommender.recommend(WatchedTitles(watched=(11,)), top_k=4)
    top = result.items
    assert top[0].anime.anime_id == 15
    assert 11 not in [r.anime.anime_id for r in top]  # a watched title is never recommended
    # --json and the page say which scoring made the list, and that its score is no probability
    document = json_document(recommender, result, name="x", source="titles", watched=1)
    assert document["scoring"].startswith("EASE alone (lambda 100)")
    assert document["score"].endswith("it is not a probability")
    assert "Scoring: EASE alone (lambda 100)" in page.render(document)


def test_a_blend_of_another_model_is_ignored(tmp_path):
    save_model(tmp_path, epoch=4)
    blending.save(ease_only(epoch=3), tmp_path / checkpoint.BLEND_FILE)
    notes = []
    catalogue = [db.Anime(i) for i in TITLES]
    recommender = Recommender.load(tmp_path, catalogue, notify=notes.append)
    assert recommender.blend is None and "Scoring: the BERT4Rec model alone." in notes


def test_blend_scores_standardise_both_sides():
    blend = ease_only()
    model_scores = blending.in_vocab_layout(torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]]), 8)
    half = blend._replace(ease_weight=0.5).scores(model_scores, [np.array([1])])
    assert half[0, 1] == float("-inf")  # the history's own title
    assert torch.isinf(half[0, [0, 6, 7]]).all()  # padding and special tokens
    assert half[0, 5] == half[0, 2:6].max()
