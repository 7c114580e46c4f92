"""Why a title is recommended, by the scorer that ranked it: the titles of the history that
lift it most, or, when none does, what does.

Credit: each history title gets a credit for each recommendation, in the units of the score
that ranked the list.

- The model (BERT4Rec): its lift, how much higher the recommendation's log-probability is with
  that title as the whole history than with an empty one, less the same rise averaged over every
  title that may be recommended (nats). The log-probabilities are the model's own, a softmax
  over the catalogue.
- An item-item part (EASE, EASE-recent; blending.py): its exact share of the score. The part
  scores title t as the sum over the history's titles h of w_h * B[h, t] (w_h = exp(-age / decay),
  1 for EASE), so h's credit is w_h * B[h, t] (baselines.RecentEASE.contributions) and the
  credits add up to the score.
- A mix: each part's credit times what one unit of that part's score is worth in the mix for
  this user, its share over its spread (blending.credit_scales): the credit in the mixed,
  standardised score itself. One list ordered by it, so a fan reads one "because you watched
  A, B" whose first title moved the mixed score most, whichever part it moved.

Choosing, over one user's whole list:

- a Continue entry's reason is the entry before it (rules.py, from AniList's relations: "next
  after Season 1"), whatever the credits say;
- otherwise the titles that carry at least 5% of all the credit the history gives it
  (MIN_PART), largest first, at most three, a later one only with half the first one's credit
  at least (SECOND_SHARE) and never more. A lift of the network under 0.05 nats (MIN_LIFT: the
  title alone raises the probability by under 5%) counts 0: a weakly trained network lifts
  by a few thousandths of a nat, most of all from the most watched titles, and naming those
  says nothing (on a small demo model, 400 users and 15 epochs, the five most watched titles
  were the first reason of 4,890 of 6,560 recommendations, median lift 0.003 nats, the
  largest 0.016); such a list is ranked by the network's prior, and the reason says so;
- a title is the first reason of at most a third of the list (FIRST_SHARE) and a reason at all
  of at most half of it (NAMED_SHARE): past that the next-best title that lifts it is named.
  Under EASE-recent the newest title lifts nearly everything and would lead the reasons of most
  of a list: true, and of no use to read twenty times. Which recommendations keep such a title:
  those it leads by most credit; one that another title lifts nearly as much names that one;
- with no title left, what ranks it instead (`without_a_title`): popularity, else the genres it
  shares with the history, else the history as a whole. Never nothing.

Why the lift and not occlusion (the fall of the recommendation when one title is taken out of
the whole history): after three seasons of a series, taking out any one of them still leaves
the other two, so no season's removal lowers the fourth much, and a stray title that happened to
move it more was named. On the tests' planted franchises (nine tiny networks, 62 chains learned
in all) the part just before came first for 43 chains by occlusion and for 59 by the lift
(docs/ARCHITECTURE.md, Reasons). Why the lift and not the plain rise: a title that sharpens or
flattens the whole distribution raises the log-probability of every unlikely title alike.

Cost of the model's credits: one forward pass with one row of two columns (the title, then
MASK) per title the model reads (the newest max_seq_len - 1: older ones cannot have moved the
recommendation), plus the empty history, for all the recommendations of a user at once. An
item-item part's credits are one gather from its weights.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from . import baselines, data, db
from .model import BERT4Rec
from .vocab import title_slice

MAX_REASONS = 3
FIRST_SHARE = 1 / 3  # of a user's list that one title may be the first reason of
SECOND_SHARE = 1 / 2  # of the first reason's credit that a later reason must have at least
MIN_PART = 0.05  # of all the credit the history carries for a title that a reason must have
MIN_LIFT = 0.05  # nats: a title that alone raises the model's probability by under 5% lifts nothing
NAMED_SHARE = 1 / 2  # of a user's list that one title may be a reason of at all
MOST_WATCHED = 0.05  # of the catalogue: "one of the most watched" (at least the top 10)

CHOOSING = (
    "at most three titles, each with 5% of all the credit your titles give it at least and a "
    "later one with half the first one's at least; one title is the first reason of at "
    "most a third of the list and a reason of at most half of it (past that the next best is "
    "named); a Continue entry names the entry before it; where no title of the history lifts "
    "a recommendation, the reason says what ranks it instead (popularity, shared genres)"
)
MODEL_CREDIT = (
    "each reason is a title of your history that, on its own, raises the model's "
    "log-probability of the recommendation most beyond what it does for the other titles "
    "(its lift, 0.05 at least)"
)
PART_CREDIT = (
    "each reason is a title of your history with the largest exact share of {part}'s score: "
    "it sums, over your titles, EASE's weight from each to the recommendation{recency}"
)
MIX_CREDIT = (
    "each reason is a title of your history with the largest credit in the mixed score: its "
    "lift in the model (how much it alone raises the model's log-probability beyond the other "
    "titles, counted from 0.05) and its exact share of {part}'s score, each times that part's "
    "share of the mix over its spread for you"
)


class Credits(NamedTuple):
    items: np.ndarray  # [C] distinct item indices of the history
    values: np.ndarray  # [T, C] float64: each one's credit for each target


def method(part: str | None, share: float, recent: bool) -> str:
    """How the reasons are found, for --json and the page: the model alone (share 0), an
    item-item part alone (share 1) or a mix."""
    recency = ", each weighted by how recent it is" if recent else ""
    if share == 0 or part is None:
        credit = MODEL_CREDIT
    elif share == 1:
        credit = PART_CREDIT.format(part=part, recency=recency)
    else:
        credit = MIX_CREDIT.format(part=part)
    return f"{credit}; {CHOOSING}"


@torch.no_grad()
def model_credits(
    model: BERT4Rec,
    history: np.ndarray,
    targets: Sequence[int],
    mask_index: int,
    *,
    least: float = 0.0,
) -> Credits:
    """Each title's lift (nats) for each target (item indices), over the titles the model reads
    (the newest max_seq_len - 1 of `history`, item indices oldest first); a rise under `least`
    counts 0 (MIN_LIFT when recommending)."""
    device = next(model.parameters()).device
    history = np.asarray(history, dtype=np.int64)
    read = np.unique(history[-(model.config.max_seq_len - 1) :])
    items = torch.as_tensor(read, device=device)
    # Row 0: no history; row 1 + c: title c alone.
    alone = torch.full((len(items) + 1, 2), mask_index, device=device)
    alone[0, 0] = data.PAD_INDEX
    alone[1:, 0] = items
    log_probs = torch.log_softmax(model.next_item_logits(alone).float(), dim=1)
    rises = log_probs[1:] - log_probs[0]  # [C, vocab]
    others = torch.zeros(rises.shape[1], dtype=torch.bool, device=device)
    others[title_slice(model.config.num_items)] = True
    others[torch.as_tensor(history, device=device)] = False
    chosen = torch.as_tensor(list(targets), dtype=torch.long, device=device)
    lifts = rises[:, chosen] - rises[:, others].mean(dim=1, keepdim=True)  # [C, T]
    # Off the device before float64 (MPS has none).
    lifts = torch.where((lifts > 0) & (lifts < least), 0.0, lifts).T.cpu().double()
    return Credits(read, lifts.numpy())


def part_credits(
    part: baselines.RecentEASE, history: np.ndarray, targets: Sequence[int]
) -> Credits:
    """Each history title's exact share of the part's score of each target (item indices)."""
    history = np.asarray(history, dtype=np.int64)
    items, place = np.unique(history, return_inverse=True)
    shares = part.contributions(history, list(targets)).astype(np.float64)  # [len, T]
    values = np.zeros((len(targets), len(items)))
    np.add.at(values.T, place, shares)  # a title listed twice counts at its newest place only
    return Credits(items, values)


def mixed(*parts: tuple[Credits, float]) -> Credits:
    """The sum of each Credits times its scale, over every title any of them names."""
    items = np.unique(np.concatenate([credits.items for credits, _ in parts]))
    values = np.zeros((len(parts[0][0].values), len(items)))
    for credits, scale in parts:
        values[:, np.searchsorted(items, credits.items)] += scale * credits.values
    return Credits(items, values)


def choose(
    candidates: Sequence[Sequence[tuple[int, float]]],
    fixed: Sequence[int | None],
    *,
    max_reasons: int = MAX_REASONS,
) -> list[list[tuple[int, float | None]]]:
    """Each recommendation's reasons, (title, credit) largest first, for one user's list.
    `candidates[r]`: every history title's credit for recommendation r; `fixed[r]`: a title
    that is r's one reason whatever its credit (a Continue entry's predecessor), or None. A
    reason carries MIN_PART of the row's credit at least; a later one at most the first's and
    SECOND_SHARE of it at least. A title is the first reason of at most FIRST_SHARE and a
    reason of at most NAMED_SHARE of the recommendations whose reasons are chosen (at least
    one each); fixed reasons count first, then the others, those whose best title leads its
    next by most first (`_lead`): where a title stands alone it stays the reason, and a
    recommendation that another title lifts almost as much gives way. [] where no title is
    left that may be named."""
    size = sum(title is None for title in fixed)
    first_limit = max(1, int(size * FIRST_SHARE))
    named_limit = max(1, int(size * NAMED_SHARE))
    firsts = Counter(title for title in fixed if title is not None)
    named = Counter(firsts)
    chosen: list[list[tuple[int, float | None]]] = [
        [] if title is None else [(title, dict(row).get(title))]
        for row, title in zip(candidates, fixed)
    ]
    free = [r for r, title in enumerate(fixed) if title is None]
    for r in sorted(free, key=lambda r: -_lead(candidates[r])):  # stable: ties by rank
        least = max(MIN_PART * sum(abs(credit) for _, credit in candidates[r]), 1e-12)
        lifting = sorted(
            (p for p in candidates[r] if p[1] >= least and named[p[0]] < named_limit),
            key=lambda p: -p[1],
        )
        first = next((p for p in lifting if firsts[p[0]] < first_limit), None)
        if first is None:
            continue
        # Later reasons lift it less than the first (a title that leads too much of the list
        # already is left out where it would lift it more) and at least SECOND_SHARE as much.
        strong = [
            p for p in lifting if p is not first and SECOND_SHARE * first[1] <= p[1] <= first[1]
        ]
        chosen[r] = [first, *strong[: max_reasons - 1]]
        firsts[first[0]] += 1
        named.update(t for t, _ in chosen[r])
    return chosen


def _lead(row: Sequence[tuple[int, float]]) -> float:
    """How far a recommendation's best title leads its next, in credit (the score's units, the
    same for one user's list): what naming the next one instead would leave unsaid."""
    lifts = sorted((credit for _, credit in row if credit > 0), reverse=True)
    return lifts[0] - (lifts[1] if len(lifts) > 1 else 0.0) if lifts else 0.0


def without_a_title(anime: db.Anime, history: Sequence[db.Anime], catalogue_size: int) -> str:
    """What ranks a recommendation that no title of the history lifts: it is among the most
    watched anime, or it shares the genres the history holds most, or the history as a whole
    does. Each claim is checked against the catalogue and the history."""
    rank = anime.popularity_rank
    if rank is not None and rank <= max(10, int(catalogue_size * MOST_WATCHED)):
        return f"one of the most watched anime (#{rank} on AniList)"
    counts = Counter(genre for a in history for genre in a.genres)
    common = [g for g, _ in counts.most_common(3)]
    shared = [g for g in anime.genres if g in common][:2]
    if shared:
        like = sum(1 for a in history if set(a.genres) & set(shared))
        return f"{' and '.join(shared)}, like {like} of the {len(history)} titles you watched"
    return "ranked by your history as a whole; no single title of it stands out"
