"""Simple recommenders the model is measured against: most popular, ItemKNN, EASE and an
order-aware EASE over the recent titles.

Each is fitted on the training sequences alone and scores every title for a history (the
user's titles, oldest first). They work on item indices 1..N
(data.ItemMapping); `scores(histories)` returns [B, N] float32, column j for title j + 1, and
gives every title of the history -inf, so a seen title is never ranked, whatever the caller
does. Numpy only.

- Most popular: how many training users watched each title, ties broken by catalogue
  popularity (the lower index first).
- ItemKNN: cosine similarity between titles' user columns, shrunk for pairs few users hold
  (G_ij / (sqrt(G_ii G_jj) + shrinkage)), each history title adding its similarity to its
  `neighbours` most similar titles only, summed over the history's titles (Sarwar et al. 2001;
  Deshpande & Karypis 2004). Neighbourhood and shrinkage are chosen on the validation targets
  from KNN_NEIGHBOURS x KNN_SHRINKAGES (evaluate.py), from one X'X.
- EASE (Steck 2019): the item-item weights B = I - P / diag(P), P = (X'X + lambda I)^-1, with
  B's diagonal zero; a history x scores x B. Lambda is chosen on the validation targets from
  EASE_LAMBDAS (evaluate.py); EaseSolver gives B for each lambda, through the Woodbury identity
  when there are fewer users than titles.
- EASE-recent, the order-aware one: the same weights B, but a history title of age a (0 for
  the newest) counts exp(-a / decay), so the last few titles decide what comes next. On
  time-ordered lists (AniList's, MovieLens) the newest title follows the last few far more than
  the whole list; on shuffled lists the decay chosen on validation grows until it is EASE.
  Lambda and decay are chosen together on the validation targets (evaluate.py). Its score is a
  sum over the history, so each title's share of it is exact (`contributions`).

Memory and time: ItemKNN and EASE hold dense title x title matrices, float64 while fitting.
EASE inverts one in float32 (N^3 operations; for 7,390 titles about 0.2 GB and 10 s on 2 cores
per lambda), or, with fewer users U than titles, decomposes a U x U matrix once and then spends
N^2 U operations per lambda (500 users x 5,347 titles: the six lambdas, ranked on validation and
test, in 4.4 s instead of 24). ItemKNN's settings share one X'X: each costs an N^2 cosine,
an argpartition of each row (ROW_BLOCK rows at a time) and a validation ranking; EASE-recent
reuses each lambda's B and costs a validation ranking per decay. Past MAX_DENSE_TITLES titles
all three are skipped with a stated reason (`too_large`) rather than risking an out-of-memory
crash: 12,000 titles are 1.2 GB per float64 matrix.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

# ItemKNN's neighbourhoods (None: every title) and shrinkages tried on validation
KNN_NEIGHBOURS = (20, 50, 100, 200, None)
KNN_SHRINKAGES = (0.0, 10.0, 50.0)
EASE_LAMBDAS = (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
# EASE-recent's decays tried on validation, in titles of age; inf weighs every title alike (EASE).
RECENCY_DECAYS = (1.0, 2.0, 4.0, 8.0, 32.0, float("inf"))
MAX_DENSE_TITLES = 12_000
ROW_BLOCK = 1024  # rows of a title x title matrix cut at a time (nearest_only)
ORDER_AWARE = "EASE-recent"
BASELINE_NAMES = ("popularity", "ItemKNN", "EASE", ORDER_AWARE)


def settings_label(entry: dict) -> str:
    """'neighbours 50, shrinkage 10' or 'lambda 100, decay 2': the settings a baseline's report
    entry (evaluate.fit_baselines) was chosen with, '' for none. A None neighbourhood is every
    title; a None decay weighs every title alike."""
    parts = []
    if "neighbours" in entry:
        parts.append(f"neighbours {'all' if entry['neighbours'] is None else entry['neighbours']}")
    if "shrinkage" in entry:
        parts.append(f"shrinkage {entry['shrinkage']:g}")
    if "lambda" in entry:
        parts.append(f"lambda {entry['lambda']:g}")
    if "decay" in entry:
        parts.append(f"decay {'none' if entry['decay'] is None else format(entry['decay'], 'g')}")
    return ", ".join(parts)


def too_large(num_items: int) -> str | None:
    """Why ItemKNN and EASE are skipped for a catalogue this size, or None when they fit."""
    if num_items <= MAX_DENSE_TITLES:
        return None
    gigabytes = num_items**2 * 8 / 1e9
    return (
        f"skipped: {num_items:,} titles need a dense {num_items:,} x {num_items:,} matrix "
        f"({gigabytes:.1f} GB in float64; the limit is {MAX_DENSE_TITLES:,} titles)"
    )


def history_matrix(histories: Sequence[np.ndarray], num_items: int) -> np.ndarray:
    """[B, N] float32: 1 where a history holds title j + 1."""
    matrix = np.zeros((len(histories), num_items), dtype=np.float32)
    lengths = [len(h) for h in histories]
    if sum(lengths):
        rows = np.repeat(np.arange(len(histories)), lengths)
        matrix[rows, np.concatenate(histories).astype(np.int64) - 1] = 1.0
    return matrix


def recency_weights(length: int, decay: float) -> np.ndarray:
    """[length] float32 weight of each title of a history of this length, oldest first:
    exp(-age / decay), age 0 for the newest; all 1 when decay is inf."""
    ages = np.arange(length - 1, -1, -1, dtype=np.float64)
    return np.exp(-ages / decay).astype(np.float32)


def newest_place_weights(history: np.ndarray, decay: float) -> np.ndarray:
    """[len(history)] recency_weights, with 0 at every place of a title that comes again
    later: a title counts once, at its newest place."""
    columns = np.asarray(history, dtype=np.int64)
    weights = recency_weights(len(columns), decay)
    _, last_from_end = np.unique(columns[::-1], return_index=True)
    newest = np.zeros(len(columns), dtype=bool)
    newest[len(columns) - 1 - last_from_end] = True
    return np.where(newest, weights, np.float32(0.0))


def weighted_history_matrix(
    histories: Sequence[np.ndarray], num_items: int, decay: float
) -> np.ndarray:
    """[B, N] float32: each history's newest_place_weights at its titles' columns."""
    matrix = np.zeros((len(histories), num_items), dtype=np.float32)
    for row, history in enumerate(histories):
        if len(history):
            matrix[row, np.asarray(history, dtype=np.int64) - 1] += newest_place_weights(
                history, decay
            )
    return matrix


def co_occurrence(sequences: Sequence[np.ndarray], num_items: int) -> np.ndarray:
    """[N, N] float64 X'X of the training users: how many users watched both titles."""
    return gram_of(history_matrix(sequences, num_items))


