"""The fake AniList speaks AniList's shapes and rules (raw HTTP, no client in between)."""

from __future__ import annotations

import ast
import struct
import zlib

import pytest
import requests
from conftest import ROOT
from fakes import FakeClock, catalogue, standard_world

from bert4rec import simulator, synthetic
from bert4rec.simulator import FakeAniList, GraphQLError, parse_query, query_complexity
from bert4rec.synthetic import generate_world
from bert4rec.world import FakeUser, World

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


# --- complexity, covers, relations -----------------------------------------------------------

# Queries whose cost AniList has answered (see query_complexity): aliased Media lookups, 10 each,
# and aliased airing-schedule pages, 18 each ("should be 500 but got 522" for 29).
MEDIA_ALIAS = "a%d: Media(id: %d, type: ANIME) { id idMal format title { romaji english native } "
MEDIA_ALIAS += "startDate { year } } "
SCHEDULE_ALIAS = (
    "d%d: Page(page: 1, perPage: 50) { pageInfo { hasNextPage } "
    "airingSchedules(airingAt_greater: 0, airingAt_lesser: 1, sort: TIME) { episode airingAt "
    "media { id title { english romaji native } coverImage { extraLarge large } format "
    "seasonYear isAdult } } } "
)


def aliased(template: str, times: int) -> str:
    return "{ " + "".join(template % ((i, i + 1) if template.count("%d") == 2 else i)
                          for i in range(times)) + "}"  # fmt: skip


def test_complexity_is_counted_as_anilist_counts_it():
    assert query_complexity(parse_query(aliased(MEDIA_ALIAS, 50)).fields) == 500
    assert query_complexity(parse_query(aliased(SCHEDULE_ALIAS, 29)).fields) == 522
    assert query_complexity(parse_query(aliased(SCHEDULE_ALIAS, 27)).fields) == 486


def test_a_query_over_the_complexity_cap_is_refused_in_anilists_words():
    fields = " ".join(f"f{i}: id" for i in range(simulator.MAX_COMPLEXITY))  # 500 + Page + media
    with FakeAniList(World(catalogue(3))) as api:
        refused = post(api, "{ Page { media { " + fields + " } } }")
        fits = post(api, "{ Page { media { " + " ".join(fields.split()[4:]) + " } } }")
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {"message": "Max query complexity should be 500 but got 502.", "status": 400}
    ]
    assert fits.status_code == 200


def read_png(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, raw pixel rows) of an 8-bit RGB PNG, checking every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour_type) == (8, 2) and b"IEND" in chunks
    return width, height, zlib.decompress(chunks[b"IDAT"])


def test_covers_are_served_as_pngs_in_the_titles_colour():
    query = "{ Page { media { id coverImage { medium large color } } } }"
    with FakeAniList(World(catalogue(3))) as api:
        covers = [m["coverImage"] for m in post(api, query).json()["data"]["Page"]["media"]]
        large = requests.get(covers[0]["large"], timeout=5)
        medium = requests.get(covers[0]["medium"], timeout=5)
        missing = requests.get(f"{api.url}covers/large/999.png", timeout=5)
        url = api.url
    assert covers[0]["large"] == f"{url}covers/large/1.png"
    assert large.status_code == 200 and large.headers["Content-Type"] == "image/png"
    width, height, rows = read_png(large.content)
    assert (width, height) == simulator.COVER_PIXELS["large"]
    assert len(rows) == height * (1 + 3 * width)
    colour = bytes.fromhex(covers[0]["color"][1:])
    assert colour in rows and rows[0] == 0  # filter byte, then the title's colour among pixels
    assert read_png(medium.content)[:2] == simulator.COVER_PIXELS["medium"]
    assert missing.status_code == 404


def test_synthetic_franchises_are_related_as_on_anilist():
    world = generate_world(300, 20, seed=11)
    by_id = world.media_by_id
    inverse = {"SEQUEL": "PREQUEL", "PREQUEL": "SEQUEL", "SIDE_STORY": "PARENT",
               "SUMMARY": "PARENT", "SPIN_OFF": "PARENT", "ALTERNATIVE": "ALTERNATIVE"}  # fmt: skip
    kinds = set()
    for media in world.media:
        for edge in media["relations"]["edges"]:
            node, kind = edge["node"], edge["relationType"]
            kinds.add(kind)
            if node["type"] == "MANGA":
                assert kind == "SOURCE" and node["id"] not in by_id
                continue
            other = by_id[node["id"]]
            back = {(e["node"]["id"], e["relationType"]) for e in other["relations"]["edges"]}
            if kind in inverse:
                assert (media["id"], inverse[kind]) in back
            if kind == "SEQUEL":  # release order
                start = (other["startDate"]["year"], other["id"])
                assert start > (media["startDate"]["year"], media["id"])
            if kind in ("SIDE_STORY", "SUMMARY"):
                assert other["format"] in ("OVA", "SPECIAL", "MOVIE")
    assert {"SEQUEL", "PREQUEL", "SIDE_STORY", "PARENT", "SUMMARY", "SOURCE"} <= kinds
    one_colour = [
        {by_id[e["node"]["id"]]["coverImage"]["color"], m["coverImage"]["color"]}
        for m in world.media
        for e in m["relations"]["edges"]
        if e["node"]["type"] == "ANIME"
    ]
    assert all(len(colours) == 1 for colours in one_colour)  # a colour per franchise


def test_synthetic_users_drop_franchises_and_watch_them_in_order():
    world = generate_world(300, 150, seed=11)
    sequel_of = {}  # title -> the main entry after it
    for media in world.media:
        for edge in media["relations"]["edges"]:
            if edge["relationType"] == "SEQUEL":
                sequel_of[media["id"]] = edge["node"]["id"]
    dropped_with_sequel = in_order = out_of_order = 0
    for user in world.users:
        when = {e["mediaId"]: e["updatedAt"] for e in user.entries}
        for entry in user.entries:
            following = sequel_of.get(entry["mediaId"])
            if following is None:
                continue
            if entry["status"] == "DROPPED":
                dropped_with_sequel += 1
                assert following not in when  # a dropped franchise goes no further
            elif following in when:
                if when[following] > entry["updatedAt"]:
                    in_order += 1
                else:
                    out_of_order += 1
    assert dropped_with_sequel >= 10
    assert in_order > 100 and out_of_order == 0


def test_world_types_live_in_one_module_both_sides_import_without_a_cycle():
    modules = ("world", "synthetic", "simulator")
    imports = {}
    for name in modules:
        tree = ast.parse((ROOT / "bert4rec" / f"{name}.py").read_text(encoding="utf-8"))
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = (node.module or "").removeprefix("bert4rec.")
                found.add(module if node.level or node.module.startswith("bert4rec") else "")
            elif isinstance(node, ast.Import):
                found.update(a.name.removeprefix("bert4rec.") for a in node.names)
        imports[name] = found & set(modules)
    assert imports == {"world": set(), "synthetic": {"world"}, "simulator": {"synthetic", "world"}}
    assert simulator.World is World and synthetic.FakeUser is FakeUser
