"""Stage 1: the most popular anime on AniList into the SQLite store (table bert_anime).

    python prepare_dataset.py --count 3000

Re-runnable (rows are updated, never duplicated) and resumable: an interrupted run carries on
from its last stored page when started again with the same --count.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from tqdm import tqdm

from bert4rec import cli, db
from bert4rec.anilist import PER_PAGE
from bert4rec.catalogue import DEFAULT_COUNT, prepare_catalogue, saved_position


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fetch the most popular anime from AniList (by popularity, 50 per request) "
        "into the SQLite store. At AniList's 30 requests per minute, 3000 titles take about "
        "2 minutes.",
        epilog="Exit status: 0 done, 1 AniList failed or is unreachable, 2 bad input, "
        "130 interrupted (run it again to carry on).",
    )
    parser.add_argument(
        "--count",
        type=cli.positive_int,
        default=DEFAULT_COUNT,
        metavar="N",
        help="how many of the most popular anime to fetch (default: %(default)s)",
    )
    cli.add_common_arguments(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    conn = db.connect(args.db)
    client = cli.make_client(args)
    resume = saved_position(conn, args.count)
    if resume is not None:
        cli.say(f"Carrying on an interrupted run: {resume.ranked} of {args.count} titles stored.")
    pages = math.ceil(args.count / PER_PAGE)
    done = math.ceil(resume.ranked / PER_PAGE) if resume else 0
    with tqdm(total=pages, initial=done, desc="Catalogue", unit="page") as bar:

        def on_page(new_titles: int, position) -> None:
            bar.update()
            bar.set_postfix(titles=position.ranked)

        result = prepare_catalogue(client, conn, args.count, on_page=on_page)
    notes = []
    if result.resumed_at:
        notes.append(f"carried on from title {result.resumed_at + 1}")
    if result.exhausted:
        notes.append(f"AniList has only {result.ranked} titles")
    if result.unranked:
        notes.append(f"{result.unranked} older titles left the top {args.count} (kept, unranked)")
    print(
        f"Catalogue: {result.ranked} anime in {args.db} ranked 1-{result.ranked} by popularity "
        f"({result.pages} pages, {client.requests_sent} requests, {client.rate_limited} "
        f"rate-limited, {time.monotonic() - started:.0f} s)" + "".join(f"; {n}" for n in notes)
    )
    return cli.EXIT_OK


def run() -> int:
    """The command line, also installed as `bert4rec-prepare`."""
    arguments = parse_args()
    return cli.run(lambda: main(arguments), arguments)


if __name__ == "__main__":
    sys.exit(run())
