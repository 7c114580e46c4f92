"""What an anime fan sees, with a trained model: the planted chains of tests/planted.py become
franchises (each part the sequel of the one before), and recommendations follow the franchise
rules, carry reasons, honour the filters, and come out as JSON, CSV and a page."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_script
from planted import CHAIN_LENGTH, CHAINS, make_store, part, tiny_training

from bert4rec import data, db, reasons
from bert4rec.recommender import Recommender, WatchedTitles, history_from_entries
from bert4rec.rules import FranchiseRules

TWO_LAYERS = tiny_training(layers=2)
RULES_OFF = FranchiseRules(prequels_first=False, one_per_franchise=False, continue_top=0)


def chain_relations() -> dict[int, list[db.Relation]]:
    edges: dict[int, list[db.Relation]] = {}
    for c in range(CHAINS):
        for k in range(CHAIN_LENGTH):
            own = edges.setdefault(part(c, k), [])
            if k:
                own.append(db.Relation(part(c, k), part(c, k - 1), "PREQUEL"))
            if k + 1 < CHAIN_LENGTH:
                own.append(db.Relation(part(c, k), part(c, k + 1), "SEQUEL"))
    return edges


def build_store(path: Path) -> Path:
    """planted.make_store's chains as franchises, with genres, formats, years, pages, covers."""
    make_store(path, users=150)
    conn = db.connect(path)
    db.upsert_anime(
        conn,
        [
            replace(
                a,
                genres=("Action",) if a.anime_id % 2 else ("Comedy", "Drama"),
                format="TV" if a.anime_id % 3 else "MOVIE",
                start_year=2000 + a.anime_id % 20,
                popularity=a.anime_id * 10,
                site_url=f"https://anilist.co/anime/{a.anime_id}",
                cover_large=f"http://127.0.0.1:9/{a.anime_id}.png",
            )
            for a in db.load_catalogue(conn)
        ],
    )
    db.store_relations(conn, chain_relations())
    conn.close()
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return build_store(tmp_path_factory.mktemp("store") / "bert.db")


