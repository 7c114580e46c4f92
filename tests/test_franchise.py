"""franchise.py, rules.py and filters.py on a planted catalogue of franchises (no model: the
rankings are made up, so every rule can be watched at work)."""

from __future__ import annotations

import random

import pytest

from bert4rec import db
from bert4rec.filters import FORMATS, FilterError, Filters, make_filters
from bert4rec.franchise import Franchises
from bert4rec.rules import (
    LEFT_OUT_DROPPED,
    LEFT_OUT_IN_CONTINUE,
    LEFT_OUT_SUMMARY,
    FranchiseRules,
    Viewer,
    select,
)

R = db.Relation
# Franchise A: 10 -> 11 -> 12 (seasons), 13 a summary of 10, 14 a side story of 11, 15 a
# compilation of 12, 16 CONTAINS 11 (so 16 is a compilation). B: 20 -> 21, 22 a spin-off of 20.
# C: 30 -> (999, not in the catalogue) -> 31. D 40 shares a character with 10 (not a franchise
# edge). 50 and 51 adapt the same manga 60 (not a franchise edge). 41 is a recap by its title.
CATALOGUE = [
    db.Anime(10, "A Season 1", format="TV", start_year=2010, genres=("Action",), popularity=900),
    db.Anime(11, "A Season 2", format="TV", start_year=2012, genres=("Action",), popularity=800),
    db.Anime(12, "A Season 3", format="TV", start_year=2016, genres=("Action",), popularity=700),
    db.Anime(13, "A Digest", format="SPECIAL", start_year=2011, popularity=300),
    db.Anime(14, "A OVA", format="OVA", start_year=2013, genres=("Action",), popularity=200),
    db.Anime(15, "A Movie", format="MOVIE", start_year=2017, popularity=400),
    db.Anime(16, "A Collection", format="MOVIE", start_year=2013, popularity=100),
    db.Anime(20, "B", format="TV", start_year=2005, genres=("Comedy",), popularity=600),
    db.Anime(21, "B 2", format="TV", start_year=2007, genres=("Comedy",), popularity=500),
    db.Anime(22, "B Spin", format="ONA", start_year=2009, genres=("Comedy",), popularity=50),
    db.Anime(30, "C", format="TV", start_year=2000, genres=("Drama",), popularity=650),
    db.Anime(31, "C 3", format="MOVIE", start_year=2004, genres=("Drama",), popularity=450),
    db.Anime(40, "D", format="TV", start_year=2020, genres=("Action", "Comedy"), popularity=999),
    db.Anime(41, "Dee Soushuuhen", format="SPECIAL", start_year=2021, popularity=10),
    db.Anime(50, "E", format="TV", start_year=2019, genres=("Drama",), popularity=300),
    db.Anime(51, "E Again", format="MOVIE", start_year=2022, popularity=250),
    db.Anime(52, "Soon", format="TV", start_year=2027, status="NOT_YET_RELEASED", popularity=5),
    db.Anime(53, "Shorts", format="TV_SHORT", start_year=2015, genres=("Comedy",), popularity=70),
]
RELATIONS = {
    10: (R(10, 11, "SEQUEL"), R(10, 13, "SUMMARY"), R(10, 40, "CHARACTER")),
    11: (R(11, 10, "PREQUEL"), R(11, 12, "SEQUEL"), R(11, 14, "SIDE_STORY")),
    12: (R(12, 11, "PREQUEL"), R(12, 15, "COMPILATION")),
    14: (R(14, 11, "PARENT"),),
    16: (R(16, 11, "CONTAINS"),),
    20: (R(20, 21, "SEQUEL"), R(20, 22, "SPIN_OFF")),
    22: (R(22, 20, "PARENT"),),
    30: (R(30, 999, "SEQUEL"),),
    31: (R(31, 999, "PREQUEL"),),
    40: (R(40, 10, "CHARACTER"), R(40, 41, "OTHER")),
    50: (R(50, 60, "SOURCE"),),
    51: (R(51, 60, "SOURCE"),),
}
A = frozenset({10, 11, 12, 13, 14, 15, 16})


