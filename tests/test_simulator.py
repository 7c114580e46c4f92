"""The fake AniList speaks AniList's shapes and rules (raw HTTP, no client in between)."""

from __future__ import annotations

import pytest
import requests
from fakes import FakeClock, catalogue, standard_world

from bert4rec import simulator
from bert4rec.simulator import FakeAniList, GraphQLError, World, parse_query

PAGE = "query($page: Int!, $perPage: Int = 50) { Page(page: $page, perPage: $perPage) { %s } }"
MEDIA = "pageInfo { hasNextPage perPage } media(sort: [POPULARITY_DESC, ID]) { id popularity }"


def post(api: FakeAniList, query: str, variables: dict | None = None) -> requests.Response:
    return requests.post(api.url, json={"query": query, "variables": variables or {}}, timeout=5)


def test_parser_reads_variables_defaults_aliases_and_literals():
    op = parse_query(
        'query Q($a: Int!, $b: [String] = ["x", "y"]) {\n'
        "  first: Page(page: $a) { media(sort: [POPULARITY_DESC, ID], isAdult: false) { id } }\n"
        '  User(name: "Bob") { id }  # a comment\n'
        "}"
    )
    assert op.defaults == {"b": ["x", "y"]}
    page, user = op.fields
    assert (page.alias, page.name, page.args["page"].name) == ("first", "Page", "a")
    assert page.fields[0].args == {"sort": ["POPULARITY_DESC", "ID"], "isAdult": False}
    assert user.args == {"name": "Bob"} and user.key == "User"


@pytest.mark.parametrize("text", ["{ User(name: ) { id } }", "{ User { id }", "mutation { x }"])
def test_parser_rejects_broken_queries(text):
    with pytest.raises(GraphQLError):
        parse_query(text)


def test_pages_are_capped_at_50_and_only_asked_fields_come_back():
    with FakeAniList(World(catalogue(120))) as api:
        body = post(api, PAGE % MEDIA, {"page": 1, "perPage": 500}).json()
    page = body["data"]["Page"]
    assert page["pageInfo"] == {"hasNextPage": True, "perPage": 50}
    assert len(page["media"]) == 50 and set(page["media"][0]) == {"id", "popularity"}


def test_page_depth_past_5000_is_an_http_400_in_anilists_words():
    with FakeAniList(World(catalogue(10))) as api:
        ok = post(api, PAGE % MEDIA, {"page": 100})
        refused = post(api, PAGE % MEDIA, {"page": 101})
    assert ok.status_code == 200
    assert refused.status_code == 400
    assert refused.json() == {
        "errors": [{"message": simulator.PAGE_DEPTH_MESSAGE, "status": 400}],
        "data": {"Page": None},
    }


def test_unknown_fields_and_missing_users_answer_like_anilist():
    with FakeAniList(standard_world()) as api:
        unknown = post(api, '{ User(name: "Alice") { id shoeSize } }')
        missing = post(api, "query($n: String) { User(name: $n) { id } }", {"n": "Nobody"})
        private = post(api, "{ MediaListCollection(userId: 4, type: ANIME) { hasNextChunk } }")
    assert unknown.status_code == 400 and "shoeSize" in unknown.json()["errors"][0]["message"]
    assert missing.status_code == 404
    assert missing.json() == {
        "errors": [{"message": "Not Found.", "status": 404}],
        "data": {"User": None},
    }
    assert private.status_code == 404
    assert private.json()["errors"][0]["message"] == "Private User"


def test_rate_limit_headers_count_down_and_the_window_resets():
    clock = FakeClock()
    with FakeAniList(standard_world(), rate_limit=3, clock=clock.monotonic) as api:
        query = '{ User(name: "Bob") { id } }'
        answers = [post(api, query) for _ in range(4)]
        clock.now += 60
        after = post(api, query)
    assert [a.headers.get("X-RateLimit-Remaining") for a in answers[:3]] == ["2", "1", "0"]
    assert answers[3].status_code == 429 and answers[3].headers["Retry-After"] == "60"
    assert answers[3].json()["errors"][0]["message"] == "Too Many Requests."
    assert after.status_code == 200 and after.headers["X-RateLimit-Remaining"] == "2"
    assert after.headers["X-RateLimit-Limit"] == "3"


def test_faults_hit_the_requests_they_are_told_to():
    with FakeAniList(standard_world()) as api:
        query = '{ User(name: "Bob") { id } }'
        api.fail("http500", times=2)
        api.fail("disabled", when=lambda stats: stats.requests >= 4)
        codes = [post(api, query).status_code for _ in range(5)]
        api.fail("garbage", status=503)
        garbage = post(api, query)
    assert codes == [500, 500, 200, 403, 200]
    assert garbage.status_code == 503 and garbage.text.startswith("<html>")
    with pytest.raises(ValueError):
        api.fail("meteor")


def test_list_collection_repeats_custom_list_entries_and_hides_hidden_ones():
    query = (
        '{ MediaListCollection(userName: "alice", type: ANIME, forceSingleCompletedList: true)'
        " { hasNextChunk lists { name isCustomList entries { id mediaId } } } }"
    )
    with FakeAniList(standard_world()) as api:
        lists = post(api, query).json()["data"]["MediaListCollection"]["lists"]
    by_name = {group["name"]: [e["mediaId"] for e in group["entries"]] for group in lists}
    assert by_name["Favourites"] == [1, 2, 3, 50] and by_name["Rewatch"] == [2, 4]
    assert 50 not in by_name.get("Dropped", [])  # hidden from status lists
    assert [g["isCustomList"] for g in lists] == [False, False, True, True]
