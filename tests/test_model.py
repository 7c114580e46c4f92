from __future__ import annotations

import pytest
import torch

from bert4rec import checkpoint
from bert4rec.data import ItemMapping
from bert4rec.model import (
    HIDDEN_SCORE,
    BERT4Rec,
    ModelConfig,
    dropout,
    hide_shown_titles,
    masked_loss,
)
from bert4rec.packed_dropout import attention as attention_with_dropout
from bert4rec.packed_dropout import keep_mask

NUM_ITEMS = 30
MASK = NUM_ITEMS + 1


def tiny_model(**overrides) -> BERT4Rec:
    torch.manual_seed(0)
    settings = dict(
        num_items=NUM_ITEMS, max_seq_len=8, hidden=16, layers=2, heads=2, ff_dim=24, dropout=0.1
    )
    return BERT4Rec(ModelConfig(**{**settings, **overrides}))


def test_sizes_follow_the_config():
    model = tiny_model()
    assert model.item_embedding.weight.shape == (NUM_ITEMS + 3, 16)  # N + 3 rows
    assert model.position_embedding.weight.shape == (8, 16)
    assert len(model.blocks) == 2
    assert model.blocks[0].feed_forward.up.out_features == 24
    assert torch.count_nonzero(model.item_embedding.weight[0]) == 0  # padding row


def test_training_logits_only_at_masked_positions():
    model = tiny_model()
    inputs = torch.tensor([[0, 0, 3, MASK, 5], [1, MASK, 2, MASK, MASK]])
    labels = torch.tensor([[0, 0, 0, 4, 0], [0, 7, 0, 9, 10]])
    logits = model(inputs, labels)
    assert logits.shape == (4, NUM_ITEMS + 3)  # 4 masked positions, not 2 x 5
    loss = masked_loss(logits, labels[labels != 0])
    loss.backward()
    assert torch.isfinite(loss)


def test_hide_shown_titles_leaves_out_each_sequences_own_titles_only():
    inputs = torch.tensor([[0, 0, 3, MASK, 5], [1, MASK, 2, MASK, MASK]])
    labels = torch.tensor([[0, 0, 0, 4, 0], [0, 7, 0, 9, 10]])
    logits = tiny_model()(inputs, labels)
    expected = logits.detach().clone()
    expected[0, [3, 5]] = HIDDEN_SCORE  # row 0 is sequence 0's one masked position
    expected[1:, [1, 2]] = HIDDEN_SCORE  # rows 1-3 are sequence 1's
    hidden = hide_shown_titles(logits, inputs, labels)
    # the hidden titles, the other sequence's titles and the -inf of padding and MASK stay
    assert torch.equal(hidden.detach(), expected)
    loss = masked_loss(hidden, labels[labels != 0])
    loss.backward()
    assert torch.isfinite(loss)
    # a soft target of 0 on a hidden title adds 0, not nan (distill.Teacher.loss_sum)
    soft = torch.softmax(expected[:, 1 : NUM_ITEMS + 1], dim=1)
    taught = -(soft * torch.log_softmax(hidden.float(), dim=1)[:, 1 : NUM_ITEMS + 1]).sum()
    assert torch.isfinite(taught)


def test_padding_and_special_tokens_are_never_predicted():
    model = tiny_model().eval()
    inputs = torch.randint(1, NUM_ITEMS + 1, (6, 8))
    inputs[:, -1] = MASK
    logits = model.next_item_logits(inputs)
    assert torch.isneginf(logits[:, 0]).all()
    assert torch.isneginf(logits[:, NUM_ITEMS + 1 :]).all()
    assert torch.isfinite(logits[:, 1 : NUM_ITEMS + 1]).all()
    ranked = logits.topk(NUM_ITEMS, dim=1).indices
    assert ((ranked >= 1) & (ranked <= NUM_ITEMS)).all()


def test_padding_changes_nothing():
    """Extra padding on the left (a longer batch) must not change the states of real titles:
    the key-padding mask hides it and positions count from the newest title."""
    model = tiny_model().eval()
    short = torch.tensor([[4, 7, 2, MASK]])
    padded = torch.tensor([[0, 0, 0, 4, 7, 2, MASK]])
    with torch.no_grad():
        assert torch.allclose(
            model.next_item_logits(short), model.next_item_logits(padded), atol=1e-5
        )


def test_next_item_logits_are_the_full_encoding_at_the_last_position():
    model = tiny_model(layers=3).eval()
    inputs = torch.tensor([[0, 0, 4, 7, 2, MASK], [3, 5, 8, 1, 6, MASK]])
    with torch.no_grad():
        full = model.item_logits(model.encode(inputs)[:, -1])
        assert torch.allclose(model.next_item_logits(inputs), full, atol=1e-5)


def test_attention_is_bidirectional():
    model = tiny_model().eval()
    with torch.no_grad():
        a = model.encode(torch.tensor([[4, MASK, 2]]))[0, 1]
        b = model.encode(torch.tensor([[4, MASK, 9]]))[0, 1]
    assert not torch.allclose(a, b)  # the title after the MASK matters


