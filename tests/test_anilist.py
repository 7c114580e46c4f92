"""The AniList client against the fake server, on a fake clock shared by both."""

from __future__ import annotations

import json
import socket

import pytest
import requests
from fakes import FakeClock, catalogue, expected_order, standard_world, user_with_list

from bert4rec import anilist, db
from bert4rec.anilist import AniListClient, CataloguePosition, Pacer
from bert4rec.simulator import MAX_COMPLEXITY, FakeAniList, parse_query, query_complexity
from bert4rec.world import World, make_entry, make_media, relate, relation_node


@pytest.fixture
def clock():
    return FakeClock()


def client_for(api: FakeAniList, clock: FakeClock, **kwargs) -> AniListClient:
    kwargs.setdefault("rate_limit", 60_000)
    return AniListClient(api.url, clock=clock.monotonic, sleep=clock.sleep, **kwargs)


def served(clock: FakeClock, *, world: World | None = None, **kwargs) -> FakeAniList:
    """The fake AniList on the test's clock, serving `world` (default: the standard one)."""
    return FakeAniList(world or standard_world(), clock=clock.monotonic, **kwargs)


# --- pacing ----------------------------------------------------------------------------------


def test_pacer_spaces_requests_under_the_limit(clock):
    pacer = Pacer(60, clock=clock.monotonic, sleep=clock.sleep)
    for _ in range(4):
        pacer.wait()
    assert clock.sleeps == pytest.approx([1 / anilist.PACE_HEADROOM] * 3)


def test_pacer_adopts_the_advertised_limit_and_waits_out_a_low_remaining(clock):
    pacer = Pacer(clock=clock.monotonic, sleep=clock.sleep)
    assert pacer.limit == anilist.DEFAULT_RATE_LIMIT
    window_start = pacer.wait()
    pacer.observe(window_start, limit=600, remaining=599)  # first request of a window
    assert pacer.limit == 600
    clock.now += 0.5
    sent = pacer.wait()
    assert sent == pytest.approx(window_start + 0.5)  # not the 2 s spacing of 30/min
    pacer.observe(sent, limit=600, remaining=2)
    pacer.wait()
    assert clock.now == pytest.approx(window_start + 60 + anilist.WINDOW_MARGIN_SECONDS)


def test_pacer_waits_a_whole_window_when_it_does_not_know_where_the_window_began(clock):
    pacer = Pacer(6000, clock=clock.monotonic, sleep=clock.sleep)
    sent = pacer.wait()
    pacer.observe(sent, limit=90, remaining=1)  # an override keeps its own pace...
    assert pacer.limit == 6000
    pacer.wait()  # ...but Remaining still rules
    assert clock.now - sent == pytest.approx(60 + anilist.WINDOW_MARGIN_SECONDS)


@pytest.mark.parametrize(
    "header, seconds",
    [("7", 7), ("1.5", 1.5), (None, 60), ("0", 60), ("-3", 60), ("soon", 60), ("nan", 60)],
)
def test_retry_after_is_a_lower_bound_with_60_s_when_unusable(header, seconds):
    assert anilist.retry_after_seconds(header) == seconds


def test_rate_limit_must_be_positive():
    with pytest.raises(ValueError):
        Pacer(0)


# --- reading answers -------------------------------------------------------------------------


