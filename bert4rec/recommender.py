"""Recommendations from a trained model: the titles a user is most likely to watch next.

    recommender = Recommender.load("output/models", catalogue)
    result = recommender.recommend(WatchedTitles(watched=[5114, 9253, 11061]))

A history is AniList ids in watch order, oldest first. history_from_entries() builds one from a
stored or fetched anime list with the rule training used (data.watch_order_key), so the model
reads a user's titles in the order it learned from. The model sees the newest max_seq_len - 1
titles followed by MASK and scores every catalogue title for the MASK (data.next_item_inputs).

Never recommended: padding and the special tokens (the model gives them -inf), every title on
the user's list, watched or planned (WatchedTitles.exclude; planned titles may be let back in), and,
when asked, adult titles.

Score: the model's probability that a title is the user's next one, among the titles it may
recommend to them (a softmax over the catalogue without the excluded titles).

When training saved a blend for this very model (blending.py), the scores are those of the
scorer it chose on validation: EASE or EASE-recent alone, or the model mixed with one; the
score is then a softmax of those scores, which orders the list but is no probability.

Then, walking the ranking from the top: the franchise rules and the filters (rules.py,
filters.py) keep what a fan would want until top_k titles are kept, a short Continue list holds
the next entry of each franchise the user is following, and every title kept gets its reason
from the scorer that ranked it (reasons.py: the history titles whose credit for it is largest,
a Continue entry's predecessor, or what ranks it when no title lifts it).

Loading is safe: the model file is read with torch.load(weights_only=True) (checkpoint.py), and
the mapping from item_mappings.json, never from the pickle. A model and a mapping that disagree
stop with a message instead of recommending the wrong titles.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from . import blending, checkpoint, commands, data, db, devices, files, paths, reasons
from .anilist import AniListClient, NotFound, PrivateUser
from .data import ItemMapping
from .filters import NO_FILTERS, Filters
from .franchise import Franchises
from .model import BERT4Rec
from .rules import (
    CONTINUED_STATUSES,
    DEFAULT_RULES,
    FranchiseRules,
    Pick,
    Selection,
    Viewer,
    select,
)
from .titles import TitleIndex, TitleMatch

DEFAULT_MODEL_DIR = os.path.join(paths.DEFAULT_OUTPUT_DIR, "models")
MODEL_FILE = checkpoint.BEST_MODEL_FILE
FINAL_MODEL_FILE = checkpoint.FINAL_MODEL_FILE
MAPPING_FILE = checkpoint.MAPPING_JSON_FILE
DEFAULT_TOP_K = 20
DEFAULT_BATCH_SIZE = 128  # users per forward pass in batch mode
SCORE_MEANING = (
    "the model's probability that the title is the next one watched, among the titles it may "
    "recommend (those not on the list)"
)
BLEND_SCORE_MEANING = (
    "a softmax of the scores used (standardised per user, see Scoring), among the titles it "
    "may recommend: it orders the list, it is not a probability"
)
CSV_COLUMNS = (
    "user_name",
    "user_id",
    "list",
    "rank",
    "anime_id",
    "title",
    "title_romaji",
    "format",
    "year",
    "genres",
    "probability",
    "reason",
    "rules_applied",
    "anilist_url",
    "cover",
)
ANILIST_PAGE = "https://anilist.co/anime/{}"  # a title's page when the catalogue has no site_url

TRAIN_FIRST = (
    f"Train one first ({commands.launcher('3_train_model')}, or {commands.launcher('run_all')} "
    "for every stage), or point --model at a .pth file or the folder holding it."
)
TRAIN_AGAIN = f"train again ({commands.launcher('3_train_model')})"


class RecommendError(Exception):
    """Recommendations cannot be made. The message says what to do."""


# --- histories ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchedTitles:
    """What to recommend from."""

    watched: Sequence[int]  # AniList ids in watch order, oldest first: what the model reads
    exclude: Collection[int] = ()  # more ids never to recommend (planned titles, say)
    # The list status of each watched id (db.WATCHED_STATUSES); a title missing counts as
    # COMPLETED (a history typed by hand).
    statuses: Mapping[int, str] = field(default_factory=dict)

    def viewer(self) -> Viewer:
        """What the franchise rules read: what was seen, dropped, and followed."""
        status = {a: self.statuses.get(a, "COMPLETED") for a in self.watched}
        return Viewer(
            seen=frozenset(status),
            dropped=frozenset(a for a, s in status.items() if s == "DROPPED"),
            started=[a for a in reversed(self.watched) if status[a] in CONTINUED_STATUSES],
        )


def history_from_entries(
    entries: Sequence[db.ListEntry], *, include_planning: bool = False
) -> WatchedTitles:
    """A list's watched titles in training's watch order; every title on it is excluded, but
    PLANNING ones when include_planning."""
    watched = sorted((e for e in entries if e.watched), key=data.watch_order_key)
    exclude = [e.anime_id for e in entries if not (include_planning and e.status == "PLANNING")]
    statuses = {e.anime_id: e.status for e in watched}
    return WatchedTitles(tuple(e.anime_id for e in watched), frozenset(exclude), statuses)


@dataclass(frozen=True)
class TitleHistory:
    history: WatchedTitles
    matches: list[TitleMatch]  # one per query, in order; anime None for those not matched

    @property
    def unmatched(self) -> list[TitleMatch]:
        return [m for m in self.matches if m.anime is None]


def history_from_titles(queries: Sequence[str], catalogue: Sequence[db.Anime]) -> TitleHistory:
    """A history typed by hand (oldest first), each title matched as titles.py describes."""
    index = TitleIndex(catalogue)
    matches = [index.match(query) for query in queries]
    watched = tuple(m.anime.anime_id for m in matches if m.anime is not None)
    return TitleHistory(WatchedTitles(watched), matches)


def fetch_list(client: AniListClient, user_name: str) -> tuple[str, tuple[db.ListEntry, ...]]:
    """(name as AniList spells it, list entries) of a user, fetched live."""
    try:
        user_list = client.fetch_user_list(user_name=user_name)
    except PrivateUser:
        raise RecommendError(
            f"{user_name}'s anime list on AniList is private; only public lists can be read."
        ) from None
    except NotFound:
        raise RecommendError(
            f"AniList has no user named {user_name!r}; check the spelling."
        ) from None
    return user_list.name, user_list.entries


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    anime: db.Anime  # a title of the history
    # Its credit for the recommendation in the units of the score that ranked the list
    # (reasons.py); None where it is named for another cause (a Continue entry's predecessor,
    # whose credit was not computed).
    credit: float | None


@dataclass(frozen=True)
class Recommendation:
    rank: int
    anime: db.Anime
    probability: float  # see SCORE_MEANING
    reasons: tuple[Reason, ...] = ()  # the history titles behind it, first the main one
    rules_applied: tuple[str, ...] = ()  # how the franchise rules changed this place, in words
    # In words: "because you watched A, B", "next after A", or what ranks it when no title of
    # the history does (reasons.without_a_title); "" only with explain=False (--no-reasons).
    reason: str = ""

    @property
    def anilist_url(self) -> str:
        return self.anime.site_url or ANILIST_PAGE.format(self.anime.anime_id)

    def to_dict(self) -> dict:
        a = self.anime
        return {
            "rank": self.rank,
            "anime_id": a.anime_id,
            "title": a.title,
            "title_romaji": a.title_romaji,
            "title_english": a.title_english,
            "title_native": a.title_native,
            "format": a.format,
            "year": a.start_year,
            "genres": list(a.genres),
            "is_adult": a.is_adult,
            "popularity": a.popularity,
            "probability": self.probability,
            "reason": self.reason,
            "because": [
                {
                    "anime_id": r.anime.anime_id,
                    "title": r.anime.title,
                    "credit": None if r.credit is None else round(r.credit, 4),
                }
                for r in self.reasons
            ],
            "rules_applied": list(self.rules_applied),
            "anilist_url": self.anilist_url,
            "cover_large": a.cover_large,
            "cover_medium": a.cover_medium,
        }


@dataclass(frozen=True)
class Recommendations:
    items: tuple[Recommendation, ...]
    titles_used: int  # titles of the history the model knows (it reads the newest of them)
    unknown_ids: tuple[int, ...]  # ids of the history not in the model's catalogue (left out)
    continue_items: tuple[Recommendation, ...] = ()  # next entries of franchises being followed
    left_out: Counter = field(default_factory=Counter)  # rules.LEFT_OUT_* -> titles passed over


# --- the recommender ---------------------------------------------------------------------------


def find_model_file(path: str | os.PathLike[str]) -> Path:
    """--model: a .pth file, or a folder holding best_model.pth (output/models/), or the output
    folder above it."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / MODEL_FILE, path / "models" / MODEL_FILE):
            if candidate.is_file():
                return candidate
        raise RecommendError(f"no trained model in {path} (no {MODEL_FILE}). {TRAIN_FIRST}")
    if not path.is_file():
        raise RecommendError(f"no trained model at {path}. {TRAIN_FIRST}")
    return path


