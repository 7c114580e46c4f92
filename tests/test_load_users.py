"""load_users.py run as a user runs it, against the fake AniList."""

from __future__ import annotations

import codecs
import os
import signal
import sqlite3
import sys

import pytest
from conftest import run_script
from fakes import FAST, catalogue, standard_world, stop_when_it_hangs, user_with_list

from bert4rec import db
from bert4rec.simulator import FakeAniList
from bert4rec.world import World

USERS = "# people\r\nAlice\r\n  bob \r\n\r\nALICE\r\nCarol\r\nDave\r\nNobody\r\nnot a name\r\n"


def users_file(tmp_path, text: str = USERS, *, bom: bool = True):
    path = tmp_path / "users.txt"
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8"))
    return path


def load(api_url: str, tmp_path, *args: str, users=None):
    users = users or tmp_path / "users.txt"
    return run_script(
        "load_users.py", "--api-url", api_url, "--db", str(tmp_path / "bert.db"),
        "--users", str(users), *FAST, *args,
    )  # fmt: skip


def states(tmp_path) -> dict[str, str]:
    conn = db.connect(tmp_path / "bert.db", create=False)
    return {u.user_name: u.state for u in db.load_users(conn).values()}


def stored_entries(tmp_path) -> dict[int, int]:
    conn = sqlite3.connect(tmp_path / "bert.db")
    rows = conn.execute("SELECT user_id, COUNT(*) FROM bert_user_anime_list GROUP BY user_id")
    counts = dict(rows.fetchall())
    conn.close()
    return counts


def summary(stdout: str) -> dict[str, list[str]]:
    """The summary table: state label -> [this run, in database]."""
    rows = stdout.splitlines()[1:6]
    return {line[:16].strip(): line[16:].split() for line in rows}


def lists_asked_for(api: FakeAniList, since: int = 0) -> list:
    return [
        r["variables"].get("userId") for r in api.log[since:] if "MediaListCollection" in r["query"]
    ]


def test_loads_users_reports_the_rest_and_skips_them_next_time(tmp_path):
    users_file(tmp_path)
    with FakeAniList(standard_world()) as api:
        first = load(api.url, tmp_path)
        assert first.returncode == 0, first.stderr
        since = len(api.log)
        again = load(api.url, tmp_path)
        assert again.returncode == 0 and api.log[since:] == []  # nothing asked again
        refreshed = load(api.url, tmp_path, "--refresh")
        assert sorted(lists_asked_for(api, since)) == [1, 2, 3]
    assert refreshed.returncode == 0
    assert states(tmp_path) == {
        "Alice": "loaded",
        "Bob": "loaded",  # the name as AniList spells it
        "Carol": "too_few",
        "Dave": "private",
        "Nobody": "not_found",
    }
    assert "line 9: 'not a name'" in first.stderr and "line 5: 'ALICE'" in first.stderr
    assert "not found: Nobody" in first.stdout and "private: Dave" in first.stdout
    assert "already stored, not fetched again: 5" in again.stdout
    # Alice: 25 watched + 5 planning + 1 only in a custom list; custom lists repeat 4 more.
    assert stored_entries(tmp_path) == {1: 31, 2: 22, 3: 35}
    alice = db.load_history(db.connect(tmp_path / "bert.db"), "alice")
    by_anime = {e.anime_id: e for e in alice.entries}
    assert by_anime[50].status == "DROPPED"
    assert by_anime[1].score is None and by_anime[2].score == 7.0
    assert by_anime[2].started_at == "2019-04" and by_anime[2].completed_at == "2019"
    histories = db.load_histories(db.connect(tmp_path / "bert.db"))
    assert [h.user_name for h in histories] == ["Alice", "Bob"]


def test_summary_table_counts_this_run_and_the_database(tmp_path):
    users_file(tmp_path)
    with FakeAniList(standard_world()) as api:
        done = load(api.url, tmp_path)
    assert summary(done.stdout) == {
        "loaded": ["2", "2"],
        "too few anime": ["1", "1"],
        "not found": ["1", "1"],
        "private": ["1", "1"],
        "failed": ["0", "0"],
    }


def test_min_anime_is_applied_again_to_stored_lists_without_asking(tmp_path):
    users_file(tmp_path)
    with FakeAniList(standard_world()) as api:
        load(api.url, tmp_path)
        since = len(api.log)
        lower = load(api.url, tmp_path, "--min-anime", "5")
        higher = load(api.url, tmp_path, "--min-anime", "23")
        assert api.log[since:] == []
    assert "1 now loaded" in lower.stdout
    assert "2 now too few" in higher.stdout  # Bob (22) and Carol (5)
    assert states(tmp_path)["Alice"] == "loaded" and states(tmp_path)["Bob"] == "too_few"


