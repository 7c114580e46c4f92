"""BERT4Rec: a bidirectional Transformer that predicts masked titles of a watch sequence.

Read top to bottom: the config, dropout, one attention layer, one feed-forward layer, one encoder
block, then the network. Inputs are left-padded [B, L] item indices in the token layout of
vocab.py (0 padding, 1..num_items titles, num_items + 1 MASK, num_items + 2 reserved). Besides
torch it imports vocab.py and packed_dropout.py, which depend on nothing but torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import packed_dropout, vocab
from .packed_dropout import DROPOUT_MASKS
from .vocab import PAD_INDEX


@dataclass(frozen=True)
class ModelConfig:
    num_items: int
    max_seq_len: int
    hidden: int
    layers: int
    heads: int
    ff_dim: int
    dropout: float
    # "packed": dropout masks from packed random bits when training on the CPU (packed_dropout.py;
    # GPUs keep torch's fused dropout); "torch": torch's dropout everywhere.
    dropout_masks: str = "packed"

    def __post_init__(self) -> None:
        if self.dropout_masks not in DROPOUT_MASKS:
            raise ValueError(f"dropout_masks must be one of {DROPOUT_MASKS}")

    @property
    def vocab_size(self) -> int:
        return vocab.vocab_size(self.num_items)

    def to_dict(self) -> dict:
        return asdict(self)


def dropout(x: torch.Tensor, p: float, training: bool, masks: str) -> torch.Tensor:
    """F.dropout; with masks="packed", packed_dropout's masks where it applies (CPU training)."""
    if not training or p == 0.0:
        return x
    if masks == "packed" and packed_dropout.uses_packed_masks(x, p, training):
        return packed_dropout.dropout(x, p)
    return F.dropout(x, p, training=True)


class Dropout(nn.Dropout):
    """nn.Dropout through `dropout` above, with the network's dropout_masks setting."""

    def __init__(self, p: float, masks: str) -> None:
        super().__init__(p)
        self.masks = masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, self.masks)


class SelfAttention(nn.Module):
    """Multi-head attention in both directions; padding is never attended to."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.dropout = config.dropout
        self.packed = config.dropout_masks == "packed"
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.proj = nn.Linear(config.hidden, config.hidden)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[B, L, H] -> [B, L, H], or [B, 1, H] for the last position alone (last_only)."""
        batch, _, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=2)
        if last_only:
            q = q[:, -1:]
        # [B, L, H] -> [B, heads, L, H / heads]
        q, k, v = (t.view(batch, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        # keep: [B, L] True for real tokens, broadcast over heads and queries (a key-padding mask).
        if self.packed and packed_dropout.uses_packed_masks(x, self.dropout, self.training):
            y = packed_dropout.attention(q, k, v, keep, self.dropout)
        else:
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=keep[:, None, None, :],
                dropout_p=self.dropout if self.training else 0.0,
            )
        y = y.transpose(1, 2).contiguous().view(batch, q.shape[2], hidden)
        return self.proj(y)


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.hidden, config.ff_dim)
        self.down = nn.Linear(config.ff_dim, config.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class EncoderBlock(nn.Module):
    """Post-LayerNorm residual block, as in BERT: x = LN(x + sublayer(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden)
        self.feed_forward = FeedForward(config)
        self.feed_forward_norm = nn.LayerNorm(config.hidden)
        self.dropout = Dropout(config.dropout, config.dropout_masks)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """last_only: only the last position's output, [B, 1, H] (it still attends to all)."""
        attended = self.attention(x, keep, last_only)
        x = self.attention_norm((x[:, -1:] if last_only else x) + self.dropout(attended))
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))


