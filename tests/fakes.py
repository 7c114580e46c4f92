"""Fixture worlds for the fake AniList, a fake clock, and a wait-until helper."""

from __future__ import annotations

import subprocess
import time

from conftest import start_script

from bert4rec.simulator import FakeAniList
from bert4rec.world import FakeUser, World, make_entry, make_media

FAST = ["--rate-limit", "60000"]  # pacing that costs the tests nothing


class FakeClock:
    """monotonic() and sleep() for client and server: sleeping only moves the time on."""

    def __init__(self) -> None:
        self.now = 0.0  # zero on purpose: a time of 0 must not read as "unknown"
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def catalogue(n: int, *, ties: int = 1) -> list[dict]:
    """`n` titles; popularity falls every `ties` titles, so groups of `ties` share it."""
    return [
        make_media(
            i,
            100_000 - (i - 1) // ties,
            title={"romaji": f"Romaji {i}", "english": f"English {i}", "native": None},
            genres=["Action", "Drama"] if i % 2 else ["Comedy"],
            startDate={"year": 2000 + i % 20, "month": i % 12 + 1, "day": None},
            tags=[{"name": "Tag"}],
        )
        for i in range(1, n + 1)
    ]


def expected_order(media: list[dict]) -> list[int]:
    """Ids in AniList's [POPULARITY_DESC, ID] order."""
    return [m["id"] for m in sorted(media, key=lambda m: (-m["popularity"], m["id"]))]


def user_with_list(
    user_id: int, name: str, watched: int, planning: int = 0, *, first_media: int = 1, **kw
) -> FakeUser:
    """A user with `watched` COMPLETED entries (scored, dated) and `planning` PLANNING ones."""
    entries = [
        make_entry(
            user_id * 10_000 + k,
            first_media + k,
            "COMPLETED",
            score=(k * 7) % 101,  # some zeros: "no score"
            progress=12,
            startedAt={"year": 2019, "month": 4, "day": None},
            completedAt={"year": 2019, "month": None, "day": None},
        )
        for k in range(watched)
    ]
    entries += [
        make_entry(user_id * 10_000 + watched + k, first_media + watched + k, "PLANNING")
        for k in range(planning)
    ]
    return FakeUser(user_id, name, entries, **kw)


def standard_world() -> World:
    """Catalogue of 60; users: two loadable ones (one with custom lists and a hidden entry),
    one with too few, one private."""
    heavy = user_with_list(1, "Alice", 25, planning=5)
    heavy.entries.append(make_entry(19_999, 50, "DROPPED", hiddenFromStatusLists=True))
    heavy.custom_lists = {"Favourites": [1, 2, 3, 50], "Rewatch": [2, 4]}
    return World(
        catalogue(60),
        [
            heavy,
            user_with_list(2, "Bob", 22, first_media=10),
            user_with_list(3, "Carol", 5, planning=30),
            user_with_list(4, "Dave", 40, private=True),
        ],
    )


def wait_until(condition, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def stop_when_it_hangs(
    api: FakeAniList, script: str, *args: str, how: int | None = None
) -> subprocess.CompletedProcess:
    """Start `script` and, once one of its requests is held by a hang fault of `api`, kill it
    (no cleanup at all) or send it the signal `how` (signal.SIGINT: Ctrl-C). Returns its exit
    code and output."""
    proc = start_script(script, "--api-url", api.url, *FAST, *args)
    try:
        wait_until(lambda: api.stats.hanging >= 1, what=f"{script} to hang on a request")
        if how is None:
            proc.kill()
        else:
            proc.send_signal(how)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


__all__ = ["FakeAniList", "FakeUser", "World", "make_entry", "make_media"]
