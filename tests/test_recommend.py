"""recommend.py and bert4rec/recommender.py: a tiny model trained once on a planted store, then
recommendations for stored users, typed titles, live AniList users (the fake server) and every
user at once."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import pickle
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, fake_venv, run_script
from fakes import FAST
from planted import NOT_IN_CATALOGUE, TINY_TRAINING, make_store, part

from bert4rec import checkpoint, cli, commands, data, db, paths, worlds
from bert4rec.recommender import (
    Recommender,
    RecommendError,
    WatchedTitles,
    history_from_entries,
    recommend_all_users,
)
from bert4rec.simulator import FakeAniList
from bert4rec.titles import TitleIndex, normalise
from bert4rec.world import FakeUser, World, make_entry


def japanese(anime_id: int) -> str:
    return f"作品{anime_id}"


def native_only(anime_id: int) -> bool:
    return anime_id % 10 == 7


def adult(anime_id: int) -> bool:
    return anime_id % 13 == 0


def enrich_catalogue(path: Path) -> None:
    """Give the planted titles what real ones have: Japanese titles (some titles have nothing
    else, so they are shown in Japanese), English ones, genres, formats, years, adult titles."""
    conn = db.connect(path)
    db.upsert_anime(
        conn,
        [
            replace(
                a,
                title_romaji=None if native_only(a.anime_id) else a.title_romaji,
                title_english=f"English {a.anime_id}" if a.anime_id % 4 == 0 else None,
                title_native=japanese(a.anime_id),
                genres=("Action", "Drama") if a.anime_id % 2 else ("Comedy",),
                format="TV" if a.anime_id % 3 else "MOVIE",
                start_year=2000 + a.anime_id % 20,
                is_adult=adult(a.anime_id),
            )
            for a in db.load_catalogue(conn)
        ],
    )
    conn.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = make_store(tmp_path_factory.mktemp("store") / "bert.db", users=150)
    enrich_catalogue(path)
    return path


@pytest.fixture(scope="module")
def models(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    result = run_script("train_model.py", "--db", str(store), "--output", str(out), *TINY_TRAINING)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "models"


@pytest.fixture(scope="module")
def recommender(store, models) -> Recommender:
    conn = db.connect(store, create=False)
    return Recommender.load(models, db.load_catalogue(conn))


@pytest.fixture(scope="module")
def recommend_cli():
    spec = importlib.util.spec_from_file_location("recommend_cli", ROOT / "recommend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def run(*argv: str) -> int:
        args = module.parse_args(list(argv))
        return cli.run(lambda: module.main(args), args)

    return run


def run_recommend(models: Path, store: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return run_script("recommend.py", "--model", str(models), "--db", str(store), *args, **kw)


# --- the Recommender ---------------------------------------------------------------------------


def test_never_recommends_the_list_padding_or_tokens(recommender, store):
    conn = db.connect(store, create=False)
    user = db.load_history(conn, "user7")
    on_list = {e.anime_id for e in user.entries}
    planned = {e.anime_id for e in user.entries if e.status == "PLANNING"}
    assert planned, "the planted user should plan a title"
    mapping = recommender.mapping
    everything = mapping.num_items

    result = recommender.recommend(history_from_entries(user.entries), top_k=everything)
    ids = [r.anime.anime_id for r in result.items]
    assert len(ids) == len(set(ids)) == everything - len(on_list & set(mapping.anime_ids))
    assert set(ids) <= set(mapping.anime_ids) and not set(ids) & on_list
    assert NOT_IN_CATALOGUE in on_list and NOT_IN_CATALOGUE not in ids
    assert [r.rank for r in result.items] == list(range(1, len(ids) + 1))
    probabilities = [r.probability for r in result.items]
    assert probabilities == sorted(probabilities, reverse=True)
    assert math.isclose(sum(probabilities), 1.0, rel_tol=1e-4)  # all that may be recommended

    with_plans = recommender.recommend(
        history_from_entries(user.entries, include_planning=True), top_k=everything
    )
    assert planned <= {r.anime.anime_id for r in with_plans.items}

    grown_ups = recommender.recommend(WatchedTitles([part(0, 0)]), top_k=everything)
    assert any(r.anime.is_adult for r in grown_ups.items)
    no_adult = recommender.recommend(
        WatchedTitles([part(0, 0)]), top_k=everything, exclude_adult=True
    )
    assert no_adult.items and not any(r.anime.is_adult for r in no_adult.items)


def test_a_planted_chain_gets_its_next_part_first(recommender):
    for k in (2, 3, 4):
        firsts = [
            recommender.recommend(WatchedTitles([part(c, p) for p in range(k)]), top_k=1)
            .items[0]
            .anime.anime_id
            for c in range(8)
        ]
        right = sum(first == part(c, k) for c, first in enumerate(firsts))
        assert right >= 7, (k, firsts)


def test_unknown_ids_are_reported_not_fatal(recommender):
    result = recommender.recommend(WatchedTitles([424242, part(1, 0), part(1, 1), 434343]))
    assert result.unknown_ids == (424242, 434343) and result.titles_used == 2
    assert len(result.items) == 20  # the default --top


def test_histories_follow_the_training_watch_order(store, recommender):
    conn = db.connect(store, create=False)
    mapping = recommender.mapping
    for user in db.load_histories(conn):
        history = history_from_entries(user.entries)
        encoded = data.encode_history(history.watched, mapping)
        assert encoded.items.tolist() == data.user_sequence(user.entries, mapping), user.user_name
        assert encoded.unknown == [NOT_IN_CATALOGUE]


def test_batches_give_what_single_calls_give_with_one_forward_per_batch(store, recommender):
    conn = db.connect(store, create=False)
    calls = []
    forward = recommender.model.next_item_logits

    def counted(inputs: torch.Tensor) -> torch.Tensor:
        calls.append(len(inputs))
        return forward(inputs)

    recommender.model.next_item_logits = counted
    try:
        # The reasons take one more forward pass a user (reasons.py); scoring is what is counted.
        rows = recommend_all_users(recommender, conn, top_k=5, batch_size=16, explain=False)
        batched_calls = list(calls)
        users = db.load_histories(conn)
        alone = [
            recommender.recommend(history_from_entries(u.entries), top_k=5, explain=False)
            for u in users
        ]
    finally:
        del recommender.model.next_item_logits
    assert len(rows) == len(users) == 150
    assert batched_calls == [16] * 9 + [6]  # one forward pass per batch, not per user
    for (user, batched), single, stored in zip(rows, alone, users):
        assert user.user_name == stored.user_name
        assert [r.anime.anime_id for r in batched.items] == [r.anime.anime_id for r in single.items]
        np.testing.assert_allclose(
            [r.probability for r in batched.items], [r.probability for r in single.items], 1e-4
        )


# --- title matching ----------------------------------------------------------------------------


def anime(anime_id: int, romaji: str, english: str | None = None, native: str | None = None):
    return db.Anime(anime_id, romaji, english, native)


REAL_LIKE = [
    anime(1, "Shingeki no Kyojin", "Attack on Titan", "進撃の巨人"),
    anime(2, "Steins;Gate", "Steins;Gate", "シュタインズ・ゲート"),
    anime(3, "HUNTER×HUNTER (2011)", "Hunter x Hunter (2011)", "HUNTER×HUNTER"),
    anime(4, "Pokémon", "Pokémon", "ポケットモンスター"),
    anime(5, "Re:Zero kara Hajimeru Isekai Seikatsu", "Re:ZERO -Starting Life in Another World-"),
    anime(6, "HUNTER×HUNTER", None, "HUNTER×HUNTER"),  # 1999: less popular, so listed later
    anime(7, "Shingeki no Kyojin Season 2", "Attack on Titan Season 2", "進撃の巨人 Season2"),
]


def test_titles_match_whatever_the_case_punctuation_accents_or_small_typos():
    index = TitleIndex(REAL_LIKE)
    for query, expected in [
        ("attack on titan", 1),
        ("SHINGEKI NO KYOJIN", 1),
        ("進撃の巨人", 1),
        ("Atack on Titan", 1),  # a typo
        ("attack on titan season 2", 7),
        ("steins gate", 2),
        ("Steins; Gate!", 2),
        ("pokemon", 4),
        ("ＰＯＫＥＭＯＮ", 4),  # full-width letters
        ("hunter x hunter", 3),  # 2011's native title is 1999's: the more popular wins
        ("Hunter x Hunter 2011", 3),
    ]:
        match = index.match(query)
        assert match.anime is not None and match.anime.anime_id == expected, (query, match)
    assert index.match("Atack on Titan").ratio < 1.0 == index.match("attack on titan").ratio


def test_unknown_titles_are_reported_with_suggestions():
    index = TitleIndex(REAL_LIKE)
    assert index.match("Completely Unknown Show").anime is None
    assert index.match("").anime is None and index.match("!!").suggestions == ()
    re_zero = index.match("Re Zero")
    assert re_zero.anime is None and re_zero.suggestions[0].anime_id == 5
    far_typo = index.match("Atakc of Titon")
    assert far_typo.anime is None and far_typo.suggestions[0].anime_id == 1


def test_normalise():
    assert normalise("  Steins;Gate  ") == "steins gate"
    assert normalise("HUNTER×HUNTER") == "hunter x hunter"
    assert normalise("Pokémon") == "pokemon"
    assert normalise("がっこうぐらし！") == "がっこうぐらし"  # voicing marks stay


# --- recommend.py ------------------------------------------------------------------------------


def test_titles_cli_reports_matches_and_follows_the_chain(models, store):
    typed = ["title 118", "Titel 119", japanese(120), "Completely Unknown Show"]
    result = run_recommend(models, store, "--titles", *typed, "--top", "5", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert [t["anime_id"] for t in document["titles"]] == [118, 119, 120, None]
    assert document["titles"][1]["ratio"] < 1 and document["titles"][2]["ratio"] == 1
    assert document["source"] == "titles" and document["history"]["used"] == 3
    recommendations = document["recommendations"]
    assert [r["rank"] for r in recommendations] == [1, 2, 3, 4, 5]
    assert recommendations[0]["anime_id"] == part(3, 3) == 121
    assert {118, 119, 120}.isdisjoint(r["anime_id"] for r in recommendations)
    assert all(0 < r["probability"] <= 1 for r in recommendations)
    assert "probability" in document["score"]
    assert '"Completely Unknown Show": not found' in result.stderr

    table = run_recommend(models, store, "--titles", "TITLE 118", "title 119", "--top", "3")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert '  "TITLE 118" -> Title 118 (TV 2018)' in lines
    first = next(line for line in lines if line.split()[:1] == ["1"])
    assert "English 120" in first  # the next part, shown by its English title


def test_no_title_matched_is_an_error(recommend_cli, models, store, capsys):
    code = recommend_cli("--model", str(models), "--db", str(store), "--titles", "Nothing Here")
    assert code == 2
    assert "none of the titles matched" in capsys.readouterr().err


@pytest.fixture(scope="module")
def anilist():
    """A live AniList with a user never loaded, who watched parts 0-2 of chain 6 (listed out of
    order: the dates decide), plans part 3, and watched a title outside the catalogue."""
    entries = [
        make_entry(10, part(6, 2), completedAt={"year": 2021, "month": 3, "day": 1}),
        make_entry(11, part(6, 0), completedAt={"year": 2021, "month": 1, "day": 1}),
        make_entry(12, NOT_IN_CATALOGUE, completedAt={"year": 2020, "month": 1, "day": 1}),
        make_entry(13, part(6, 1), completedAt={"year": 2021, "month": 2, "day": 5}),
        make_entry(14, part(6, 3), "PLANNING"),
    ]
    world = World(
        [],
        [
            FakeUser(501, "Newcomer", entries),
            FakeUser(502, "Planner", [make_entry(20, part(6, 3), "PLANNING")]),
            FakeUser(503, "Hidden", entries, private=True),
        ],
    )
    with FakeAniList(world) as api:
        yield api


def test_live_user_from_the_fake_anilist(models, store, anilist):
    live = ["--user", "newcomer", "--live", "--api-url", anilist.url, *FAST, "--json"]
    result = run_recommend(models, store, *live)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["user"] == "Newcomer" and document["source"] == "anilist"
    assert document["history"] == {"watched": 4, "used": 3, "unknown_ids": [NOT_IN_CATALOGUE]}
    ids = [r["anime_id"] for r in document["recommendations"]]
    assert part(6, 3) not in ids  # planned: on the list
    assert not {part(6, p) for p in range(3)} & set(ids)

    # --include-planning lets the planned part back in, and it is what comes next. The API's
    # address may come from ANILIST_API_URL as well as from --api-url.
    env = {"ANILIST_API_URL": anilist.url}
    again = run_recommend(
        models, store, *live[:3], *FAST, "--include-planning", "--top", "3", env=env
    )
    assert again.returncode == 0, again.stderr
    assert f"Title {part(6, 3)}" in again.stdout.splitlines()[3]  # rank 1


def test_a_user_the_store_lacks_is_fetched_from_anilist_saying_so(models, store, anilist):
    """Names, @names and profile addresses alike; no --live needed (what 4_recommend runs)."""
    for typed in ("newcomer", "@Newcomer", "https://anilist.co/user/Newcomer/animelist"):
        result = run_recommend(
            models, store, "--user", typed, "--api-url", anilist.url, *FAST, "--json"
        )
        assert result.returncode == 0, (typed, result.stderr)
        assert json.loads(result.stdout)["user"] == "Newcomer"
        said = result.stderr.lower()
        assert "newcomer is not among the 150 users in" in said, said
        assert f"fetching newcomer's list from the anilist simulator at {anilist.url}" in said
    stored = run_recommend(models, store, "--user", "anilist.co/user/user3", "--top", "2")
    assert stored.returncode == 0 and "Top 2 for user3" in stored.stdout, stored.stderr
    assert "fetching" not in stored.stderr


def test_users_the_database_or_anilist_cannot_give(recommend_cli, models, store, anilist, capsys):
    base = ["--model", str(models), "--db", str(store), "--api-url", anilist.url, *FAST]
    for name, message in [
        ("Nobody", "AniList has no user named 'Nobody'"),
        ("Hidden", "private"),
        ("Planner", "Planner has no watched titles on AniList"),
    ]:
        for live in ([], ["--live"]):
            assert recommend_cli(*base, "--user", name, *live) == 2, name
            err = capsys.readouterr().err
            assert "error: " in err and message in err, err


def test_a_name_that_is_no_name_or_an_unreachable_anilist_is_a_clear_error(
    recommend_cli, models, store
):
    for typed, why in [
        ("two words", "holds spaces"),
        ("https://anilist.co/anime/5114/", "is not an AniList user name"),
    ]:
        result = run_recommend(models, store, "--user", typed)
        assert result.returncode == 2 and f"'{typed}' {why}" in result.stderr, result.stderr
    down = run_recommend(
        models, store, "--user", "Newcomer", "--api-url", "http://127.0.0.1:9", "--max-retries",
        "0", "--timeout", "2",
    )  # fmt: skip
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert "cannot reach the AniList API at http://127.0.0.1:9" in down.stderr, down.stderr


def model_of_world(folder: Path, world: str) -> Path:
    """The model in `folder`, as training records a store's world (worlds.SETTINGS_FIELD)."""
    path = folder / "best_model.pth"
    payload = checkpoint.load(path)
    payload["train_config"][worlds.SETTINGS_FIELD] = world
    checkpoint.save(payload, path)
    return folder


