"""Remake docs/demo_recommendations.png: the demo's page, with the simulator's covers.

    python demo.py                                  # the demo (data/demo.db, output/)
    python docs/make_screenshot.py [--user NAME]    # this

The demo's covers name the simulator's address of that run, so this serves the same world
(same seed and sizes as demo.py's defaults) on the same port while recommend.py writes the page
and headless Chromium takes the picture. Needs chromium on PATH.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from bert4rec import db
from bert4rec.simulator import FakeAniList
from bert4rec.synthetic import generate_world

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default=str(ROOT / "data" / "demo.db"))
    parser.add_argument("--model", default=str(ROOT / "output" / "models"))
    parser.add_argument("--user", help="a demo user (default: the first with 30+ titles)")
    parser.add_argument("--media", type=int, default=600)
    parser.add_argument("--users", type=int, default=800)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--size", default="1280,1700", help="window WIDTH,HEIGHT")
    parser.add_argument("--out", default=str(ROOT / "docs" / "demo_recommendations.png"))
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not on PATH")
    conn = db.connect(args.db, create=False)
    cover = next(a.cover_large for a in db.load_catalogue(conn) if a.cover_large)
    port = urlsplit(cover).port
    world = generate_world(args.media, args.users, seed=args.seed)
    user = args.user or next(u.name for u in world.users if not u.private and len(u.entries) >= 30)
    with tempfile.TemporaryDirectory() as tmp, FakeAniList(world, port=port):
        page = Path(tmp) / "page.html"
        subprocess.run(
            [sys.executable, str(ROOT / "recommend.py"), "--db", args.db, "--model", args.model,
             "--user", user, "--html", str(page), "--top", "12"],
            check=True,
        )  # fmt: skip
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile",
             f"--window-size={args.size}", "--virtual-time-budget=5000",
             f"--screenshot={Path(args.out).resolve()}", page.as_uri()],
            check=True,
            capture_output=True,
        )  # fmt: skip
    print(f"Wrote {args.out} (the page of {user})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
