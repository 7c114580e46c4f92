"""Stage 1: the most popular anime on AniList into the SQLite store (table bert_anime), with
their covers, AniList pages and relations (table bert_anime_relation).

    python prepare_dataset.py --count 3000

Re-runnable (rows are updated, never duplicated) and resumable: an interrupted run carries on
from its last stored page when started again with the same --count. On a store made before
relations were fetched, a run fetches only the missing relations and covers (50 titles a
request) and never touches the users.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from tqdm import tqdm

from bert4rec import cli, db
from bert4rec.anilist import PER_PAGE
from bert4rec.catalogue import (
    DEFAULT_COUNT,
    CatalogueResult,
    only_links_missing,
    prepare_catalogue,
    saved_position,
    titles_without_links,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Fetch the most popular anime from AniList (by popularity, 50 per request, "
        "with their covers, AniList pages and relations to other titles in the same requests) "
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
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    conn = cli.open_store(args)
    client = cli.make_client(args)
    resume = saved_position(conn, args.count)
    walking = not only_links_missing(conn, args.count)
    if resume is not None:
        cli.say(f"Carrying on an interrupted run: {resume.ranked} of {args.count} titles stored.")
    elif not walking:
        missing = len(titles_without_links(conn, args.count))
        cli.say(
            f"The catalogue of {args.count} is complete; fetching the relations and covers of "
            f"the {missing} titles stored without them (users are left as they are)."
        )
    pages = math.ceil(args.count / PER_PAGE) if walking else 0
    done = math.ceil(resume.ranked / PER_PAGE) if resume else 0
    with tqdm(total=pages, initial=done, desc="Catalogue", unit="page", disable=not walking) as bar:

        def on_page(new_titles: int, position) -> None:
            bar.update()
            bar.set_postfix(titles=position.ranked)

        links_bar: tqdm | None = None

        def on_links(titles_done: int, titles: int) -> None:
            nonlocal links_bar
            if links_bar is None:
                links_bar = tqdm(total=titles, desc="Relations", unit="title")
            links_bar.update(titles_done - links_bar.n)

        try:
            result = prepare_catalogue(client, conn, args.count, on_page=on_page, on_links=on_links)
        finally:
            if links_bar is not None:
                links_bar.close()
    seconds = time.monotonic() - started
    print(catalogue_summary(result, args.db, seconds, client.requests_sent, client.rate_limited))
    print(links_summary(result, conn))
    return cli.EXIT_OK


def catalogue_summary(
    result: CatalogueResult, db_path: str, seconds: float, requests: int, rate_limited: int
) -> str:
    notes = []
    if result.resumed_at:
        notes.append(f"carried on from title {result.resumed_at + 1}")
    if result.exhausted:
        notes.append(f"AniList has only {result.ranked} titles")
    if result.unranked:
        notes.append(f"{result.unranked} older titles left the top {result.count} (kept, unranked)")
    if result.walked:
        walk = f"{result.pages} pages, "
    else:
        walk = "its walk was complete and is not repeated (run again to refresh it), "
    return (
        f"Catalogue: {result.ranked} anime in {db_path} ranked 1-{result.ranked} by popularity "
        f"({walk}{requests} requests, {rate_limited} rate-limited, {seconds:.0f} s)"
        + "".join(f"; {n}" for n in notes)
    )


def links_summary(result: CatalogueResult, conn) -> str:
    """What the store now knows of relations and covers, and which requests brought them."""
    ranked = db.load_catalogue(conn)[: result.ranked]
    covers = sum(1 for a in ranked if a.cover_large or a.cover_medium)
    line = (
        f"Relations and covers: {db.relation_count(conn)} edges to other anime, "
        f"{covers} of {result.ranked} titles with a cover"
    )
    if result.pages:
        line += f"; fetched with the {result.pages} catalogue pages (no extra requests)"
    if result.links_requests:
        line += (
            f"; fetched by id for {result.links_filled} titles stored without them "
            f"({result.links_requests} requests)"
        )
    if result.links_missing:
        line += (
            f"; {result.links_missing} titles came back without relations (AniList did not "
            "say): the next run asks for them again"
        )
    return line


def run() -> int:
    """The command line, also installed as `bert4rec-prepare`."""
    arguments = parse_args()
    return cli.run(lambda: main(arguments), arguments)


if __name__ == "__main__":
    sys.exit(run())