def test_survives_being_killed_mid_run_and_carries_on(tmp_path):
    people = [user_with_list(i, f"User{i}", 20 + i, first_media=i) for i in range(1, 7)]
    users_file(tmp_path, "\n".join(u.name for u in people))
    with FakeAniList(World(catalogue(40), people)) as api:
        api.fail("hang", times=None, seconds=60, when=lambda s: s.lists_served >= 3)
        stop_when_it_hangs(
            api, "load_users.py", "--db", str(tmp_path / "bert.db"),
            "--users", str(tmp_path / "users.txt"),
        )  # fmt: skip
        assert states(tmp_path) == {"User1": "loaded", "User2": "loaded", "User3": "loaded"}
        api.clear_faults()
        since = len(api.log)
        resumed = load(api.url, tmp_path)
        assert lists_asked_for(api, since) == [4, 5, 6]
    assert resumed.returncode == 0, resumed.stderr
    assert set(states(tmp_path).values()) == {"loaded"}
    assert stored_entries(tmp_path) == {u.id: len(u.entries) for u in people}


def test_a_failing_user_is_recorded_the_run_goes_on_and_the_exit_code_says_so(tmp_path):
    users_file(tmp_path, "Alice\nBob\n")
    with FakeAniList(standard_world()) as api:
        api.fail("http500")  # Alice's profile
        failed = load(api.url, tmp_path, "--max-retries", "0")
        assert failed.returncode == 1
        assert states(tmp_path) == {"Alice": "failed", "Bob": "loaded"}
        assert "failed: Alice: server error (HTTP 500" in failed.stdout
        retried = load(api.url, tmp_path)  # failed users are tried again
    assert retried.returncode == 0
    assert states(tmp_path) == {"Alice": "loaded", "Bob": "loaded"}


def test_a_failed_refresh_keeps_the_stored_list(tmp_path):
    users_file(tmp_path, "Bob\n")
    with FakeAniList(standard_world()) as api:
        load(api.url, tmp_path)
        api.fail("http500", times=None)
        failed = load(api.url, tmp_path, "--refresh", "--max-retries", "0")
    assert failed.returncode == 1
    assert states(tmp_path) == {"Bob": "loaded"} and stored_entries(tmp_path) == {2: 22}


def test_several_failures_in_a_row_stop_the_run(tmp_path):
    users_file(tmp_path, "Alice\nBob\nCarol\nDave\nNobody\n")
    with FakeAniList(standard_world()) as api:
        api.fail("garbage", times=None)
        stopped = load(api.url, tmp_path, "--max-retries", "0")
        assert api.stats.requests == 3
    assert stopped.returncode == 1
    assert "3 users in a row failed" in stopped.stderr and "Traceback" not in stopped.stderr
    assert summary(stopped.stdout)["failed"] == ["3", "3"]  # the summary still comes


def test_api_disabled_mid_run_stops_keeping_who_was_loaded(tmp_path):
    users_file(tmp_path, "Alice\nBob\nCarol\n")
    with FakeAniList(standard_world()) as api:
        api.fail("disabled", times=None, when=lambda s: s.lists_served >= 1)
        stopped = load(api.url, tmp_path)
    assert stopped.returncode == 1
    assert "temporarily disabled" in stopped.stderr and "Traceback" not in stopped.stderr
    assert states(tmp_path) == {"Alice": "loaded"}  # Bob is not blamed: he is tried next time
    assert summary(stopped.stdout)["loaded"] == ["1", "1"]


def test_rate_limits_are_waited_out(tmp_path):
    users_file(tmp_path, "Alice\nBob\n")
    world = standard_world()
    with FakeAniList(world, rate_limit=3, window_seconds=1, send_rate_headers=False) as api:
        done = load(api.url, tmp_path)
        assert api.stats.rate_limited >= 1
    assert done.returncode == 0, done.stderr
    assert states(tmp_path) == {"Alice": "loaded", "Bob": "loaded"}


def test_unreachable_api_and_bad_files_get_clear_messages(tmp_path):
    users_file(tmp_path, "Alice\n")
    offline = load("http://127.0.0.1:9/", tmp_path, "--max-retries", "0")
    assert offline.returncode == 1 and "cannot reach the AniList API at" in offline.stderr
    missing = load("http://127.0.0.1:9/", tmp_path, users=tmp_path / "nobody.txt")
    assert missing.returncode == 2 and "nobody.txt" in missing.stderr
    empty = users_file(tmp_path, "# only comments\n\n")
    nobody = load("http://127.0.0.1:9/", tmp_path, users=empty)
    assert nobody.returncode == 2 and "no user names in" in nobody.stderr
    for result in (offline, missing, nobody):
        assert "Traceback" not in result.stderr