def find_mapping_file(model_file: Path) -> Path | None:
    """item_mappings.json beside the model, or in models/ for a file in checkpoints/."""
    for candidate in (
        model_file.parent / MAPPING_FILE,
        model_file.parent.parent / "models" / MAPPING_FILE,
    ):
        if candidate.is_file():
            return candidate
    return None


def read_mapping(path: Path) -> ItemMapping:
    try:
        with open(path, encoding="utf-8") as handle:
            return ItemMapping.from_dict(json.load(handle))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RecommendError(
            f"cannot read the item mapping {path} ({exc}). Use the item_mappings.json that "
            f"training wrote with the model, or {TRAIN_AGAIN}."
        ) from exc


def check_same_mapping(model: ItemMapping, mapping: ItemMapping, what: str) -> None:
    """Stop when the model's titles are not the mapping's; `what` names the two files."""
    if model == mapping:
        return
    if model.num_items != mapping.num_items:
        why = f"the model knows {model.num_items} titles, the mapping {mapping.num_items}"
    else:
        first = next(
            i for i, (a, b) in enumerate(zip(model.anime_ids, mapping.anime_ids)) if a != b
        )
        why = (
            f"both have {model.num_items} titles but not the same AniList ids (item "
            f"{first + 1} is {model.anime_ids[first]} in the model, "
            f"{mapping.anime_ids[first]} in the mapping)"
        )
    raise RecommendError(
        f"{what} do not match: {why}. They come from different training runs; keep each "
        f"model with the {MAPPING_FILE} written with it, or {TRAIN_AGAIN}."
    )


