"""Which world a store, a model and a live list come from: AniList's, the simulator's, or an
imported dataset's (bench/movielens.py). Their ids overlap (the simulator numbers its synthetic
titles from 1 as AniList does), so a model must only ever read lists of its own world: a
synthetic model fed a real list would answer with confident nonsense, and say nothing.

- A store records its world in bert_meta (META_KEY) when stage 1 or 2 first writes to it, and
  refuses a stage that fetches from another world (claim_store).
- Training copies the store's world into training_config.json and the train_config of every
  model file, under SETTINGS_FIELD.
- recommend.py compares the model's world with the store's and with where a live list comes
  from: the simulator listens on this machine only, so a loopback --api-url is the simulator's
  world and any other address AniList's.

A store or a model made before worlds were recorded has none (None): nothing is refused then,
except that a model trained on the demo's database is known to be the simulator's.
"""

from __future__ import annotations

import ipaddress
import os
import sqlite3
from urllib.parse import urlsplit

from . import db, paths

ANILIST = "anilist"
SIMULATOR = "simulator"
META_KEY = "dataset"  # bert_meta key; bench/movielens.py writes its dataset's name under it
SETTINGS_FIELD = "world"  # training_config.json and the train_config of model files

_DESCRIPTIONS = {
    ANILIST: "real AniList data",
    SIMULATOR: "the AniList simulator's synthetic data (the demo's)",
}


class WorldError(Exception):
    """Data of two worlds would mix. The message says which and what to do."""


def describe(world: str) -> str:
    return _DESCRIPTIONS.get(world, f"the {world} dataset")


def of_api_url(url: str) -> str:
    """The world an AniList endpoint serves: the simulator's on this machine, else AniList's."""
    host = urlsplit(url if "//" in url else f"//{url}").hostname or ""
    if host == "localhost":
        return SIMULATOR
    try:
        return SIMULATOR if ipaddress.ip_address(host).is_loopback else ANILIST
    except ValueError:  # a host name
        return ANILIST


def list_source(url: str) -> str:
    """Where a live list comes from, for messages: "AniList" or "the AniList simulator at URL"."""
    if url == paths.ANILIST_API_URL:
        return "AniList"
    if of_api_url(url) == SIMULATOR:
        return f"the AniList simulator at {url}"
    return f"AniList at {url}"


def of_store(conn: sqlite3.Connection) -> str | None:
    return db.get_meta(conn, META_KEY)


def claim_store(conn: sqlite3.Connection, world: str, db_path: str) -> None:
    """Record `world` as the store's on its first fill; WorldError when it holds another."""
    held = of_store(conn)
    if held is None:
        db.set_meta(conn, META_KEY, world)
    elif held != world:
        raise WorldError(
            f"{db_path} holds {describe(held)}, and this run would add {describe(world)}: "
            "their ids name different titles, so they must not mix. Give this data a store of "
            "its own (--db data/OTHER.db), or fetch from where the store's data came from "
            "(--api-url)."
        )


def of_settings(settings: dict | None) -> str | None:
    """The world a model's saved training settings name; a model from before worlds were
    recorded is the simulator's when it was trained on the demo's database."""
    if not isinstance(settings, dict):
        return None
    if settings.get(SETTINGS_FIELD):
        return settings[SETTINGS_FIELD]
    trained_on = settings.get("db")
    if trained_on and os.path.normpath(trained_on) == os.path.normpath(paths.DEMO_DB_PATH):
        return SIMULATOR
    return None
