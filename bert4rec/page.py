"""recommend.py --html: the recommendations as one self-contained static page.

Inline CSS, no script but one onerror attribute per cover, no framework, nothing fetched but
the covers themselves: offline, a cover that cannot load is hidden and the box behind it shows
the title's initials. A responsive grid, so it reads on a phone. Every text from the data is
HTML-escaped; only http(s) addresses become links or images.

The page is drawn from the same document --json prints (recommend.json_document), so the two
always hold the same fields.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from . import paths

DEFAULT_PAGE_DIR = os.path.join(paths.DEFAULT_OUTPUT_DIR, "recommendations")

STYLE = """
:root { color-scheme: light dark; --bg: #f4f5f7; --card: #fff; --ink: #1d2230; --soft: #5d6475;
  --line: #e1e4ea; --accent: #3b6fd8; --chip: #eef2fb; }
@media (prefers-color-scheme: dark) { :root { --bg: #14171f; --card: #1d2230; --ink: #e8ebf2;
  --soft: #a3aabb; --line: #2c3242; --accent: #7aa2ff; --chip: #262d40; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans JP", sans-serif; }
header, main, footer { max-width: 1180px; margin: 0 auto; padding: 0 16px; }
header { padding-top: 24px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.15rem; margin: 28px 0 12px; }
.sub { color: var(--soft); margin: 0; }
.grid { display: grid; gap: 16px; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 12px;
  overflow: hidden; display: flex; flex-direction: column; }
.cover { position: relative; aspect-ratio: 2 / 3; background: linear-gradient(135deg,
  hsl(var(--hue) 55% 46%), hsl(calc(var(--hue) + 40) 60% 32%)); }
.cover .initials { position: absolute; inset: 0; display: flex; align-items: center;
  justify-content: center; color: #fff; font-size: 2.6rem; font-weight: 700;
  letter-spacing: 2px; opacity: .9; }
.cover img { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: cover; }
.rank { position: absolute; top: 8px; left: 8px; background: rgba(0,0,0,.65); color: #fff;
  border-radius: 999px; padding: 1px 9px; font-weight: 700; font-size: .85rem; }
.body { padding: 10px 12px 12px; display: flex; flex-direction: column; gap: 5px; flex: 1; }
.title { font-weight: 650; color: var(--ink); text-decoration: none; }
.title:hover { color: var(--accent); text-decoration: underline; }
.alt { color: var(--soft); font-size: .85rem; }
.meta { color: var(--soft); font-size: .85rem; }
.score { color: var(--accent); font-weight: 650; }
.chips { display: flex; flex-wrap: wrap; gap: 4px; }
.chip { background: var(--chip); border-radius: 999px; padding: 0 8px; font-size: .75rem; }
.reason { font-size: .85rem; }
.rule { font-size: .8rem; color: var(--soft); font-style: italic; }
.continue .card { flex-direction: row; }
.continue .cover { width: 84px; flex: none; }
.continue .cover .initials { font-size: 1.4rem; }
.continue .grid { grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
footer { color: var(--soft); font-size: .85rem; padding: 28px 16px 40px; }
footer ul { margin: 4px 0 12px; padding-left: 20px; }
.empty { color: var(--soft); }
@media (max-width: 480px) { .grid { grid-template-columns: repeat(2, 1fr); gap: 10px; }
  .continue .grid { grid-template-columns: 1fr; } h1 { font-size: 1.3rem; } }
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def safe_url(url: object) -> str | None:
    """An http(s) address, escaped for an attribute; anything else (javascript:, data:) None."""
    if isinstance(url, str) and re.match(r"https?://", url.strip(), re.IGNORECASE):
        return esc(url.strip())
    return None


def initials(title: str) -> str:
    words = re.findall(r"\w+", title)
    return "".join(w[0] for w in words[:2]).upper() or "?"


def card(item: dict) -> str:
    title = item.get("title") or f"#{item.get('anime_id')}"
    hue = (int(item.get("anime_id") or 0) * 47) % 360
    cover = safe_url(item.get("cover_large") or item.get("cover_medium"))
    image = f'<img src="{cover}" alt="" loading="lazy" onerror="this.remove()">' if cover else ""
    link = safe_url(item.get("anilist_url"))
    name = (
        f'<a class="title" href="{link}">{esc(title)}</a>'
        if link
        else f'<span class="title">{esc(title)}</span>'
    )
    others = [
        t
        for t in (item.get("title_romaji"), item.get("title_english"), item.get("title_native"))
        if t and t != title
    ]
    alt = f'<div class="alt">{esc(" / ".join(dict.fromkeys(others)))}</div>' if others else ""
    meta = " · ".join(esc(p) for p in (item.get("format"), item.get("year")) if p)
    score = item.get("probability")
    score_text = f'<span class="score">{score:.1%}</span>' if score is not None else ""
    meta_line = " · ".join(p for p in (meta, score_text) if p)
    chips = "".join(f'<span class="chip">{esc(g)}</span>' for g in item.get("genres") or ())
    reason = item.get("reason")
    rules = "".join(f'<div class="rule">{esc(r)}</div>' for r in item.get("rules_applied") or ())
    return (
        '<article class="card">'
        f'<div class="cover" style="--hue: {hue}">'
        f'<div class="initials">{esc(initials(title))}</div>{image}'
        f'<span class="rank">{esc(item.get("rank"))}</span></div>'
        f'<div class="body">{name}{alt}<div class="meta">{meta_line}</div>'
        f'<div class="chips">{chips}</div>'
        + (f'<div class="reason">{esc(reason[:1].upper() + reason[1:])}</div>' if reason else "")
        + f"{rules}</div></article>"
    )


def section(heading: str, items: Sequence[dict], css: str = "") -> str:
    cards = "".join(card(i) for i in items) or '<p class="empty">Nothing to show.</p>'
    grid = f'<div class="grid">{cards}</div>'
    return f'<section class="{css}"><h2>{esc(heading)}</h2>{grid}</section>'


def render(document: dict) -> str:
    """The page of one recommend.py --json document."""
    who = document.get("user") or "the titles given"
    history = document.get("history") or {}
    recommendations = document.get("recommendations") or []
    continued = document.get("continue") or []
    model = f"{document.get('model')} (epoch {document.get('epoch')})"
    settings = "".join(f"<li>{esc(line)}</li>" for line in document.get("filters") or ())
    rules = "".join(f"<li>{esc(line)}</li>" for line in document.get("rules") or ())
    left_out = "".join(
        f"<li>{esc(count)} {esc(why)}</li>"
        for why, count in (document.get("left_out") or {}).items()
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Recommendations for {esc(who)}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>Recommendations for {esc(who)}</h1>",
        f'<p class="sub">From {esc(history.get("used"))} of {esc(history.get("watched"))} '
        f"watched titles · model {esc(model)}</p></header><main>",
    ]
    if continued:
        parts.append(section("Continue", continued, "continue"))
    parts.append(section(f"Top {len(recommendations)}", recommendations))
    parts.append(
        f"</main><footer><div>Scoring: {esc(document.get('scoring'))}.</div>"
        f"<div>Score: {esc(document.get('score'))}.</div>"
        f"<div>Reasons: {esc(document.get('reason_method'))}</div>"
        f"<div>Model: {esc(model)}</div>"
        f"<div>Filters:</div><ul>{settings or '<li>none</li>'}</ul>"
        f"<div>Rules:</div><ul>{rules}</ul>"
        + (f"<div>Passed over:</div><ul>{left_out}</ul>" if left_out else "")
        + f"<div>Made {esc(document.get('made'))}.</div></footer></body></html>\n"
    )
    return "\n".join(parts)


def page_path(user_name: str, folder: str | os.PathLike[str] = DEFAULT_PAGE_DIR) -> Path:
    """--page: output/recommendations/NAME.html, the name reduced to what any file system takes."""
    safe = re.sub(r"[^\w.-]", "_", user_name).strip("._") or "recommendations"
    return Path(folder) / f"{safe}.html"


def open_in_browser(path: str | os.PathLike[str]) -> bool:
    """Show the page in the desktop's browser without waiting for it; False where there is
    none to show it in. Never blocks: Python's webbrowser may pick a console browser (lynx,
    w3m) that takes over the terminal, so the desktop's own opener is started detached, and on
    Linux only where a display exists (not over SSH, not in CI)."""
    target = str(Path(path).resolve())
    try:
        if sys.platform == "win32":
            os.startfile(target)  # type: ignore[attr-defined]  # returns at once
            return True
        if sys.platform == "darwin":
            opener = ["open", target]
        elif os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
            opener = ["xdg-open", target]
        else:
            return False
        if shutil.which(opener[0]) is None:
            return False
        subprocess.Popen(
            opener,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return True
    except OSError:
        return False