def test_discover_needs_the_catalogue(tmp_path):
    users_file(tmp_path, "")
    refused = load("http://127.0.0.1:9/", tmp_path, "--discover", "5")
    assert refused.returncode == 2
    assert "1_prepare_anime" in refused.stderr and "Traceback" not in refused.stderr


def test_discover_finds_public_users_of_fitting_list_size(tmp_path):
    people = [
        user_with_list(1, "Known", 30),
        user_with_list(2, "Fresh", 30),
        user_with_list(3, "Tiny", 3),  # screened out by list size
        user_with_list(4, "Hidden", 30, private=True),  # never listed
        user_with_list(5, "Later", 25, first_media=3),
        user_with_list(6, "Extra", 40),
    ]
    users_file(tmp_path, "Known\n")
    with FakeAniList(World(catalogue(40), people)) as api:
        run_script(
            "prepare_dataset.py", "--api-url", api.url, "--db", str(tmp_path / "bert.db"), *FAST
        )
        found = load(api.url, tmp_path, "--discover", "2")
    assert found.returncode == 0, found.stderr
    conn = db.connect(tmp_path / "bert.db")
    users = db.load_users(conn)
    discovered = sorted(u.user_name for u in users.values() if u.source == "discovered")
    assert len(discovered) == 2 and set(discovered) <= {"Fresh", "Later", "Extra"}
    assert {u.user_name for u in users.values()} == {"Known", *discovered}
    assert "discovered: 2 of 2 users wanted" in found.stdout


def discovery_world() -> World:
    people = [user_with_list(i, f"Fan{i}", 30 + i) for i in range(1, 7)]
    return World(catalogue(40), [user_with_list(99, "Known", 30), *people])


def load_at_a_terminal(api_url: str, tmp_path, answer: str):
    """load_users.py as run from a console (stdin a terminal) where the person types `answer`."""
    pty = pytest.importorskip("pty")
    typed_into, terminal = pty.openpty()
    try:
        os.write(typed_into, answer.encode())
        return run_script(
            "load_users.py", "--api-url", api_url, "--db", str(tmp_path / "bert.db"),
            "--users", str(tmp_path / "users.txt"), *FAST, stdin=terminal,
        )  # fmt: skip
    finally:
        os.close(typed_into)
        os.close(terminal)


@pytest.mark.skipif(sys.platform == "win32", reason="no pseudo-terminal on Windows")
def test_run_by_hand_with_too_few_users_it_offers_discovery(tmp_path):
    users_file(tmp_path, "Known\n")
    with FakeAniList(discovery_world()) as api:
        run_script("prepare_dataset.py", "--api-url", api.url, "--db", str(tmp_path / "bert.db"),
                   *FAST)  # fmt: skip
        declined = load_at_a_terminal(api.url, tmp_path, "n\n")
        assert declined.returncode == 0, declined.stderr
        assert set(states(tmp_path)) == {"Known"}
        assert "--discover 499" in declined.stderr  # the note, since discovery was declined
        accepted = load_at_a_terminal(api.url, tmp_path, "\n")  # Enter means yes
    asked = "holds 1 user (the names in"
    assert asked in declined.stdout and asked in accepted.stdout
    assert "Find 499 more public AniList users now" in accepted.stdout
    assert accepted.returncode == 0, accepted.stderr
    assert set(states(tmp_path)) == {"Known", *(f"Fan{i}" for i in range(1, 7))}
    assert "discovered: 6 of 499 users wanted" in accepted.stdout
    assert "note:" not in accepted.stderr


def test_without_a_terminal_nothing_is_asked_and_no_names_is_no_error_after_a_load(tmp_path):
    users_file(tmp_path, "Known\n")
    with FakeAniList(discovery_world()) as api:
        run_script("prepare_dataset.py", "--api-url", api.url, "--db", str(tmp_path / "bert.db"),
                   *FAST)  # fmt: skip
        quiet = load(api.url, tmp_path)
        assert quiet.returncode == 0 and "[Y/n]" not in quiet.stdout + quiet.stderr
        assert set(states(tmp_path)) == {"Known"}
        # run_all started again with the names taken out: nothing to fetch, training may go on
        again = load(api.url, tmp_path, users=users_file(tmp_path, "# nobody\n"))
    assert again.returncode == 0, again.stderr
    assert "nothing to fetch (loaded before: 1)" in again.stderr