def test_a_model_never_scores_a_list_of_another_world(
    recommend_cli, model_copy, store, anilist, tmp_path, capsys
):
    """Checked before anything is fetched: AniList is out of reach here, so a fetch would end
    with exit status 1, not this refusal."""
    synthetic = model_of_world(model_copy, worlds.SIMULATOR)
    base = ["--model", str(synthetic), "--db", str(store), *FAST, "--max-retries", "0"]
    for live in ([], ["--live"]):
        code = recommend_cli(*base, "--user", "Alice", "--api-url", paths.ANILIST_API_URL, *live)
        err = capsys.readouterr().err
        assert code == 2, err
        assert "was trained on the AniList simulator's synthetic data" in err, err
        assert "Alice's list would come from AniList: the model cannot score it" in err, err
        assert commands.launcher("run_all") in err
    # A user of its own world is scored.
    assert recommend_cli(*base, "--user", "Newcomer", "--api-url", anilist.url, "--json") == 0
    capsys.readouterr()

    real = model_of_world(model_copy, worlds.ANILIST)
    code = recommend_cli(
        "--model", str(real), "--db", str(store), "--user", "Newcomer", "--api-url", anilist.url
    )
    err = capsys.readouterr().err
    assert code == 2 and "was trained on real AniList data" in err, err
    assert f"from the AniList simulator at {anilist.url}" in err and "Leave out --api-url" in err

    # Nor a store of another world (the model knows its own).
    other = Path(shutil.copy2(store, tmp_path / "synthetic.db"))
    conn = db.connect(other)
    worlds.claim_store(conn, worlds.SIMULATOR, str(other))
    conn.close()
    assert recommend_cli("--model", str(real), "--db", str(other), "--user", "user1") == 2
    err = capsys.readouterr().err
    assert f"but {other} holds the AniList simulator's synthetic data" in err, err


