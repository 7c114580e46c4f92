"""The franchise rules on the simulator's world: stage 1 and 2 fetch a synthetic AniList (its
franchises related as AniList relates them), a small model trains on it, and every loaded user's
top 20 is checked against the world's own edges, not against franchise.py's reading of them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import run_script
from fakes import FAST

from bert4rec import db
from bert4rec.recommender import Recommender, history_from_entries
from bert4rec.rules import DEFAULT_CONTINUE, FranchiseRules
from bert4rec.simulator import FakeAniList
from bert4rec.synthetic import generate_world

pytestmark = pytest.mark.slow
TRAIN = [
    "--epochs", "12", "--hidden", "32", "--heads", "2", "--layers", "1", "--max-seq-len", "40",
    "--batch-size", "16", "--val-fraction", "0.15", "--threads", "1", "--checkpoint-every", "0",
]  # fmt: skip
FOLLOWING = ("COMPLETED", "CURRENT", "REPEATING")


@pytest.fixture(scope="module")
def world():
    return generate_world(300, 160, seed=11)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("world")
    store = root / "bert.db"
    users = root / "users.txt"
    users.write_text("\n".join(u.name for u in world.users) + "\n", encoding="utf-8")
    with FakeAniList(world, rate_limit=60000) as api:
        api_flags = ["--db", str(store), "--api-url", api.url, *FAST]
        for script, *args in (
            ("prepare_dataset.py", "--count", "300"),
            ("load_users.py", "--users", str(users), "--min-anime", "5"),
        ):
            result = run_script(script, *args, *api_flags)
            assert result.returncode == 0, result.stderr[-3000:]
    result = run_script("train_model.py", "--db", str(store), "--output", str(root), *TRAIN)
    assert result.returncode == 0, result.stderr[-3000:]
    return store, root / "models"


class Truth:
    """The world's franchises, prequels and recaps, read from its Media objects."""

    def __init__(self, world) -> None:
        parent: dict[int, int] = {}

        def root(x: int) -> int:
            parent.setdefault(x, x)
            while parent[x] != x:
                x = parent[x]
            return x

        self.prequels: dict[int, set[int]] = {}
        self.parents: dict[int, set[int]] = {}  # a side story's series
        self.recaps: set[int] = set()
        for media in world.media:
            for edge in media["relations"]["edges"]:
                other, kind = edge["node"]["id"], edge["relationType"]
                if edge["node"]["type"] == "ANIME":  # the manga a franchise adapts is not one
                    parent[root(media["id"])] = root(other)
                if kind == "PREQUEL":
                    self.prequels.setdefault(media["id"], set()).add(other)
                if kind == "SUMMARY":
                    self.recaps.add(other)
                if kind == "PARENT":
                    self.parents.setdefault(media["id"], set()).add(other)
                if kind == "SIDE_STORY":
                    self.parents.setdefault(other, set()).add(media["id"])
        self.franchise = {m["id"]: root(m["id"]) for m in world.media}
        self.release = {
            m["id"]: (m["startDate"]["year"], m["startDate"]["month"], m["startDate"]["day"])
            for m in world.media
        }

    def prequel_chain(self, anime_id: int) -> set[int]:
        found, stack = set(), list(self.prequels.get(anime_id, ()))
        while stack:
            title = stack.pop()
            if title not in found:
                found.add(title)
                stack.extend(self.prequels.get(title, ()))
        return found


def test_every_simulated_users_top_20_follows_the_franchise_rules(world, trained):
    store, models = trained
    conn = db.connect(store, create=False)
    catalogue = db.load_catalogue(conn)
    in_catalogue = {a.anime_id for a in catalogue}
    recommender = Recommender.load(models, catalogue, relations=db.load_relations(conn))
    truth = Truth(world)
    users = db.load_histories(conn)
    assert len(users) > 100
    counts = Counter()
    for user in users:
        history = history_from_entries(user.entries)
        status = {e.anime_id: e.status for e in user.entries if e.watched}
        dropped = {truth.franchise[a] for a, s in status.items() if s == "DROPPED"}
        followed = {truth.franchise[a] for a, s in status.items() if s in FOLLOWING} - dropped
        result = recommender.recommend(history, top_k=20)
        shown = result.items + result.continue_items
        franchises = [truth.franchise[r.anime.anime_id] for r in shown]
        assert len(franchises) == len(set(franchises)), user.user_name  # one per franchise
        for item in shown:
            anime_id = item.anime.anime_id
            unwatched = (truth.prequel_chain(anime_id) & in_catalogue) - set(status)
            assert not unwatched, (user.user_name, anime_id, unwatched)
            assert truth.franchise[anime_id] not in dropped, (user.user_name, anime_id)
            assert anime_id not in truth.recaps and anime_id not in status
        counts["full"] += len(result.items) == 20
        # Continue: the next entries of franchises the user follows, by score.
        continued = [r.anime.anime_id for r in result.continue_items]
        assert {truth.franchise[a] for a in continued} <= followed
        scores = [r.probability for r in result.continue_items]
        assert scores == sorted(scores, reverse=True)
        for franchise in followed:
            # The earliest main entry after a watched one, not watched: the franchise's next.
            waiting = [
                a
                for a in in_catalogue
                if truth.franchise[a] == franchise
                and a not in status
                and a not in history.exclude
                and truth.prequels.get(a, set()) & set(status)
                and not (truth.prequel_chain(a) & in_catalogue) - set(status)
            ]
            if waiting and len(continued) < DEFAULT_CONTINUE:
                assert any(truth.franchise[a] == franchise for a in continued), user.user_name
        for item in shown:
            assert item.reason, (user.user_name, item.anime.anime_id)  # never nothing
        # A Continue entry's reason is the watched entry right before it, by the world's edges:
        # its prequel, or the series a side story tells more of.
        for item in result.continue_items:
            if item.reason.startswith("next after "):
                before, anime_id = item.reasons[0].anime, item.anime.anime_id
                assert item.reason == f"next after {before.title}"
                right_before = truth.prequels.get(anime_id, set()) | truth.parents.get(
                    anime_id, set()
                )
                assert before.anime_id in right_before and before.anime_id in status
                counts["named the one before"] += 1
        counts["continued"] += len(continued)
        counts["replaced"] += sum(bool(r.rules_applied) for r in result.items)
        counts["dropped"] += bool(dropped)
    # The rules had work to do: sequels replaced, franchises to continue, dropped ones.
    assert counts["continued"] and counts["replaced"] and counts["dropped"], counts
    assert counts["named the one before"] >= 0.8 * counts["continued"], counts
    # Rules pass over titles before the cut, so nearly every list is still full.
    assert counts["full"] >= 0.8 * len(users), counts


def test_all_seasons_lets_a_franchise_back_in_more_than_once(world, trained):
    store, models = trained
    conn = db.connect(store, create=False)
    recommender = Recommender.load(
        models, db.load_catalogue(conn), relations=db.load_relations(conn)
    )
    truth = Truth(world)
    repeats = 0
    for user in db.load_histories(conn)[:40]:
        result = recommender.recommend(
            history_from_entries(user.entries),
            top_k=20,
            rules=FranchiseRules(one_per_franchise=False),
            explain=False,
        )
        franchises = Counter(truth.franchise[r.anime.anime_id] for r in result.items)
        repeats += max(franchises.values()) > 1
    assert repeats