def gram_of(users: np.ndarray) -> np.ndarray:
    """[N, N] float64 X'X of a [U, N] users matrix (history_matrix)."""
    return (users.T @ users).astype(np.float64)


def _exclude_seen(scores: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
    seen = history_matrix(histories, scores.shape[1]) > 0
    scores[seen] = -np.inf
    return scores


class MostPopular:
    name = "popularity"

    def __init__(self, sequences: Sequence[np.ndarray], num_items: int) -> None:
        counts = np.bincount(np.concatenate(list(sequences)), minlength=num_items + 1)[1:]
        tie_break = 0.5 * (1.0 - np.arange(1, num_items + 1) / (num_items + 3))  # < 1
        self.item_scores = (counts + tie_break).astype(np.float64)

    def scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        scores = np.repeat(self.item_scores[None, :], len(histories), axis=0).astype(np.float32)
        return _exclude_seen(scores, histories)


class ItemKNN:
    """Cosine item-item similarity with shrinkage, each title's row cut to its `neighbours`
    most similar titles, summed over the history."""

    name = "ItemKNN"

    def __init__(
        self, gram: np.ndarray, neighbours: int | None = None, shrinkage: float = 0.0
    ) -> None:
        self.neighbours = neighbours  # None: every title
        self.shrinkage = float(shrinkage)
        self.similarity = nearest_only(cosine(gram, shrinkage), neighbours)

    def nearest(self, neighbours: int | None) -> ItemKNN:
        """The same similarity with each row cut to its `neighbours` most similar titles (of
        an ItemKNN that keeps every title)."""
        if self.neighbours is not None:
            raise ValueError("nearest() cuts an ItemKNN that keeps every title")
        cut = copy.copy(self)
        cut.neighbours = neighbours
        cut.similarity = nearest_only(self.similarity, neighbours)
        return cut

    def scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        users = history_matrix(histories, self.similarity.shape[0])
        return _exclude_seen(users @ self.similarity, histories)

    def describe(self) -> str:
        kept = "all" if self.neighbours is None else f"{self.neighbours}"
        return f"neighbours {kept}, shrinkage {self.shrinkage:g}"


def cosine(gram: np.ndarray, shrinkage: float = 0.0) -> np.ndarray:
    """[N, N] float32 G_ij / (sqrt(G_ii G_jj) + shrinkage), zero diagonal: the cosine between
    titles' user columns, pulled towards 0 for pairs few users support."""
    norms = np.sqrt(np.diag(gram))
    norms[norms == 0] = 1.0  # a title nobody trained on is similar to nothing
    similarity = (gram / (np.outer(norms, norms) + shrinkage)).astype(np.float32)
    np.fill_diagonal(similarity, 0.0)
    return similarity


def nearest_only(similarity: np.ndarray, neighbours: int | None) -> np.ndarray:
    """The similarity with each row (what a history title adds to each score) cut to its
    `neighbours` largest entries, the rest 0 (Deshpande & Karypis 2004); all kept when None
    or at least N - 1."""
    n = similarity.shape[0]
    if neighbours is None or neighbours >= n - 1:
        return similarity
    cut = np.zeros_like(similarity)
    for start in range(0, n, ROW_BLOCK):  # argpartition's int64 indices, a block at a time
        block = similarity[start : start + ROW_BLOCK]
        kept = np.argpartition(block, n - neighbours, axis=1)[:, n - neighbours :]
        rows = np.arange(len(block))[:, None]
        cut[start + rows, kept] = block[rows, kept]
    return cut


class EaseSolver:
    """EASE's weights for any lambda from one training matrix X ([U, N], 1 where a user
    holds a title): B = I - P / diag(P) with P = (X'X + lambda I)^-1, B's diagonal zero.

    With fewer users than titles P comes through the Woodbury identity,
    P = (I - X'(XX' + lambda I)^-1 X) / lambda: XX' = V diag(s) V' is decomposed once
    (U x U), and each lambda then costs one [N, U] x [U, N] product instead of inverting an
    N x N matrix (500 users x 5,000 titles: about a tenth of the time). Otherwise X'X + lambda I
    is inverted (`gram`: X'X, when the caller already has it)."""

    def __init__(self, users: np.ndarray, gram: np.ndarray | None = None) -> None:
        self.woodbury = users.shape[0] < users.shape[1]
        if self.woodbury:
            users64 = users.astype(np.float64)
            self.user_eigenvalues, vectors = np.linalg.eigh(users64 @ users64.T)
            self.title_factors = users64.T @ vectors  # [N, U]: X'V
            self.user_eigenvalues = np.maximum(self.user_eigenvalues, 0.0)  # rounding
        else:
            self.gram = gram_of(users) if gram is None else gram

    @classmethod
    def from_sequences(cls, sequences: Sequence[np.ndarray], num_items: int) -> EaseSolver:
        return cls(history_matrix(sequences, num_items))

    def precision(self, lam: float) -> np.ndarray:
        """[N, N] float32 P = (X'X + lambda I)^-1."""
        if self.woodbury:
            factors = (self.title_factors / np.sqrt(lam + self.user_eigenvalues)).astype(np.float32)
            precision = -(factors @ factors.T)
            precision[np.diag_indices_from(precision)] += 1.0
            precision /= np.float32(lam)
            return precision
        # float32: half the time of float64, and ample for a ranking (lambda >= 10 keeps the
        # matrix far from singular)
        regularised = self.gram.astype(np.float32)
        regularised[np.diag_indices_from(regularised)] += lam
        return np.linalg.inv(regularised)

    def weights(self, lam: float) -> np.ndarray:
        """[N, N] float32 B at this lambda: row i holds what title i + 1 adds to each score."""
        precision = self.precision(lam)
        weights = precision / (-np.diag(precision))[None, :]
        np.fill_diagonal(weights, 0.0)
        return weights


class EASE:
    """Steck 2019's closed form for one lambda."""

    name = "EASE"

    def __init__(self, solver: EaseSolver, lam: float) -> None:
        self.lam = float(lam)
        self.weights = solver.weights(lam)

    def scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        users = history_matrix(histories, self.weights.shape[0])
        return _exclude_seen(users @ self.weights, histories)


class RecentEASE:
    """EASE's item-item weights over a history weighted by recency (order-aware)."""

    name = ORDER_AWARE

    def __init__(self, weights: np.ndarray, lam: float, decay: float) -> None:
        self.weights = weights  # [N, N] float32, EaseSolver.weights(lam)
        self.lam = float(lam)
        self.decay = float(decay)

    @classmethod
    def from_ease(cls, ease: EASE, decay: float) -> RecentEASE:
        return cls(ease.weights, ease.lam, decay)

    def scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        users = weighted_history_matrix(histories, self.weights.shape[0], self.decay)
        return _exclude_seen(users @ self.weights, histories)

    def contributions(self, history: np.ndarray, targets: Sequence[int]) -> np.ndarray:
        """[len(history), len(targets)] each history title's exact share of each target's
        score (item indices; the column sums are the scores)."""
        rows = np.asarray(history, dtype=np.int64) - 1
        columns = np.asarray(targets, dtype=np.int64) - 1
        weights = newest_place_weights(history, self.decay)
        return weights[:, None] * self.weights[np.ix_(rows, columns)]

    def describe(self) -> str:
        return f"lambda {self.lam:g}, {decay_words(self.decay) or 'every title alike'}"


def decay_words(decay: float) -> str:
    """'decay 2 titles' ('decay 1 title'), or '' when every title counts alike (inf)."""
    if np.isinf(decay):
        return ""
    return f"decay {decay:g} title{'' if decay == 1 else 's'}"


def pmi_embeddings(
    sequences: Sequence[np.ndarray], num_items: int, dim: int, seed: int = 0
) -> np.ndarray:
    """[N, dim] float32 title vectors from co-occurrence: the truncated SVD of the positive
    pointwise mutual information of title pairs, PPMI(i, j) = max(0, log(n_ij U / (n_i n_j)))
    over U training users (Levy & Goldberg 2014), each vector U_d * sqrt(S_d). Randomised
    (Halko et al. 2011: a range of dim + 10 columns, two power iterations), so O(N^2 dim)."""
    gram = co_occurrence(sequences, num_items)
    counts = np.diag(gram).copy()
    counts[counts == 0] = 1.0
    with np.errstate(divide="ignore"):
        pmi = np.log(gram * len(sequences) / counts[:, None] / counts[None, :])
    ppmi = np.maximum(pmi, 0.0).astype(np.float32)
    np.fill_diagonal(ppmi, 0.0)
    rng = np.random.default_rng(seed)
    columns = min(num_items, dim + 10)
    basis = ppmi @ rng.standard_normal((num_items, columns)).astype(np.float32)
    for _ in range(2):
        basis, _ = np.linalg.qr(basis)
        basis = ppmi @ (ppmi.T @ basis)
    basis, _ = np.linalg.qr(basis)
    small_u, singular, _ = np.linalg.svd(basis.T @ ppmi, full_matrices=False)
    vectors = (basis @ small_u[:, :dim]) * np.sqrt(singular[:dim])[None, :]
    if vectors.shape[1] < dim:  # fewer titles than dimensions
        vectors = np.pad(vectors, ((0, 0), (0, dim - vectors.shape[1])))
    return vectors.astype(np.float32)
