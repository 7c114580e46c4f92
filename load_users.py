"""Stage 2: AniList users' anime lists into the SQLite store (table bert_user_anime_list).

    python load_users.py --min-anime 20

Reads user names from datas_user.txt (one a line). Each user's whole list is stored at once;
users already stored are skipped (unless --refresh), so an interrupted run carries on where it
stopped when started again.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from tqdm import tqdm

from bert4rec import cli, db, paths
from bert4rec.users import (
    DEFAULT_MIN_ANIME,
    UserLoader,
    discovery_offer,
    discovery_question,
    format_summary,
    require_catalogue,
    too_few_users_note,
)
from bert4rec.users_file import read_user_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Fetch the anime lists of the AniList users named in the user file (and, "
        "with --discover, of more public users) into the SQLite store. Each user takes 2 "
        "requests (profile, then list; one more per 500 entries): at AniList's 30 requests "
        "per minute, 50 users take about 4 minutes.",
        epilog="Exit status: 0 done (users who do not exist or are private are reported, not "
        "errors), 1 AniList failed or is unreachable, 2 bad input, 130 interrupted.",
    )
    parser.add_argument(
        "--users",
        default=paths.DEFAULT_USERS_FILE,
        metavar="FILE",
        help="text file of AniList user names, one a line, # starts a comment "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--min-anime",
        type=cli.non_negative_int,
        default=DEFAULT_MIN_ANIME,
        metavar="N",
        help="keep users with at least N watched anime (every status but PLANNING) for "
        "training; the others are recorded as too_few (default: %(default)s)",
    )
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="fetch again users already stored (default: skip them)",
    )
    parser.add_argument(
        "--discover",
        type=cli.non_negative_int,
        default=0,
        metavar="N",
        help="also find and load up to N more public users: recent watchers of the "
        "catalogue's most popular titles, screened by list size (needs prepare_dataset.py "
        "first; mind AniList's terms on mass collection; default: %(default)s)",
    )
    cli.add_common_arguments(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(args: argparse.Namespace) -> int:
    user_file = read_user_file(args.users)
    for bad in user_file.bad_lines:
        cli.say(f"warning: {args.users} {bad}; skipped")
    for repeat in user_file.repeated:
        cli.say(f"note: {args.users} {repeat}; loaded once")
    # An existing store only: a run that stops at an empty user file must not create one.
    stored = cli.open_store(args) if Path(args.db).exists() else None
    accepted = (
        0 if args.discover or stored is None else offered_discovery(stored, args, user_file.names)
    )
    args.discover = args.discover or accepted
    if not user_file.names and not args.discover:
        loaded = db.count_users_by_state(stored).get("loaded", 0) if stored else 0
        if loaded:  # a run_all started again: stage 2 has nothing to fetch, training goes on
            cli.say(
                f"note: no user names in {args.users}: nothing to fetch (loaded before: {loaded})."
            )
            return cli.EXIT_OK
        cli.error(
            f"no user names in {args.users}: add AniList user names, one a line (see the "
            "comments in the file), or use --discover N"
        )
        return cli.EXIT_BAD_INPUT
    note = None if accepted else too_few_users_note(len(user_file.names), args.discover)
    if note:
        cli.say(note)
    conn = stored or cli.open_store(args)
    if args.discover:
        require_catalogue(conn)
    loader = UserLoader(
        cli.make_client(args), conn, min_anime=args.min_anime, refresh=args.refresh, notify=cli.say
    )
    loader.rescreen()
    try:
        for name in tqdm(loader.pending(user_file.names), desc="Users", unit="user"):
            loader.load(name)
        if args.discover:
            with tqdm(total=args.discover, desc="Discover", unit="user") as bar:
                loader.discover(args.discover, on_loaded=bar.update)
    finally:
        print(format_summary(loader.report, db.count_users_by_state(conn), args.min_anime))
    return cli.EXIT_FAILED if loader.report.failed else cli.EXIT_OK


def offered_discovery(conn: sqlite3.Connection, args: argparse.Namespace, names: list[str]) -> int:
    """Run by hand (a terminal) with too few users for a useful model: offer to discover the
    rest, so that double-clicking run_all gets a useful crowd without typing --discover."""
    if not cli.console_attended():
        return 0
    offer = discovery_offer(conn, names, refresh=args.refresh)
    return offer if offer and cli.ask_yes(discovery_question(offer, args.users)) else 0


def run() -> int:
    """The command line, also installed as `bert4rec-load-users`."""
    arguments = parse_args()
    return cli.run(lambda: main(arguments), arguments)


if __name__ == "__main__":
    sys.exit(run())