def test_stored_user_table(models, store, recommender):
    result = run_recommend(models, store, "--user", "USER3", "--top", "4")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Top 4 for user3: read ")
    assert lines[2].split() == ["Rank", "Score", "Format", "Year", "Title", "(genres)", "-", "why"]
    assert [line.split()[0] for line in lines[3:7]] == ["1", "2", "3", "4"]
    assert lines[3].split()[1].endswith("%")
    # The scorer training chose for this model (on planted chains EASE-recent ranks every
    # validation target first, so the model alone only on a tie), and what its score means.
    assert lines[-2] == f"Scoring: {recommender.scoring}."
    assert lines[-1] == f"Score: {recommender.score_meaning}."
    assert all(" - " in line for line in lines[3:7])  # every title says why


def test_legacy_code_page_does_not_crash(models, store):
    """Titles only in Japanese, printed to a cp1252 console (Windows' default for Western
    Europe): '?' for what it cannot show, never UnicodeEncodeError."""
    env = {"PYTHONIOENCODING": "cp1252"}
    table = run_recommend(models, store, "--user", "user3", "--top", "60", env=env)
    assert table.returncode == 0, table.stderr
    assert "??" in table.stdout  # a native-only title, replaced
    as_json = run_recommend(models, store, "--user", "user3", "--top", "60", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    assert as_json.stdout.isascii()  # escaped, so exact on any code page
    titles = [r["title"] for r in json.loads(as_json.stdout)["recommendations"]]
    assert any(title == japanese(r) for r in (107, 117, 127, 137, 147) for title in titles)


def test_all_users_csv(models, store, tmp_path):
    out = tmp_path / "recs.csv"
    result = run_recommend(
        models, store, "--all-users", "--out", str(out), "--top", "3", "--batch-size", "32"
    )
    assert result.returncode == 0, result.stderr
    assert "Recommending: 100%" in result.stderr and "for 150 users" in result.stdout
    assert not list(tmp_path.glob("*.tmp"))
    with open(out, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 150 * 3
    conn = db.connect(store, create=False)
    by_user: dict[str, list[dict]] = {}
    for row in rows:
        by_user.setdefault(row["user_name"], []).append(row)
    for name, user_rows in by_user.items():
        assert [r["rank"] for r in user_rows] == ["1", "2", "3"]
        on_list = {e.anime_id for e in db.load_history(conn, name).entries}
        assert not on_list & {int(r["anime_id"]) for r in user_rows}
        assert all(0 < float(r["probability"]) <= 1 for r in user_rows)


# --- loading safely ----------------------------------------------------------------------------


@pytest.fixture
def model_copy(models, tmp_path) -> Path:
    return Path(shutil.copytree(models, tmp_path / "models"))


def write_mapping(folder: Path, anime_ids: list[int]) -> None:
    mapping = data.ItemMapping(tuple(anime_ids)).to_dict()
    (folder / "item_mappings.json").write_text(json.dumps(mapping), encoding="utf-8")


def test_a_mapping_that_does_not_fit_the_model_is_refused(model_copy, store):
    catalogue = db.load_catalogue(db.connect(store, create=False))
    ids = list(Recommender.load(model_copy, catalogue).mapping.anime_ids)
    write_mapping(model_copy, ids[:-1])
    with pytest.raises(RecommendError, match="the model knows 60 titles, the mapping 59"):
        Recommender.load(model_copy, catalogue)
    ids[3], ids[4] = ids[4], ids[3]
    write_mapping(model_copy, ids)
    with pytest.raises(RecommendError, match="not the same AniList ids .item 4 is"):
        Recommender.load(model_copy / "best_model.pth", catalogue)
    (model_copy / "item_mappings.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RecommendError, match="cannot read the item mapping"):
        Recommender.load(model_copy, catalogue)


class _Trap:
    """Unpickling this writes a file: proof that a pickle was read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "unpickled"))


def test_the_pickle_is_never_read(model_copy, store, tmp_path):
    sprung = tmp_path / "sprung"
    (model_copy / "item_mappings.pkl").write_bytes(pickle.dumps(_Trap(sprung)))
    result = run_recommend(model_copy, store, "--user", "user1", "--top", "1")
    assert result.returncode == 0, result.stderr
    assert not sprung.exists()


def test_missing_or_broken_inputs_are_one_clear_line(
    recommend_cli, models, model_copy, store, tmp_path, capsys
):
    truncated = model_copy / "best_model.pth"
    truncated.write_bytes(truncated.read_bytes()[:4000])
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (tmp_path / "nothing", store, "no trained model at", "3_train_model"),
        (empty, store, "no trained model in", "3_train_model"),
        (truncated, store, "is damaged", "final_model.pth"),
        (models, tmp_path / "no.db", "database not found", "2_load_users"),
    ]
    for model, database, message, advice in cases:
        code = recommend_cli("--model", str(model), "--db", str(database), "--user", "user1")
        err = capsys.readouterr().err
        assert code == 2, (model, err)
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert message in err and advice in err, err


# --- launchers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("launcher", ["4_recommend.sh", "recommend.sh"])
def test_launcher_asks_for_a_user_name_or_passes_arguments_on(launcher, tmp_path):
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    for name in ("4_recommend.sh", "recommend.sh"):
        shutil.copy2(ROOT / name, tmp_path / name)
    fake_venv(tmp_path)
    (tmp_path / "recommend.py").write_text("import sys\nprint('ARGS', sys.argv[1:])\n")
    script = str(tmp_path / launcher)

    asked = subprocess.run([script], input="Alice\n", capture_output=True, text=True)
    assert "ARGS ['--user', 'Alice', '--page']" in asked.stdout, asked.stderr
    passed = subprocess.run([script, "--titles", "A B", "C"], capture_output=True, text=True)
    assert "ARGS ['--titles', 'A B', 'C']" in passed.stdout
    nobody = subprocess.run([script], input="\n", capture_output=True, text=True)
    assert nobody.returncode == 2 and "No user name given" in nobody.stderr