@pytest.fixture(scope="module")
def models(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    # --distill 0: the reasons are checked on a model of order alone, not one that also
    # learned EASE's order-blind ranking (docs/BENCHMARKS.md).
    flags = [*TWO_LAYERS, "--distill", "0"]
    result = run_script("train_model.py", "--db", str(store), "--output", str(out), *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "models"


@pytest.fixture(scope="module")
def recommender(store, models) -> Recommender:
    conn = db.connect(store, create=False)
    return Recommender.load(models, db.load_catalogue(conn), relations=db.load_relations(conn))


def run_recommend(models: Path, store: Path, *args: str):
    return run_script("recommend.py", "--model", str(models), "--db", str(store), *args)


# --- reasons -----------------------------------------------------------------------------------


def test_the_reason_for_a_chains_next_part_is_its_predecessor(recommender):
    named, first = [], []
    for c in range(CHAINS):
        k = 3
        history = WatchedTitles([1000, *[part(c, p) for p in range(k)]])
        top = recommender.recommend(history, top_k=1, rules=RULES_OFF).items[0]
        if top.anime.anime_id != part(c, k):
            continue  # the model did not learn this chain; its reasons say nothing of the method
        because = [r.anime.anime_id for r in top.reasons]
        named.append(part(c, k - 1) in because)
        first.append(because[:1] == [part(c, k - 1)])
        assert top.reason.startswith("because you watched Title ")
    assert len(named) >= 7 and sum(named) >= len(named) - 1, (named, first)
    assert sum(first) >= len(named) - 2, (named, first)


def test_the_lift_is_what_each_title_alone_gives_by_hand(recommender):
    model, mapping = recommender.model, recommender.mapping
    history = data.encode_history([part(2, 0), part(2, 1), 1004, part(2, 2)], mapping).items
    targets = [mapping.index(part(2, 3)), mapping.index(1009)]
    found = reasons.model_credits(model, history, targets, mapping.mask_index)
    may_be_recommended = [i for i in range(1, mapping.num_items + 1) if i not in set(history)]

    def log_probs(items: list[int]) -> torch.Tensor:
        inputs = data.next_item_inputs([np.asarray(items)], mapping.mask_index, 20)
        with torch.no_grad():
            return torch.log_softmax(model.next_item_logits(inputs)[0], 0)

    nothing = log_probs([])
    assert sorted(found.items.tolist()) == sorted(set(history.tolist()))
    for target, credits in zip(targets, found.values):
        lifts = []
        for item in found.items:
            rise = log_probs([int(item)]) - nothing
            lifts.append(float(rise[target] - rise[may_be_recommended].mean()))
        np.testing.assert_allclose(credits, lifts, rtol=1e-4, atol=1e-5)


def test_only_the_titles_the_model_reads_are_reasons(recommender):
    model, mapping = recommender.model, recommender.mapping
    # 30 titles; the model (max_seq_len 20) reads the newest 19.
    history = data.encode_history([part(c, p) for c in range(5) for p in range(6)], mapping).items
    read = set(history[-19:].tolist())
    targets = [mapping.index(part(c, 0)) for c in range(5, CHAINS)]
    found = reasons.model_credits(model, history, targets, mapping.mask_index)
    assert set(found.items.tolist()) == read and found.values.shape == (len(targets), len(read))


def test_no_title_is_the_reason_for_much_of_a_list(store, recommender):
    # The newest title lifts nearly everything under EASE-recent, and a title that sharpens or
    # flattens the whole ranking lifts everything under the model: neither may lead the reasons
    # of more than a third of a user's list, or be named in more than half of it.
    conn = db.connect(store, create=False)
    for user in db.load_histories(conn)[:20]:
        result = recommender.recommend(history_from_entries(user.entries), top_k=10)
        shown = result.items + result.continue_items
        firsts = Counter(r.reasons[0].anime.anime_id for r in shown if r.reasons)
        named = Counter(b.anime.anime_id for r in shown for b in r.reasons)
        assert max(firsts.values()) <= max(1, len(shown) // 3), (user.user_name, firsts)
        assert max(named.values()) <= max(1, len(shown) // 2), (user.user_name, named)
        assert all(r.reason for r in shown), user.user_name  # never nothing


def test_each_continue_entry_names_the_part_before_it(store, recommender):
    conn = db.connect(store, create=False)
    continued = 0
    for user in db.load_histories(conn):
        result = recommender.recommend(history_from_entries(user.entries), top_k=10)
        for entry in result.continue_items:
            anime_id = entry.anime.anime_id
            before = anime_id - 1  # planted chains: part k + 1 follows part k
            assert entry.reason == f"next after Title {before}", (user.user_name, entry)
            assert [r.anime.anime_id for r in entry.reasons] == [before]
            assert not entry.rules_applied  # the reason says it; no note repeats it
            continued += 1
    assert continued


# --- the rules, for every user -----------------------------------------------------------------


def test_every_users_lists_follow_the_franchise_rules(store, recommender):
    conn = db.connect(store, create=False)
    franchises = recommender.franchises
    replaced = continued = 0
    for user in db.load_histories(conn):
        history = history_from_entries(user.entries)
        viewer = history.viewer()
        result = recommender.recommend(history, top_k=20)
        dropped = {t for d in viewer.dropped for t in franchises.group(d)}
        shown = [r.anime.anime_id for r in result.items + result.continue_items]
        groups = [franchises.group(t) for t in shown]
        assert len(groups) == len(set(groups)), user.user_name  # one per franchise, both lists
        for anime_id in shown:
            assert not franchises.unwatched_prerequisites(anime_id, viewer.seen), anime_id
            assert anime_id not in dropped and anime_id not in viewer.seen
        expected = [
            t
            for t in franchises.next_entries(viewer.started, viewer.seen)
            if t not in dropped and t not in history.exclude
        ]
        got = [r.anime.anime_id for r in result.continue_items]
        assert len(expected) <= 5 and sorted(got) == sorted(expected), user.user_name
        probabilities = [r.probability for r in result.continue_items]
        assert probabilities == sorted(probabilities, reverse=True)
        replaced += sum(bool(r.rules_applied) for r in result.items)
        continued += len(got)
    assert replaced and continued  # the rules did work, not only kept out of the way


def test_all_seasons_lifts_one_per_franchise(recommender):
    history = WatchedTitles([part(0, 0), part(0, 1), 1001])
    one = recommender.recommend(history, top_k=20)
    every = recommender.recommend(history, top_k=20, rules=RULES_OFF)
    groups = Counter(recommender.franchises.group(r.anime.anime_id) for r in every.items)
    assert max(groups.values()) > 1
    groups = Counter(recommender.franchises.group(r.anime.anime_id) for r in one.items)
    assert max(groups.values()) == 1


# --- the command line --------------------------------------------------------------------------


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs)["href"])


def test_json_and_page_hold_reasons_rules_links_and_covers(models, store, recommender, tmp_path):
    conn = db.connect(store, create=False)
    following = next(
        user.user_name
        for user in db.load_histories(conn)
        if recommender.recommend(history_from_entries(user.entries), explain=False).continue_items
    )
    out = tmp_path / "page.html"
    result = run_recommend(
        models, store, "--user", following, "--json", "--html", str(out), "--top", "8"
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    items = document["recommendations"] + document["continue"]
    assert len(document["recommendations"]) == 8 and document["continue"]
    for entry in items:
        assert entry["anilist_url"] == f"https://anilist.co/anime/{entry['anime_id']}"
        assert entry["cover_large"].endswith(f"/{entry['anime_id']}.png")
        assert isinstance(entry["rules_applied"], list)
        assert entry["reason"]  # every recommendation has a reason
        if entry["because"] and not entry["reason"].startswith("next after "):
            titles = ", ".join(b["title"] for b in entry["because"])
            assert entry["reason"] == "because you watched " + titles
            assert all(b["credit"] > 0 for b in entry["because"])
    assert any(entry["because"] for entry in document["recommendations"])
    for entry in document["continue"]:
        assert entry["reason"] == f"next after {entry['because'][0]['title']}"
    assert document["scoring"] and document["reason_method"]
    assert "released titles only" in document["filters"] and document["rules"]
    links = Links()
    links.feed(out.read_text(encoding="utf-8"))
    assert links.links == [e["anilist_url"] for e in document["continue"]] + [
        e["anilist_url"] for e in document["recommendations"]
    ]


def test_filters_give_the_top_count_and_nothing_excluded(models, store):
    result = run_recommend(
        models, store, "--user", "user5", "--json", "--format", "tv", "--exclude-genre", "drama",
        "--year-from", "2001", "--top", "10", "--all-seasons", "--allow-unwatched-prequels",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    items = document["recommendations"]
    assert len(items) == 10  # filtered before the cut: 10 asked, 10 given
    for entry in items + document["continue"]:
        assert entry["format"] == "TV" and "Drama" not in entry["genres"] and entry["year"] >= 2001


def test_unknown_genre_is_a_clear_error(models, store):
    result = run_recommend(models, store, "--user", "user5", "--genre", "Mecha")
    assert result.returncode == 2
    assert "--genre 'Mecha' is not a genre of the catalogue. Valid: Action, Comedy, Drama." in (
        result.stderr
    )
    bad_format = run_recommend(models, store, "--user", "user5", "--format", "SERIES")
    assert bad_format.returncode == 2 and "TV, TV_SHORT, MOVIE" in bad_format.stderr


def test_all_users_csv_holds_reasons_rules_and_links(models, store, recommender, tmp_path):
    out = tmp_path / "recs.csv"
    result = run_recommend(models, store, "--all-users", "--out", str(out), "--top", "3")
    assert result.returncode == 0, result.stderr
    assert f"Scoring: {recommender.scoring}." in result.stdout
    with open(out, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    lists = Counter(r["list"] for r in rows)
    assert lists["top"] == 150 * 3 and lists["continue"] > 0
    assert all(r["anilist_url"] == f"https://anilist.co/anime/{r['anime_id']}" for r in rows)
    assert all(r["cover"].endswith(f"/{r['anime_id']}.png") for r in rows)
    assert any(r["reason"].startswith("because you watched ") for r in rows)
    assert all(r["reason"] for r in rows)
    assert all(r["reason"].startswith("next after ") for r in rows if r["list"] == "continue")
    assert any(r["rules_applied"].startswith("in place of ") for r in rows)