def choose_device(name: str) -> torch.device:
    """--device (devices.select_device); recommending is quick on the CPU."""
    try:
        return devices.select_device(name)
    except devices.DeviceError as exc:
        raise RecommendError(str(exc)) from None


class Scored(NamedTuple):
    log_probs: torch.Tensor  # [B, vocab] of the scores used; -inf: may not be recommended
    model_scale: torch.Tensor  # [B] what a unit of the model's credit is worth (credit_scales)
    part_scale: torch.Tensor  # [B] the same for the item-item part's; 0 without a blend


class OpenedModel(NamedTuple):
    path: Path
    loaded: checkpoint.LoadedModel


def open_model(
    model_path: str | os.PathLike[str],
    device: str | torch.device,
    notify: Callable[[str], None],
) -> OpenedModel:
    """The model of a file or folder (find_model_file), checked against its
    item_mappings.json."""
    model_file = find_model_file(model_path)
    # torch.save writes a zip archive: a file that is not one (truncated, overwritten, another
    # program's) gets a message about models rather than checkpoint.py's about resuming.
    if not zipfile.is_zipfile(model_file):
        raise RecommendError(
            f"cannot read the model {model_file}: the file is damaged or was not saved by "
            f"train_model.py. Point --model at another model file ({FINAL_MODEL_FILE}, or a "
            f"checkpoint in output/checkpoints/), or {TRAIN_AGAIN}."
        )
    try:
        loaded = checkpoint.load_model(model_file, device)
    except checkpoint.CheckpointError as exc:
        raise RecommendError(str(exc)) from exc
    mapping_file = find_mapping_file(model_file)
    if mapping_file is None:
        notify(f"note: no {MAPPING_FILE} beside {model_file}; using the mapping saved in it.")
    else:
        check_same_mapping(
            loaded.mapping, read_mapping(mapping_file), f"{model_file} and {mapping_file}"
        )
    return OpenedModel(model_file, loaded)