def answer(status: int, body, headers: dict | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response.headers.update(headers or {})
    response.url = "http://fake/"
    return response


def errors(message: str, status: int | None) -> dict:
    error = {"message": message} if status is None else {"message": message, "status": status}
    return {"errors": [error], "data": None}


@pytest.mark.parametrize(
    "status, body, raised",
    [
        (200, errors("Not Found.", 404), anilist.NotFound),  # the body decides, not HTTP 200
        (404, errors("Private User", 404), anilist.PrivateUser),
        (404, errors("Private User", None), anilist.PrivateUser),
        (404, errors("Not Found.", 404), anilist.NotFound),
        (404, b"<html>404</html>", anilist.RequestRejected),  # a wrong URL is not "no user"
        (400, errors("Page depth exceeds maximum allowed", 400), anilist.PageDepthExceeded),
        (200, errors('Cannot query field "x"', None), anilist.RequestRejected),
        (400, errors("Max query complexity should be 500", 400), anilist.RequestRejected),
        (403, errors("The AniList API has been temporarily disabled", 403), anilist.ApiUnavailable),
        (403, b"<html>Cloudflare: access denied</html>", anilist.ApiUnavailable),
        (429, errors("Too Many Requests.", 429), anilist._RateLimited),
        (429, b"slow down", anilist._RateLimited),
        (500, errors("Internal Server Error", 500), anilist._Transient),
        (502, b"<html>Bad gateway</html>", anilist._Transient),
        (200, b"<html>not json</html>", anilist._Transient),
        (200, {"no": "data"}, anilist._Transient),
    ],
)
def test_answers_are_sorted_by_body_first_then_status(status, body, raised):
    with pytest.raises(raised):
        anilist.read_answer(answer(status, body))


def test_a_good_answer_gives_its_data():
    assert anilist.read_answer(answer(200, {"data": {"User": {"id": 1}}})) == {"User": {"id": 1}}


# --- retries and waits, end to end over HTTP -------------------------------------------------


def test_429_waits_retry_after_then_succeeds(clock):
    with served(clock) as api:
        api.fail("rate_limit", retry_after="7")
        client = client_for(api, clock)
        assert client.fetch_user("Alice").user_id == 1
        assert api.stats.requests == 2 and client.rate_limited == 1
        assert 7 <= max(clock.sleeps) <= 7.8


def test_429_without_retry_after_waits_a_minute(clock):
    with served(clock) as api:
        api.fail("rate_limit", retry_after=None)
        client = client_for(api, clock)
        client.fetch_user("Alice")
        assert 60 <= max(clock.sleeps) <= 65


def test_endless_429s_give_up(clock):
    with served(clock) as api:
        api.fail("rate_limit", times=None, retry_after="1")
        with pytest.raises(anilist.RetriesExhausted, match="429"):
            client_for(api, clock).fetch_user("Alice")
        assert api.stats.requests == anilist.MAX_RATE_LIMIT_WAITS + 1


def test_pacing_by_the_servers_headers_never_trips_its_limit(clock):
    with served(clock, rate_limit=10) as api:
        client = client_for(api, clock, rate_limit=None)
        for _ in range(35):
            client.fetch_user("Bob")
        assert api.stats.rate_limited == 0
        assert client.pacer.limit == 10
        assert clock.now > 3 * 60  # 35 requests at < 10 a minute


def test_without_headers_a_too_fast_client_is_limited_and_recovers(clock):
    with served(clock, rate_limit=5, send_rate_headers=False) as api:
        client = client_for(api, clock)
        for _ in range(8):
            client.fetch_user("Bob")
        assert api.stats.rate_limited == 1 and client.rate_limited == 1
        assert api.stats.answered["User"] == 8


def test_server_errors_are_retried_with_growing_backoff(clock):
    with served(clock) as api:
        api.fail("http500", times=2)
        client = client_for(api, clock)
        assert client.fetch_user("Alice").name == "Alice"
        backoffs = [s for s in clock.sleeps if s > 1]
        assert len(backoffs) == 2
        assert 2 <= backoffs[0] <= 3 and 6 <= backoffs[1] <= 9


def test_server_errors_give_up_after_max_retries(clock):
    with served(clock) as api:
        api.fail("http500", times=None)
        with pytest.raises(anilist.RetriesExhausted, match="HTTP 500"):
            client_for(api, clock, max_retries=2).fetch_user("Alice")
        assert api.stats.requests == 3


def test_garbage_bodies_are_retried(clock):
    with served(clock) as api:
        api.fail("garbage", status=200)
        api.fail("garbage", status=502)
        assert client_for(api, clock).fetch_user("Alice").user_id == 1
        assert api.stats.requests == 3


def test_a_hanging_server_times_out_and_is_retried(clock):
    with served(clock) as api:
        api.fail("hang", seconds=5)
        client = client_for(api, clock, timeout=0.3)
        assert client.fetch_user("Alice").user_id == 1
        assert api.stats.faults["hang"] == 1 and api.stats.answered["User"] == 1


def test_disabled_api_stops_at_once(clock):
    with served(clock) as api:
        api.fail("disabled")
        with pytest.raises(anilist.ApiUnavailable, match="temporarily disabled"):
            client_for(api, clock).fetch_user("Alice")
        assert api.stats.requests == 1


def test_400_and_404_are_never_retried(clock):
    with served(clock) as api:
        client = client_for(api, clock)
        with pytest.raises(anilist.RequestRejected, match="Cannot query field"):
            client.query("query { User(name: $n) { id shoeSize } }", {"n": "Alice"})
        with pytest.raises(anilist.NotFound):
            client.fetch_user("Nobody")
        with pytest.raises(anilist.PrivateUser):
            client.fetch_user("Dave")
        with pytest.raises(anilist.PrivateUser):
            client.fetch_user_list(user_id=4)
        assert api.stats.requests == 4 and all(s < 0.01 for s in clock.sleeps)  # no backoff


def test_no_server_at_all_is_unreachable(clock):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = AniListClient(
        f"http://127.0.0.1:{port}/", max_retries=1, clock=clock.monotonic, sleep=clock.sleep
    )
    with pytest.raises(anilist.ApiUnreachable, match="no connection.*2 attempts"):
        client.fetch_user("Alice")


def test_user_input_travels_as_variables_with_an_honest_user_agent(clock):
    with served(clock) as api, pytest.raises(anilist.NotFound):
        client_for(api, clock).fetch_user('Alice"){ id } #')
    (request,) = api.log
    assert "Alice" not in request["query"]
    assert request["variables"] == {"name": 'Alice"){ id } #'}
    assert "bert4rec" in request["headers"]["User-Agent"] and request["headers"]["Referer"]


# --- the catalogue walk ----------------------------------------------------------------------


def walk(client: AniListClient, count: int, **kwargs) -> list:
    return [a for page in client.walk_catalogue(count, **kwargs) for a in page.animes]


def test_walk_ranks_by_popularity_and_stops_on_an_empty_page(clock):
    media = catalogue(100)
    with served(clock, world=World(media)) as api:
        animes = walk(client_for(api, clock), 500)
        # Page 2 is exactly full and says hasNextPage; page 3 is empty and ends the walk.
        assert [r["variables"]["page"] for r in api.log] == [1, 2, 3]
    assert [a.anime_id for a in animes] == expected_order(media)
    assert [a.popularity_rank for a in animes] == list(range(1, 101))
    first = animes[0]
    assert first.title_english == "English 1" and first.genres == ("Action", "Drama")
    assert (first.start_year, first.start_month, first.start_day) == (2001, 2, None)


@pytest.mark.parametrize("client_cap", [150, anilist.PAGE_DEPTH_CAP])
def test_walk_past_the_page_depth_cap_goes_on_in_windows(clock, client_cap):
    media = catalogue(400, ties=7)  # ties straddle the window edges
    with served(clock, world=World(media), page_depth_cap=150) as api:
        animes = walk(client_for(api, clock), 380, depth_cap=client_cap)
        refused = api.stats.requests - sum(api.stats.answered.values())
    assert [a.anime_id for a in animes] == expected_order(media)[:380]
    assert [a.popularity_rank for a in animes] == list(range(1, 381))
    # Knowing the cap costs no refused request; not knowing it costs one per window.
    assert (refused == 0) if client_cap == 150 else (refused > 0)


def test_walk_survives_more_ties_than_a_window_holds(clock):
    media = catalogue(130, ties=1000)  # all share one popularity
    with served(clock, world=World(media), page_depth_cap=50) as api:
        animes = walk(client_for(api, clock), 130, depth_cap=50)
    assert [a.anime_id for a in animes] == expected_order(media)[:50]  # and it ends


def test_walk_resumes_from_a_position(clock):
    media = catalogue(200)
    with served(clock, world=World(media)) as api:
        client = client_for(api, clock)
        first_two = []
        for page in client.walk_catalogue(180):
            first_two += page.animes
            position = page.position
            if position.page == 3:
                break
        resumed = CataloguePosition.from_dict(json.loads(json.dumps(position.to_dict())))
        rest = walk(client, 180, start=resumed, seen={a.anime_id for a in first_two})
    ranks = [a.popularity_rank for a in first_two + rest]
    assert ranks == list(range(1, 181))
    assert [a.anime_id for a in first_two + rest] == expected_order(media)[:180]


# --- users -----------------------------------------------------------------------------------


# --- relations, covers and the complexity cap ------------------------------------------------


@pytest.mark.parametrize(
    "query, cost",
    [(anilist.POPULAR_ANIME_QUERY, 40), (anilist.ANIME_LINKS_QUERY, 13)],
)
def test_catalogue_queries_fit_anilists_complexity_cap_at_50_a_page(query, cost):
    # Counted as AniList counts (tests/test_simulator.py checks the rule on AniList's answers):
    # the catalogue page with covers, page URL and relations costs 40 of the 500 allowed.
    assert query_complexity(parse_query(query).fields) == cost <= MAX_COMPLEXITY
    assert "perPage: $perPage" in query and anilist.PER_PAGE == 50


def media_with_edges(edges, **fields) -> dict:
    return make_media(7, 100, relations={"edges": edges}, **fields)


def test_relations_keep_anime_edges_once_and_drop_the_rest():
    edges = [
        {"relationType": "SEQUEL", "node": {"id": 8, "type": "ANIME"}},
        {"relationType": "SEQUEL", "node": {"id": 8, "type": "ANIME"}},  # repeated
        {"relationType": "ADAPTATION", "node": {"id": 900, "type": "MANGA"}},
        {"relationType": "SIDE_STORY", "node": None},
        None,
        {"relationType": "SUMMARY", "node": {"id": None, "type": "ANIME"}},
        {"relationType": "A_NEW_KIND", "node": {"id": 9, "type": "ANIME"}},
        {"relationType": "PREQUEL", "node": {"id": 7, "type": "ANIME"}},  # itself
        {"relationType": "PARENT", "node": {"id": 3, "type": "ANIME"}},
    ]
    assert anilist.relations_from_media(media_with_edges(edges)) == [
        db.Relation(7, 8, "SEQUEL"),
        db.Relation(7, 3, "PARENT"),
    ]
    assert anilist.relations_from_media(media_with_edges([])) == []  # known: none
    for unknown in (None, {"edges": None}, "broken"):
        assert anilist.relations_from_media(make_media(7, 1, relations=unknown)) is None


def test_covers_and_page_url_are_read_and_bad_ones_left_out():
    good = anilist.anime_from_media(
        make_media(
            5, 1, coverImage={"medium": "https://img/m.png", "large": "https://img/l.png"},
            siteUrl="https://anilist.co/anime/5",
        )
    )  # fmt: skip
    assert (good.cover_medium, good.cover_large, good.site_url) == (
        "https://img/m.png",
        "https://img/l.png",
        "https://anilist.co/anime/5",
    )
    for cover, url in ((None, None), ({"medium": 3, "large": "javascript:x"}, "")):
        bad = anilist.anime_from_media(make_media(5, 1, coverImage=cover, siteUrl=url))
        assert (bad.cover_medium, bad.cover_large, bad.site_url) == (None, None, None)


def test_walk_brings_relations_and_simulator_covers_in_the_same_requests(clock):
    media = catalogue(60)
    relate(media[0], media[1], "SEQUEL", "PREQUEL")
    media[0]["relations"]["edges"].append(
        {"relationType": "SOURCE", "node": relation_node(99_001, "MANGA", "MANGA")}
    )
    media[2]["relations"] = None  # an answer without relations: unknown, asked again later
    with served(clock, world=World(media)) as api:
        pages = list(client_for(api, clock).walk_catalogue(60))
        assert len(api.log) == 2  # 60 titles: two pages, nothing else
        first = pages[0].animes[0]
        assert first.cover_large == f"{api.url}covers/large/1.png"
    assert pages[0].relations[1] == [db.Relation(1, 2, "SEQUEL")]
    assert pages[0].relations[2] == [db.Relation(2, 1, "PREQUEL")]
    assert 3 not in pages[0].relations and pages[0].relations[4] == []
    assert first.site_url == "https://anilist.co/anime/1/"


def test_links_by_id_come_50_a_request_for_the_titles_asked(clock):
    media = catalogue(80)
    relate(media[69], media[70], "SIDE_STORY", "PARENT")
    with served(clock, world=World(media)) as api:
        client = client_for(api, clock)
        links, relations = client.fetch_links([71, 70, 12_345])  # 12345: not on AniList
        assert api.log[-1]["variables"]["ids"] == [71, 70, 12_345]
        with pytest.raises(ValueError):
            client.fetch_links(list(range(1, 52)))
    assert sorted(t.anime_id for t in links) == [70, 71]
    assert relations == {
        70: [db.Relation(70, 71, "SIDE_STORY")],
        71: [db.Relation(71, 70, "PARENT")],
    }
    assert all(t.cover_medium and t.cover_medium.endswith(f"/{t.anime_id}.png") for t in links)


def test_user_list_walks_chunks_and_custom_lists_keeping_each_title_once(clock):
    big = user_with_list(7, "Big", 1100, planning=150)
    big.entries.append(make_entry(99_999, 5000, "PAUSED", hiddenFromStatusLists=True))
    big.custom_lists = {"Best": [1, 2, 3, 5000], "Again": list(range(1, 600))}
    with served(clock, world=World(catalogue(10), [big])) as api:
        user_list = client_for(api, clock).fetch_user_list(user_id=7)
        assert api.stats.answered["MediaListCollection"] == 3  # 1251 entries / 500
    ids = [e.anime_id for e in user_list.entries]
    assert len(ids) == len(set(ids)) == 1251
    assert 5000 in ids  # hidden from status lists, found through the custom list
    assert user_list.watched_count == 1101
    assert (user_list.user_id, user_list.name) == (7, "Big")


def test_list_entries_keep_scores_on_100_and_partial_dates(clock):
    with served(clock) as api:
        user_list = client_for(api, clock).fetch_user_list(user_name="bob")
    by_anime = {e.anime_id: e for e in user_list.entries}
    assert by_anime[10].score is None  # AniList's 0 means "no score"
    assert by_anime[11].score == 7.0
    assert by_anime[11].started_at == "2019-04" and by_anime[11].completed_at == "2019"
    assert by_anime[11].status == "COMPLETED" and by_anime[11].progress == 12


@pytest.mark.parametrize(
    "date, iso",
    [
        ({"year": 2019, "month": 4, "day": 7}, "2019-04-07"),
        ({"year": 2019, "month": 4, "day": None}, "2019-04"),
        ({"year": 2019, "month": None, "day": 7}, "2019"),
        ({"year": None, "month": 4, "day": 7}, None),
        (None, None),
    ],
)
def test_fuzzy_dates(date, iso):
    assert anilist.fuzzy_date_iso(date) == iso


def test_recent_watchers_name_public_users_with_their_list_size(clock):
    with served(clock) as api:
        users, has_next = client_for(api, clock).recent_watchers(12)
    assert {(u.name, u.anime_count) for u in users} == {("Alice", 26), ("Bob", 22)}
    assert has_next is False  # Dave (private) has the title too but is not listed