class BERT4Rec(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.vocab_size, config.hidden, padding_idx=PAD_INDEX)
        self.position_embedding = nn.Embedding(config.max_seq_len, config.hidden)
        self.embedding_norm = nn.LayerNorm(config.hidden)
        self.embedding_dropout = Dropout(config.dropout, config.dropout_masks)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.layers))
        # The output layer of the BERT4Rec paper: a GELU projection, then scores against the
        # item embeddings themselves (shared weights) plus a bias per item. Sharing the table
        # lets rarely watched titles learn from both ends.
        self.output_transform = nn.Linear(config.hidden, config.hidden)
        self.output_norm = nn.LayerNorm(config.hidden)
        self.output_bias = nn.Parameter(torch.zeros(config.vocab_size))
        not_a_title = torch.ones(config.vocab_size, dtype=torch.bool)
        not_a_title[vocab.title_slice(config.num_items)] = False
        self.register_buffer("not_a_title", not_a_title, persistent=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # BERT's initialisation: N(0, 0.02) weights, zero biases, zero padding embedding.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    @torch.no_grad()
    def start_at_popularity(self, counts: torch.Tensor) -> None:
        """Set the output bias of each title to log(1 + its count in the training sequences),
        centred, so that the untrained network already ranks by popularity. Without it the
        shared item embeddings first learn popularity themselves, all leaning toward one
        direction, and training can stall near the popularity baseline for many epochs."""
        titles = vocab.title_slice(self.config.num_items)
        log_counts = torch.log1p(counts[titles].to(self.output_bias.dtype))
        self.output_bias[titles] = log_counts - log_counts.mean()

    def encode(self, items: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[B, L] item indices -> [B, L, hidden] contextual states; with last_only [B, 1, hidden],
        the last position's alone: the last block then skips its other queries and their
        feed-forward, which nothing reads when only the newest position is scored."""
        length = items.shape[1]
        if length > self.config.max_seq_len:
            raise ValueError(f"sequence of {length} is longer than max_seq_len")
        # Left padding puts the newest title in the last column; positions count back from it,
        # so "the newest title" has the same position embedding in every batch.
        positions = torch.arange(
            self.config.max_seq_len - length, self.config.max_seq_len, device=items.device
        )
        x = self.item_embedding(items) + self.position_embedding(positions)
        x = self.embedding_dropout(self.embedding_norm(x))
        keep = items != PAD_INDEX
        for i, block in enumerate(self.blocks):
            x = block(x, keep, last_only=last_only and i == len(self.blocks) - 1)
        return x

    def item_logits(self, states: torch.Tensor) -> torch.Tensor:
        """[..., hidden] -> [..., vocab] scores; padding and special tokens get -inf, so they can
        never be predicted, recommended or counted as a hit."""
        h = self.output_norm(F.gelu(self.output_transform(states)))
        # -inf goes into the bias, a vector, and the bias into the matrix product: no extra
        # pass over the [..., vocab] scores.
        bias = self.output_bias.masked_fill(self.not_a_title, float("-inf"))
        return F.linear(h, self.item_embedding.weight, bias)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Training: logits only at the masked positions, [M, vocab] in row-major order of
        `labels != 0` (so they line up with `labels[labels != 0]`). Scoring the whole catalogue
        at every position would cost B x L x vocab instead of M x vocab."""
        states = self.encode(inputs)
        return self.item_logits(states[labels != PAD_INDEX])

    def next_item_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, vocab] scores for the MASK in the last column (data.next_item_inputs)."""
        return self.item_logits(self.encode(inputs, last_only=True)[:, -1])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def masked_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the masked positions, in float32 whatever the autocast dtype."""
    return F.cross_entropy(logits.float(), targets)


# Far below any score, yet finite: a soft target of 0 times log(0) = -inf would be nan.
HIDDEN_SCORE = -1e4


def hide_shown_titles(
    logits: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """The masked positions' logits [M, vocab] (forward's rows) with every title that their own
    sequence shows set to HIDDEN_SCORE. A watch list holds each title once, so a shown title is
    never the hidden one, and ranking leaves a user's own titles out: the loss then spends
    nothing on pushing down what the sequence already holds."""
    num_items = logits.shape[1] - vocab.NUM_SPECIAL_TOKENS
    is_title = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    is_title[vocab.title_slice(num_items)] = True
    shown = torch.zeros(len(inputs), logits.shape[1], dtype=torch.bool, device=logits.device)
    shown.scatter_(1, inputs, True)
    rows = (labels != PAD_INDEX).nonzero()[:, 0]
    return logits.masked_fill(shown[rows] & is_title, HIDDEN_SCORE)
