"""Why a title is recommended: the titles of the history that lift it most.

The method: a history title's credit for a recommendation is its lift, how much higher the
recommendation's log-probability is with that title as the whole history than with an empty
one, less the same rise averaged over every title that may be recommended. The reasons are the
(at most) three titles of the history with the largest credit, counting only credits above
zero. The log-probabilities are the model's own, a softmax over every title of the catalogue.

Why not occlusion, the fall of the recommendation when one title is taken out of the whole
history (what this module did before): it misses what several titles say at once. After three
seasons of a series, taking out any one of them still leaves the other two, so no season's
removal lowers the fourth much, and a stray title that happened to move it more was named. On
the tests' planted franchises (nine tiny networks, 62 chains learned in all) the part just
before came first for 43 chains by occlusion and for 59 by the lift (docs/ARCHITECTURE.md, Reasons).
Why the lift and not the plain rise: a title that sharpens or flattens the whole distribution
raises the log-probability of every unlikely title alike; without the correction one such title
was the first reason of about 14 of a demo user's 20 recommendations (with it, about 6).

Cost: one forward pass with one row of two columns (the title, then MASK) per title the model
reads (the newest max_seq_len - 1: older ones cannot have moved the recommendation), plus the
empty history, for all the recommendations of a user at once: a small fraction of the scoring
pass, whose rows are as long as the history.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import data
from .model import BERT4Rec
from .vocab import title_slice

METHOD = (
    "each reason is a title of your history that, on its own, raises the recommendation's "
    "log-probability most beyond what it does for the other titles (its lift); at most three, "
    "only those with a lift above zero"
)
MAX_REASONS = 3


@torch.no_grad()
def explain(
    model: BERT4Rec,
    history: np.ndarray,
    targets: Sequence[int],
    mask_index: int,
    *,
    max_reasons: int = MAX_REASONS,
) -> list[list[tuple[int, float]]]:
    """For each target (item index) its reasons: (history item index, lift in nats), largest
    first. `history`: the item indices of the user's history, oldest first (the model reads
    the newest max_seq_len - 1)."""
    if not len(targets):
        return []
    device = next(model.parameters()).device
    history = np.asarray(history, dtype=np.int64)
    read = history[-(model.config.max_seq_len - 1) :]
    items = torch.as_tensor(np.unique(read), device=device)
    # Row 0: no history; row 1 + c: title c alone.
    alone = torch.full((len(items) + 1, 2), mask_index, device=device)
    alone[0, 0] = data.PAD_INDEX
    alone[1:, 0] = items
    log_probs = torch.log_softmax(model.next_item_logits(alone).float(), dim=1)
    rises = log_probs[1:] - log_probs[0]  # [C, vocab]
    others = torch.zeros(rises.shape[1], dtype=torch.bool, device=device)
    others[title_slice(model.config.num_items)] = True
    others[torch.as_tensor(history, device=device)] = False
    chosen = torch.as_tensor(list(targets), device=device)
    lifts = (rises[:, chosen] - rises[:, others].mean(dim=1, keepdim=True)).T.cpu()  # [T, C]
    items = items.tolist()
    found = []
    for row in lifts:
        order = torch.argsort(row, descending=True)[:max_reasons].tolist()
        found.append([(items[c], float(row[c])) for c in order if row[c] > 0])
    return found