@pytest.fixture(scope="module")
def franchises() -> Franchises:
    return Franchises(CATALOGUE, RELATIONS)


def test_franchises_join_story_edges_only(franchises):
    assert franchises.group(12) == A
    assert franchises.group(22) == {20, 21, 22}
    assert franchises.group(31) == {30, 31}  # joined through a season outside the catalogue
    assert franchises.group(40) == {40}  # a shared character does not join
    assert franchises.group(41) == {41}  # nor OTHER
    assert franchises.group(50) == {50} and franchises.group(51) == {51}  # nor one source
    assert franchises.group(777) == {777}  # unknown: on its own


def test_prequel_chains_and_summaries(franchises):
    assert franchises.prerequisites(12) == [10, 11]
    assert franchises.prerequisites(14) == [10, 11]  # a side story needs its series
    assert franchises.prerequisites(22) == []  # a spin-off stands alone
    assert franchises.prerequisites(31) == [30]
    assert franchises.unwatched_prerequisites(12, {10}) == [11]
    assert [t for t in CATALOGUE if franchises.is_summary(t.anime_id)] == [
        a for a in CATALOGUE if a.anime_id in (13, 15, 16, 41)
    ]
    assert franchises.first_unwatched_before(12, set()) == 10
    assert franchises.first_unwatched_before(12, {10}) == 11
    assert franchises.first_unwatched_before(31, {30}) is None  # nothing unwatched before it


def test_next_entries_prefer_the_sequel(franchises):
    assert franchises.next_entry(A, {10}) == 11
    assert franchises.next_entry(A, {10, 11}) == 12  # the sequel before the side story
    assert franchises.next_entry(A, {10, 11, 12}) == 14  # then the side story, never a recap
    assert franchises.next_entry(A, set(A)) is None
    assert franchises.next_entries([21, 11, 20, 10], {10, 11, 20, 21}) == [22, 12]


def ranking(ids, seed=0):
    rng = random.Random(seed)
    return [(i, -rng.random() * 5) for i in ids]


def test_the_rules_at_work(franchises):
    ranked = [(12, -1.0), (13, -1.1), (21, -1.2), (31, -1.3), (22, -1.4), (11, -1.5)]
    ranked += [(40, -1.6), (41, -1.7), (50, -1.8), (10, -1.9), (51, -2.0), (14, -2.1)]
    score = dict(ranked).get
    viewer = Viewer(seen={20, 30}, dropped={30}, started=[20])
    chosen = select(ranked, score, viewer, franchises, top_k=20)
    assert [p.anime_id for p in chosen.continue_items] == [21]
    assert chosen.continue_items[0].after == 20  # its reason: "next after B" (reasons.py)
    assert chosen.continue_items[0].notes == ()
    assert [p.anime_id for p in chosen.items] == [10, 40, 50, 51]
    assert chosen.items[0].notes == ("in place of A Season 3 (its prequel chain is unwatched)",)
    assert chosen.items[0].log_prob == -1.9  # the title's own score, not the one it replaced
    assert chosen.left_out[LEFT_OUT_SUMMARY] == 2 and chosen.left_out[LEFT_OUT_DROPPED] == 1
    assert chosen.left_out[LEFT_OUT_IN_CONTINUE] == 1

    everything = FranchiseRules(
        prequels_first=False,
        skip_dropped=False,
        skip_summaries=False,
        one_per_franchise=False,
        continue_top=0,
    )
    free = select(ranked, score, viewer, franchises, top_k=20, rules=everything)
    assert [p.anime_id for p in free.items] == [i for i, _ in ranked] and not free.continue_items
    seasons = select(
        ranked, score, viewer, franchises, top_k=20, rules=FranchiseRules(one_per_franchise=False)
    )
    # 12 and 11 both need 10: it takes the place of the first, once; 14 needs 10 too.
    assert [p.anime_id for p in seasons.items] == [10, 22, 40, 50, 51]
    assert len(select(ranked, score, viewer, franchises, top_k=2).items) == 2


