"""BERT4Rec: a bidirectional Transformer that predicts masked titles of a watch sequence.

Read top to bottom: the config, one attention layer, one feed-forward layer, one encoder block,
then the network. Inputs are left-padded [B, L] item indices (see data.py): 0 is padding,
1..num_items are titles, num_items + 1 is MASK, num_items + 2 is reserved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import NUM_SPECIAL_TOKENS, PAD_INDEX


@dataclass(frozen=True)
class ModelConfig:
    num_items: int
    max_seq_len: int
    hidden: int
    layers: int
    heads: int
    ff_dim: int
    dropout: float

    @property
    def vocab_size(self) -> int:
        return self.num_items + NUM_SPECIAL_TOKENS

    def to_dict(self) -> dict:
        return asdict(self)


class SelfAttention(nn.Module):
    """Multi-head attention in both directions; padding is never attended to."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.proj = nn.Linear(config.hidden, config.hidden)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=2)
        # [B, L, H] -> [B, heads, L, H / heads]
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        # keep: [B, L] True for real tokens, broadcast over heads and queries (a key-padding mask).
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=keep[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )
        y = y.transpose(1, 2).contiguous().view(batch, length, hidden)
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
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, keep)))
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))


class BERT4Rec(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.vocab_size, config.hidden, padding_idx=PAD_INDEX)
        self.position_embedding = nn.Embedding(config.max_seq_len, config.hidden)
        self.embedding_norm = nn.LayerNorm(config.hidden)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.layers))
        # The output layer of the BERT4Rec paper: a GELU projection, then scores against the
        # item embeddings themselves (shared weights) plus a bias per item. Sharing the table
        # lets rarely watched titles learn from both ends.
        self.output_transform = nn.Linear(config.hidden, config.hidden)
        self.output_norm = nn.LayerNorm(config.hidden)
        self.output_bias = nn.Parameter(torch.zeros(config.vocab_size))
        not_a_title = torch.ones(config.vocab_size, dtype=torch.bool)
        not_a_title[1 : config.num_items + 1] = False
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
        titles = slice(1, self.config.num_items + 1)
        log_counts = torch.log1p(counts[titles].to(self.output_bias.dtype))
        self.output_bias[titles] = log_counts - log_counts.mean()

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """[B, L] item indices -> [B, L, hidden] contextual states."""
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
        for block in self.blocks:
            x = block(x, keep)
        return x

    def item_logits(self, states: torch.Tensor) -> torch.Tensor:
        """[..., hidden] -> [..., vocab] scores; padding and special tokens get -inf, so they can
        never be predicted, recommended or counted as a hit."""
        h = self.output_norm(F.gelu(self.output_transform(states)))
        logits = h @ self.item_embedding.weight.T + self.output_bias
        return logits.masked_fill(self.not_a_title, float("-inf"))

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Training: logits only at the masked positions, [M, vocab] in row-major order of
        `labels != 0` (so they line up with `labels[labels != 0]`). Scoring the whole catalogue
        at every position would cost B x L x vocab instead of M x vocab."""
        states = self.encode(inputs)
        return self.item_logits(states[labels != PAD_INDEX])

    def next_item_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, vocab] scores for the MASK in the last column (data.next_item_inputs)."""
        return self.item_logits(self.encode(inputs)[:, -1])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def masked_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the masked positions, in float32 whatever the autocast dtype."""
    return F.cross_entropy(logits.float(), targets)