def test_the_offer_counts_the_names_and_the_users_loaded_before(tmp_path):
    from bert4rec.users import USEFUL_USERS, discovery_offer, discovery_question

    conn = db.connect(tmp_path / "bert.db")
    assert discovery_offer(conn, ["a", "b"]) == 0  # no catalogue: nothing to discover from
    db.upsert_anime(conn, [db.Anime(anime_id=1)])
    for user_id, (name, state) in enumerate(
        (("Alice", "loaded"), ("Bob", "loaded"), ("Tiny", "too_few"), ("Hidden", "private")),
        start=1,
    ):
        db.record_user_outcome(conn, name, state, user_id=user_id)
    # Alice counted once whatever her case; Tiny, kept out of training, not at all
    assert discovery_offer(conn, ["ALICE", "Carol"]) == USEFUL_USERS - 3
    # nor names an earlier run found private, missing or too short: this run skips them
    assert discovery_offer(conn, ["Alice", "Carol", "tiny", "Hidden"]) == USEFUL_USERS - 3
    db.record_user_outcome(conn, "Gone", "not_found")
    assert discovery_offer(conn, ["Gone", "Carol"]) == USEFUL_USERS - 3
    # unless --refresh fetches every name again
    assert discovery_offer(conn, ["Gone", "Carol"], refresh=True) == USEFUL_USERS - 4
    # a name whose last try failed (the network, say) is tried again, so it counts
    db.record_user_outcome(conn, "Flaky", "failed")
    assert discovery_offer(conn, ["Flaky", "Carol"]) == USEFUL_USERS - 4
    assert discovery_offer(conn, [f"u{i}" for i in range(USEFUL_USERS)]) == 0
    question = discovery_question(USEFUL_USERS - 3, "datas_user.txt")
    assert "holds 3 users (the names in datas_user.txt" in question
    assert f"Find {USEFUL_USERS - 3} more" in question and question.endswith("[Y/n] ")
    assert "about 1 minute)" in discovery_question(10, "datas_user.txt")


def test_help_explains_every_flag():
    shown = run_script("load_users.py", "--help").stdout
    for flag in ("--users", "--min-anime", "--refresh", "--discover", "--db", "--api-url"):
        assert flag in shown
    assert "--rate-limit" in shown and "datas_user.txt" in shown and "20" in shown


@pytest.mark.skipif(sys.platform == "win32", reason="Ctrl-C is not a signal on Windows")
def test_ctrl_c_stops_cleanly_with_the_summary(tmp_path):
    users_file(tmp_path, "Alice\nBob\nCarol\n")
    with FakeAniList(standard_world()) as api:
        api.fail("hang", times=None, seconds=60, when=lambda s: s.lists_served >= 1)
        stopped = stop_when_it_hangs(
            api, "load_users.py", "--db", str(tmp_path / "bert.db"),
            "--users", str(tmp_path / "users.txt"), how=signal.SIGINT,
        )  # fmt: skip
    assert stopped.returncode == 130
    assert "interrupted" in stopped.stderr and "Traceback" not in stopped.stderr
    assert summary(stopped.stdout)["loaded"] == ["1", "1"]
    assert states(tmp_path) == {"Alice": "loaded"}


def test_a_lost_network_stops_the_run_and_the_next_run_carries_on(tmp_path):
    users_file(tmp_path, "Alice\nBob\nCarol\n")
    with FakeAniList(standard_world()) as api:
        api.fail("disconnect", times=None, when=lambda s: s.lists_served >= 1)
        lost = load(api.url, tmp_path, "--max-retries", "1")
        assert lost.returncode == 1 and "cannot reach the AniList API" in lost.stderr
        assert states(tmp_path) == {"Alice": "loaded"}  # Bob is not blamed for the network
        api.clear_faults()
        again = load(api.url, tmp_path)
    assert again.returncode == 0
    assert states(tmp_path) == {"Alice": "loaded", "Bob": "loaded", "Carol": "too_few"}


def test_too_few_users_get_a_note_suggesting_discover():
    from bert4rec.users import USEFUL_USERS, too_few_users_note

    note = too_few_users_note(50, 0)
    assert f"--discover {USEFUL_USERS - 50}" in note and str(USEFUL_USERS) in note
    assert too_few_users_note(50, USEFUL_USERS) is None
    assert too_few_users_note(USEFUL_USERS, 0) is None