def check_rules(chosen, viewer, franchises, filters, rules):
    shown = chosen.items + chosen.continue_items
    dropped = {t for d in viewer.dropped for t in franchises.group(d)}
    groups = [franchises.group(p.anime_id) for p in shown]
    for pick in shown:
        anime = franchises.anime[pick.anime_id]
        assert not franchises.unwatched_prerequisites(pick.anime_id, viewer.seen), pick
        assert pick.anime_id not in dropped and not franchises.is_summary(pick.anime_id)
        assert pick.anime_id not in viewer.seen and filters.passes(anime), pick
    if rules.one_per_franchise:
        assert len(groups) == len(set(groups))
    expected = franchises.next_entries(viewer.started, viewer.seen)
    expected = [t for t in expected if t not in dropped and filters.passes(franchises.anime[t])]
    assert sorted(p.anime_id for p in chosen.continue_items) == sorted(expected[:5])


@pytest.mark.parametrize("seed", range(40))
def test_no_ranking_gets_past_the_rules(franchises, seed):
    rng = random.Random(seed)
    ids = [a.anime_id for a in CATALOGUE]
    seen = set(rng.sample(ids, rng.randint(0, 6)))
    viewer = Viewer(
        seen=seen,
        dropped=set(rng.sample(sorted(seen), min(len(seen), rng.randint(0, 1)))),
        started=sorted(seen),
    )
    filters = rng.choice(
        [Filters(), Filters(formats=("TV",)), Filters(genres=("Action",)), Filters(year_to=2012)]
    )
    ranked = ranking([i for i in ids if i not in seen], seed)
    ranked.sort(key=lambda p: -p[1])
    rules = FranchiseRules(one_per_franchise=rng.random() < 0.7)
    chosen = select(
        ranked, dict(ranked).get, viewer, franchises, top_k=20, rules=rules, filters=filters
    )
    check_rules(chosen, viewer, franchises, filters, rules)


# --- filters -----------------------------------------------------------------------------------


def test_filters_never_let_through_what_they_exclude():
    cases = [
        (make_filters(CATALOGUE, genres=["action"]), lambda a: "Action" in a.genres),
        (
            make_filters(CATALOGUE, genres=["Action", "Comedy"]),
            lambda a: {"Action", "Comedy"} <= set(a.genres),
        ),
        (make_filters(CATALOGUE, exclude_genres=["Drama"]), lambda a: "Drama" not in a.genres),
        (make_filters(CATALOGUE, formats=["movie", "ova"]), lambda a: a.format in ("MOVIE", "OVA")),
        (make_filters(CATALOGUE, formats=["tv short"]), lambda a: a.format == "TV_SHORT"),
        (
            make_filters(CATALOGUE, year_from=2010, year_to=2016),
            lambda a: 2010 <= a.start_year <= 2016,
        ),
        (make_filters(CATALOGUE, min_popularity=500), lambda a: a.popularity >= 500),
        (make_filters(CATALOGUE), lambda a: a.status != "NOT_YET_RELEASED"),
        (make_filters(CATALOGUE, include_unreleased=True), lambda a: True),
    ]
    for filters, allowed in cases:
        kept = [a for a in CATALOGUE if filters.passes(a)]
        released = [a for a in CATALOGUE if filters.include_unreleased or a.status is None]
        assert kept == [a for a in released if allowed(a)], filters
        assert kept, filters  # each case keeps something, so it is tested both ways
    assert not Filters(year_from=2000).passes(db.Anime(1, "No year"))


def test_unknown_genre_or_format_is_a_clear_error():
    with pytest.raises(FilterError) as caught:
        make_filters(CATALOGUE, genres=["Actoin"])
    assert "--genre 'Actoin' is not a genre" in str(caught.value)
    assert "Valid: Action, Comedy, Drama." in str(caught.value)
    with pytest.raises(FilterError, match="--exclude-genre 'Mecha'"):
        make_filters(CATALOGUE, exclude_genres=["Mecha"])
    with pytest.raises(FilterError) as caught:
        make_filters(CATALOGUE, formats=["Series"])
    assert all(f in str(caught.value) for f in FORMATS)
    with pytest.raises(FilterError, match="after --year-to"):
        make_filters(CATALOGUE, year_from=2020, year_to=2010)