def test_keep_mask_drops_the_asked_share_independently():
    torch.manual_seed(0)
    keep = keep_mask(torch.Size([64, 1001]), 0.2, torch.device("cpu"))  # not a multiple of 4
    assert keep.shape == (64, 1001) and keep.dtype == torch.bool
    assert keep.float().mean().item() == pytest.approx(0.8, abs=0.005)
    # Four masks share one 64-bit draw: neighbours must not be correlated.
    a, b = keep[:, :-1].flatten().float(), keep[:, 1:].flatten().float()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1].abs() < 0.02
    torch.manual_seed(0)
    assert torch.equal(keep, keep_mask(torch.Size([64, 1001]), 0.2, torch.device("cpu")))


def test_dropout_keeps_the_expected_value_and_its_gradient_follows_the_mask():
    torch.manual_seed(0)
    x = torch.ones(200, 500, requires_grad=True)
    y = dropout(x, 0.25, training=True, masks="packed")
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.75, abs=0.01)
    assert torch.allclose(y[kept], torch.tensor(1 / 0.75))  # scaled, so the mean stays 1
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)
    assert dropout(x, 0.25, training=False, masks="packed") is x


def test_dropout_masks_setting_chooses_the_random_stream():
    """The "packed" and "torch" masks drop the same share but differ from the same seed; each
    is reproducible, and a model built with either gives the same scores in eval mode."""
    x = torch.ones(100, 400)
    drawn = {}
    for masks in ("packed", "torch"):
        torch.manual_seed(0)
        drawn[masks] = dropout(x, 0.3, training=True, masks=masks) != 0
        torch.manual_seed(0)
        assert torch.equal(drawn[masks], dropout(x, 0.3, training=True, masks=masks) != 0)
        assert drawn[masks].float().mean().item() == pytest.approx(0.7, abs=0.01)
    assert not torch.equal(drawn["packed"], drawn["torch"])
    config = dict(num_items=NUM_ITEMS, max_seq_len=8, hidden=16, layers=2, heads=2, ff_dim=32)
    torch.manual_seed(1)
    packed = BERT4Rec(ModelConfig(**config, dropout=0.2, dropout_masks="packed")).eval()
    torch.manual_seed(1)
    plain = BERT4Rec(ModelConfig(**config, dropout=0.2, dropout_masks="torch")).eval()
    inputs = torch.tensor([[1, 2, MASK]])
    with torch.no_grad():
        assert torch.equal(packed.next_item_logits(inputs), plain.next_item_logits(inputs))
    with pytest.raises(ValueError, match="dropout_masks"):
        ModelConfig(**config, dropout=0.2, dropout_masks="fast")


def test_attention_with_dropout_is_scaled_dot_product_attention():
    """The CPU training path spells attention out to draw its own dropout masks: without
    dropping anything it must be torch's attention, padding mask included, and on average
    over masks it must be the attention without dropout."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 6, 4) for _ in range(3))
    keep = torch.tensor([[True] * 6, [False, False] + [True] * 4, [False] * 5 + [True]])
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=keep[:, None, None, :]
    )
    assert torch.allclose(attention_with_dropout(q, k, v, keep, 0.0), expected, atol=1e-6)
    mean = torch.stack([attention_with_dropout(q, k, v, keep, 0.3) for _ in range(4000)]).mean(0)
    assert torch.allclose(mean, expected, atol=0.05)


def test_longer_than_max_seq_len_is_refused():
    with pytest.raises(ValueError):
        tiny_model().encode(torch.ones(1, 9, dtype=torch.long))


def test_model_file_round_trip(tmp_path):
    model = tiny_model().eval()
    mapping = ItemMapping(tuple(range(100, 100 + NUM_ITEMS)))
    payload = checkpoint.model_payload(
        model, mapping, epoch=3, train_config={}, data_fingerprint="x", metrics={}
    )
    checkpoint.save(payload, tmp_path / "m.pth")
    loaded = checkpoint.load_model(tmp_path / "m.pth")
    assert loaded.mapping == mapping and loaded.payload["epoch"] == 3
    inputs = torch.tensor([[1, 2, MASK]])
    with torch.no_grad():
        assert torch.equal(loaded.model.next_item_logits(inputs), model.next_item_logits(inputs))


def test_mismatched_mapping_is_refused(tmp_path):
    model = tiny_model()
    payload = checkpoint.model_payload(
        model, ItemMapping((1, 2, 3)), epoch=1, train_config={}, data_fingerprint="x", metrics={}
    )
    checkpoint.save(payload, tmp_path / "m.pth")
    with pytest.raises(checkpoint.CheckpointError, match="usable model"):
        checkpoint.load_model(tmp_path / "m.pth")


def test_start_at_popularity_ranks_by_training_counts():
    model = tiny_model().eval()
    counts = torch.zeros(NUM_ITEMS + 3, dtype=torch.long)
    counts[1 : NUM_ITEMS + 1] = 2 ** torch.arange(NUM_ITEMS, 0, -1)  # title 1 most watched
    counts[5] = 2**40
    model.start_at_popularity(counts)
    bias = model.output_bias[1 : NUM_ITEMS + 1]
    assert abs(bias.mean().item()) < 1e-5  # centred: only the differences matter
    assert model.output_bias[0] == 0 and model.output_bias[MASK] == 0  # tokens untouched
    with torch.no_grad():
        logits = model.next_item_logits(torch.tensor([[3, 4, MASK]]))[0]
    # The embeddings are still tiny, so the bias decides: the most watched titles come first.
    assert logits.topk(3).indices.tolist() == [5, 1, 2]
