"""Default locations and endpoints shared by every script (one source of truth)."""

from __future__ import annotations

import os

DEFAULT_DB_PATH = os.path.join("data", "bert.db")
DEMO_DB_PATH = os.path.join("data", "demo.db")  # the demo's own store (demo.py), made anew each run
DEFAULT_OUTPUT_DIR = "output"
DEFAULT_USERS_FILE = "datas_user.txt"

ANILIST_API_URL = "https://graphql.anilist.co"
API_URL_ENV = "ANILIST_API_URL"


def default_api_url() -> str:
    """The AniList endpoint: $ANILIST_API_URL when set (tests, the simulator), else the real one."""
    return os.environ.get(API_URL_ENV) or ANILIST_API_URL
