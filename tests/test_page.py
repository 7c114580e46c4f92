"""page.py: the recommendations page parses, escapes every text, links each title to its AniList
page, and shows a placeholder where a cover cannot load (in headless Chromium where installed)."""

from __future__ import annotations

import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bert4rec import page

NASTY = '<script>alert("x")</script> & \'Quotes\' "too"'


def item(anime_id: int, title: str, **more) -> dict:
    return {
        "rank": anime_id,
        "anime_id": anime_id,
        "title": title,
        "title_romaji": f"Romaji {anime_id}",
        "title_english": title,
        "title_native": None,
        "format": "TV",
        "year": 2020,
        "genres": ["Action", "Drama"],
        "probability": 0.1234,
        "reason": "because you watched A, B",
        "rules_applied": ["in place of Some Sequel (its prequel chain is unwatched)"],
        "anilist_url": f"https://anilist.co/anime/{anime_id}",
        # Port 9 (discard) refuses at once: the cover cannot load, as offline.
        "cover_large": f"http://127.0.0.1:9/cover/{anime_id}.png",
        "cover_medium": None,
        **more,
    }


def document() -> dict:
    return {
        "user": NASTY,
        "model": "output/models/best_model.pth",
        "epoch": 12,
        "score": "the model's probability",
        "reason_method": "lift",
        "made": "2026-12-01 21:00 UTC",
        "history": {"watched": 30, "used": 28, "unknown_ids": []},
        "filters": ["format: TV", "released titles only"],
        "rules": ["no summaries or recaps: on"],
        "left_out": {"summary or recap": 2},
        "recommendations": [
            item(1, NASTY),
            item(2, "Plain Title", anilist_url="javascript:alert(1)"),
            item(3, "シュタインズ・ゲート", reason="", rules_applied=[]),
        ],
        "continue": [item(4, "Next Season", reason="next after Season 1", rules_applied=[])],
    }


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("img", "meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (tag, self.open[-3:])
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def parsed(html: str) -> Collect:
    collect = Collect()
    collect.feed(html)
    collect.close()
    assert collect.open == [], collect.open  # every element closed, in order
    return collect


def test_the_page_parses_escapes_and_links_each_title():
    html = page.render(document())
    collect = parsed(html)
    tags = [t for t, _ in collect.tags]
    assert "script" not in tags and "<script>alert" not in html
    text = "".join(collect.text)
    assert NASTY in text  # shown as text, exactly
    links = {a.get("href") for t, a in collect.tags if t == "a"}
    assert links == {"https://anilist.co/anime/1", "https://anilist.co/anime/3",
                     "https://anilist.co/anime/4"}  # fmt: skip
    assert "javascript:" not in html  # not an http(s) link: the title is shown unlinked
    images = [a for t, a in collect.tags if t == "img"]
    assert len(images) == 4 and all(a["onerror"] == "this.remove()" for a in images)
    expected = [
        "Continue", "Next Season", "Because you watched A, B", "Romaji 1", "TV · 2020", "12.3%",
        "in place of Some Sequel", "format: TV", "epoch 12", "シュタインズ・ゲート",
        "2 summary or recap",
    ]  # fmt: skip
    for words in expected:
        assert words in text, words
    assert 'name="viewport"' in html and "@media (max-width: 480px)" in html


def test_nothing_to_show_is_said():
    empty = {**document(), "recommendations": [], "continue": []}
    text = "".join(parsed(page.render(empty)).text)
    assert "Nothing to show." in text and "Continue" not in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_renders_the_page_with_placeholders_offline(tmp_path):
    path = tmp_path / "recommendations.html"
    path.write_text(page.render(document()), encoding="utf-8")
    url = path.as_uri()
    dom = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('class="card"') == 4
    assert "<img" not in dom.stdout  # every cover failed to load and was removed...
    assert dom.stdout.count('class="initials"') == 4  # ...leaving its placeholder
    assert "<script>alert" not in dom.stdout
    phone = tmp_path / "phone.png"
    shot = chromium(tmp_path, "--window-size=390,844", f"--screenshot={phone}", url)
    assert shot.returncode == 0 and phone.stat().st_size > 10_000, shot.stderr[-2000:]


def test_page_path_keeps_names_inside_the_folder():
    assert page.page_path("Alice") == Path("output/recommendations/Alice.html")
    assert page.page_path("../../etc/x y") == Path("output/recommendations/etc_x_y.html")
    assert page.page_path("..") == Path("output/recommendations/recommendations.html")


def test_opening_the_browser_never_blocks_or_fails(tmp_path, monkeypatch):
    target = tmp_path / "p.html"
    target.write_text("<p>x</p>", encoding="utf-8")
    monkeypatch.setattr(page.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert page.open_in_browser(target) is False  # SSH, CI: no display, nothing started
    # A display with an opener that would hang: it is started detached, not waited for.
    opener = tmp_path / "bin" / "xdg-open"
    opener.parent.mkdir()
    marker = tmp_path / "opened"
    opener.write_text(f'#!/bin/sh\necho "$1" > {marker}\nsleep 3\n')
    opener.chmod(0o755)
    monkeypatch.setenv("PATH", f"{opener.parent}:/usr/bin:/bin")
    monkeypatch.setenv("DISPLAY", ":0")
    assert page.open_in_browser(target) is True  # returned with the opener still running
    for _ in range(100):
        if marker.exists() and marker.read_text().strip():
            break
        time.sleep(0.05)
    assert marker.read_text().strip() == str(target.resolve())
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert page.open_in_browser(target) is False  # a display but no opener