class Recommender:
    """A trained model, its item mapping and the catalogue's metadata, ready to rank."""

    def __init__(
        self,
        model: BERT4Rec,
        mapping: ItemMapping,
        catalogue: Sequence[db.Anime],
        *,
        device: str | torch.device = "cpu",
        model_file: Path | None = None,
        epoch: int | None = None,
        relations: Mapping[int, Sequence[db.Relation]] | None = None,
        blend: blending.Blend | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.blend = blend  # the scorer training chose beside the model (blending.py), or None
        self.scoring = blend.describe() if blend else "the BERT4Rec model alone"
        self.score_meaning = BLEND_SCORE_MEANING if blend else SCORE_MEANING
        self.reason_method = (
            reasons.method(blend.name, blend.share, not np.isinf(blend.decay))
            if blend
            else reasons.method(None, 0.0, False)
        )
        self.model = model.to(self.device).eval()
        self.mapping = mapping
        self.model_file = model_file
        self.epoch = epoch
        known = {a.anime_id: a for a in catalogue}
        # Titles the database lacks (it changed since training) still get a row: "#id".
        self.anime = {i: known.get(i) or db.Anime(i) for i in mapping.anime_ids}
        self.missing_from_catalogue = sum(1 for i in mapping.anime_ids if i not in known)
        self.franchises = Franchises(catalogue, relations or {})
        adult = torch.zeros(mapping.vocab_size, dtype=torch.bool)
        for index, anime_id in enumerate(mapping.anime_ids, start=1):
            adult[index] = self.anime[anime_id].is_adult
        self.adult = adult.to(self.device)

    @classmethod
    def load(
        cls,
        model_path: str | os.PathLike[str],
        catalogue: Sequence[db.Anime],
        *,
        device: str | torch.device = "cpu",
        notify: Callable[[str], None] = lambda message: None,
        relations: Mapping[int, Sequence[db.Relation]] | None = None,
    ) -> Recommender:
        """From a model file or folder (find_model_file); RecommendError when it cannot be used."""
        opened = open_model(model_path, device, notify)
        recommender = cls.from_model(opened, catalogue, device=device, relations=relations)
        notify(f"Scoring: {recommender.scoring}.")
        return recommender

    @classmethod
    def from_model(
        cls,
        opened: OpenedModel,
        catalogue: Sequence[db.Anime],
        *,
        device: str | torch.device,
        relations: Mapping[int, Sequence[db.Relation]] | None = None,
    ) -> Recommender:
        loaded = opened.loaded
        recommender = cls(
            loaded.model,
            loaded.mapping,
            catalogue,
            device=device,
            model_file=opened.path,
            epoch=loaded.payload.get("epoch"),
            relations=relations,
            blend=matching_blend(opened),
        )
        if recommender.missing_from_catalogue == loaded.mapping.num_items:
            raise RecommendError(
                "the database holds none of the model's titles; use --db with the database "
                f"the model was trained on ({trained_on(loaded.payload) or 'unknown'})."
            )
        return recommender

    def recommend(
        self, history: WatchedTitles, *, top_k: int = DEFAULT_TOP_K, **options
    ) -> Recommendations:
        """recommend_many for one history; the same options."""
        return self.recommend_many([history], top_k=top_k, **options)[0]

    @torch.no_grad()
    def recommend_many(
        self,
        histories: Sequence[WatchedTitles],
        *,
        top_k: int = DEFAULT_TOP_K,
        exclude_adult: bool = False,
        rules: FranchiseRules = DEFAULT_RULES,
        filters: Filters = NO_FILTERS,
        explain: bool = True,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[Recommendations]:
        """The top_k titles for each history, one forward pass per batch_size histories (and,
        with explain, a short one more per history for the model's part of the reasons); on_batch(n)
        after each batch of n."""
        encoded = [data.encode_history(h.watched, self.mapping) for h in histories]
        excluded = [self._excluded_items(h, e.items) for h, e in zip(histories, encoded)]
        # Histories of similar length share a batch, so little of it is padding.
        order = sorted(range(len(histories)), key=lambda i: len(encoded[i].items))
        results: list[Recommendations | None] = [None] * len(histories)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            scored = self._score(
                [encoded[i].items for i in chunk], [excluded[i] for i in chunk], exclude_adult
            )
            for row, i in enumerate(chunk):
                chosen = self._select(
                    scored.log_probs[row], histories[i], top_k=top_k, rules=rules, filters=filters
                )
                # The Continue list first: its reasons are fixed, and count first (reasons.choose)
                picks = chosen.continue_items + chosen.items
                found = self._made(chosen.continue_items) + self._made(chosen.items)
                if explain:  # both lists in one forward pass
                    scales = (float(scored.model_scale[row]), float(scored.part_scale[row]))
                    found = self._explained(found, picks, encoded[i].items, scales)
                continued = len(chosen.continue_items)
                results[i] = Recommendations(
                    tuple(found[continued:]),
                    len(encoded[i].items),
                    tuple(encoded[i].unknown),
                    tuple(found[:continued]),
                    chosen.left_out,
                )
            if on_batch is not None:
                on_batch(len(chunk))
        return [r for r in results if r is not None]

    def _excluded_items(self, history: WatchedTitles, watched_items: np.ndarray) -> np.ndarray:
        more = [self.mapping.index(int(a)) for a in history.exclude]
        extra = np.array([i for i in more if i is not None], dtype=np.int64)
        return np.union1d(watched_items, extra)

    def _score(
        self, histories: list[np.ndarray], excluded: list[np.ndarray], exclude_adult: bool
    ) -> Scored:
        """Log-probabilities of the next title, -inf for what may not be recommended, and the
        scales of each part's credits for the reasons (blending.credit_scales). What may not be
        recommended is banned before the blend, so each part is standardised over exactly the
        titles that may be. When the item-item part alone ranks (share 1), the network is not
        run: its scores would weigh nothing, and only which titles are banned is needed."""
        banned = data.seen_items(excluded, self.mapping.vocab_size).to(self.device)
        if exclude_adult:
            banned |= self.adult
        if self.blend is not None and self.blend.share == 1:
            logits = torch.zeros(banned.shape, device=self.device)
        else:
            inputs = data.next_item_inputs(
                histories, self.mapping.mask_index, self.model.config.max_seq_len
            )
            logits = self.model.next_item_logits(inputs.to(self.device)).float()
        logits = logits.masked_fill(banned, float("-inf")).cpu()
        if self.blend is None:
            ones = torch.ones(len(histories))
            return Scored(torch.log_softmax(logits, dim=1), ones, torch.zeros(len(histories)))
        part = self.blend.part_scores(histories, self.mapping.vocab_size)
        model_scale, part_scale = blending.credit_scales(logits, part, self.blend.share)
        mixed = blending.blend(logits, part, self.blend.share)
        return Scored(torch.log_softmax(mixed, dim=1), model_scale, part_scale)

    def _select(
        self,
        log_probs: torch.Tensor,
        history: WatchedTitles,
        *,
        top_k: int,
        rules: FranchiseRules,
        filters: Filters,
    ) -> Selection:
        """One user's titles from their row of _score: the ranking walked by rules.select."""
        # A -inf (or NaN, when nothing is left to recommend) is not a recommendation.
        values, order = torch.sort(log_probs, descending=True)
        values, order = values.tolist(), order.tolist()
        count = next((n for n, v in enumerate(values) if not v > float("-inf")), len(values))
        ids = self.mapping.anime_ids
        ranked = [(ids[index - 1], value) for index, value in zip(order[:count], values)]
        row = log_probs.tolist()

        def score(anime_id: int) -> float | None:
            index = self.mapping.index(anime_id)
            value = None if index is None else row[index]
            return value if value is not None and value > float("-inf") else None

        return select(
            ranked,
            score,
            history.viewer(),
            self.franchises,
            top_k=top_k,
            rules=rules,
            filters=filters,
        )

    def _made(self, picks: Sequence[Pick]) -> list[Recommendation]:
        """One list's recommendations; a Continue entry has its reason already, its
        predecessor (free: the relations, not a scorer, name it)."""
        made = []
        for rank, p in enumerate(picks, start=1):
            before = self._anime(p.after) if p.after is not None else None
            made.append(
                Recommendation(
                    rank,
                    self.anime[p.anime_id],
                    float(np.exp(p.log_prob)),
                    (Reason(before, None),) if before else (),
                    p.notes,
                    f"next after {before.title}" if before else "",
                )
            )
        return made

    def _anime(self, anime_id: int) -> db.Anime:
        """A title of the catalogue, also one the model does not know (a franchise's entry)."""
        return self.anime.get(anime_id) or self.franchises.anime.get(anime_id) or db.Anime(anime_id)

    def _explained(
        self,
        found: list[Recommendation],
        picks: Sequence[Pick],
        history: np.ndarray,
        scales: tuple[float, float],
    ) -> list[Recommendation]:
        """The recommendations of one user's list with their reasons (reasons.choose) from the
        credits of the scorer that ranked them; the model's in one forward pass."""
        targets = [self.mapping.index(r.anime.anime_id) for r in found]
        credits = self._credits(history, targets, scales)
        ids = [self.mapping.anime_id(int(item)) for item in credits.items]
        candidates = [list(zip(ids, row.tolist())) for row in credits.values]
        chosen = reasons.choose(candidates, [p.after for p in picks])
        watched = [self.anime[self.mapping.anime_id(int(item))] for item in np.unique(history)]
        explained = []
        for r, why in zip(found, chosen):
            because = tuple(Reason(self._anime(t), credit) for t, credit in why)
            if r.reason:  # a Continue entry: its predecessor, with the credit now known
                text = r.reason
            elif because:
                text = "because you watched " + ", ".join(b.anime.title for b in because)
            else:
                text = reasons.without_a_title(r.anime, watched, self.mapping.num_items)
            explained.append(replace(r, reasons=because, reason=text))
        return explained

    def _credits(
        self, history: np.ndarray, targets: list[int], scales: tuple[float, float]
    ) -> reasons.Credits:
        """Each history title's credit for each target in the units of the score used: the
        model's lift and the item-item part's exact share, each times its scale (a part with
        scale 0 takes no part, nor any time)."""
        model_scale, part_scale = scales
        parts = []
        if model_scale > 0:
            credits = reasons.model_credits(
                self.model, history, targets, self.mapping.mask_index, least=reasons.MIN_LIFT
            )
            parts.append((credits, model_scale))
        if part_scale > 0 and self.blend is not None:
            parts.append((reasons.part_credits(self.blend.part(), history, targets), part_scale))
        return reasons.mixed(*parts)


def matching_blend(opened: OpenedModel) -> blending.Blend | None:
    """The blend training saved beside this model file (checkpoint.BLEND_FILE), when it was
    chosen for this very model (same data, same epoch); else None: the model alone."""
    try:
        blend = blending.load(opened.path.parent / checkpoint.BLEND_FILE)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError):
        return None  # unreadable: recommend with the model alone rather than fail
    payload = opened.loaded.payload
    if blend is None or blend.data_fingerprint != payload.get("data_fingerprint"):
        return None
    if blend.model_epoch != payload.get("epoch"):
        return None
    if blend.weights.shape[0] != opened.loaded.mapping.num_items:
        return None
    return blend


def trained_on(payload: dict) -> str | None:
    """The database a model was trained on, as its training settings name it."""
    settings = payload.get("train_config")
    return settings.get("db") if isinstance(settings, dict) else None


def default_database(payload: dict) -> str:
    """--db when not given: the database the model was trained on while it exists (the demo's,
    say), else the data stages' default."""
    trained = trained_on(payload)
    return trained if trained and os.path.isfile(trained) else paths.DEFAULT_DB_PATH


# --- every loaded user at once -----------------------------------------------------------------


def recommend_all_users(
    recommender: Recommender,
    conn: sqlite3.Connection,
    *,
    top_k: int = DEFAULT_TOP_K,
    include_planning: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    **options,
) -> list[tuple[db.StoredUserList, Recommendations]]:
    """Every loaded user's top_k, batched; users with no title the model knows are left out.
    options: those of Recommender.recommend_many (exclude_adult, rules, filters, explain)."""
    users = db.load_histories(conn)
    histories = [history_from_entries(u.entries, include_planning=include_planning) for u in users]
    results = recommender.recommend_many(
        histories, top_k=top_k, batch_size=batch_size, on_batch=on_batch, **options
    )
    return [(u, r) for u, r in zip(users, results) if r.titles_used]


def csv_text(rows: Sequence[tuple[db.StoredUserList, Recommendations]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for user, result in rows:
        listed = [("top", i) for i in result.items]
        listed += [("continue", i) for i in result.continue_items]
        for which, item in listed:
            a = item.anime
            writer.writerow(
                (
                    user.user_name,
                    user.user_id,
                    which,
                    item.rank,
                    a.anime_id,
                    a.title,
                    a.title_romaji or "",
                    a.format or "",
                    a.start_year or "",
                    "|".join(a.genres),
                    f"{item.probability:.6g}",
                    item.reason,
                    " | ".join(item.rules_applied),
                    item.anilist_url,
                    a.cover_large or a.cover_medium or "",
                )
            )
    return out.getvalue()


def write_csv(
    path: str | os.PathLike[str], rows: Sequence[tuple[db.StoredUserList, Recommendations]]
) -> None:
    """Atomically; UTF-8 with a byte-order mark, so Excel on Windows shows Japanese titles."""
    files.write_text(path, csv_text(rows), encoding="utf-8-sig")


# --- showing them ------------------------------------------------------------------------------


def json_document(
    recommender: Recommender,
    result: Recommendations,
    *,
    name: str | None,
    source: str,
    watched: int,
    rules: FranchiseRules = DEFAULT_RULES,
    filters: Filters = NO_FILTERS,
) -> dict:
    """What --json prints and --html draws (page.render): the lists and how they were made."""
    return {
        "user": name,
        "source": source,
        "model": str(recommender.model_file),
        "epoch": recommender.epoch,
        "scoring": recommender.scoring,
        "score": recommender.score_meaning,
        "reason_method": recommender.reason_method,
        "made": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "history": {
            "watched": watched,
            "used": result.titles_used,
            "unknown_ids": list(result.unknown_ids),
        },
        "filters": filters.describe(),
        "rules": rules.describe(),
        "left_out": dict(result.left_out),
        "recommendations": [item.to_dict() for item in result.items],
        "continue": [item.to_dict() for item in result.continue_items],
    }


def describe(anime: db.Anime) -> str:
    """The title shown, then the romaji when it differs, the format and the year:
    'Attack on Titan (Shingeki no Kyojin; TV 2013)'."""
    details = [part for part in (anime.format, anime.start_year) if part]
    extra = [anime.title_romaji] if anime.title_romaji and anime.title_romaji != anime.title else []
    if details:
        extra.append(" ".join(str(part) for part in details))
    return f"{anime.title} ({'; '.join(extra)})" if extra else anime.title


def table_lines(items: Sequence[Recommendation]) -> list[str]:
    """Rank, score, format, year, title, genres; the title comes late because Japanese
    characters take two columns on a console and would break the alignment of what follows."""
    lines = [f"{'Rank':>4}  {'Score':>7}  {'Format':<8}  {'Year':<4}  Title  (genres)  - why"]
    for item in items:
        a = item.anime
        genres = f"  ({', '.join(a.genres)})" if a.genres else ""
        why = "; ".join(part for part in (item.reason, *item.rules_applied) if part)
        lines.append(
            f"{item.rank:>4}  {item.probability:>7.2%}  {a.format or '-':<8}  "
            f"{a.start_year or '-':<4}  {a.title}{genres}" + (f"  - {why}" if why else "")
        )
    return lines
