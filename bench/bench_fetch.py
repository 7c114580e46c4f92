"""How close does the AniList client get to the rate limit without tripping it?

Runs the client against the fake AniList, which advertises and enforces `--limit` requests per
minute (a fixed window, X-RateLimit headers on every answer), and prints the requests per minute
achieved against that limit and the number of 429 answers. Goal: at least 90% of the limit and
no 429 at all.

    python bench/bench_fetch.py                    # 600/min for 60 s
    python bench/bench_fetch.py --requests 300     # stop after 300 requests
    python bench/bench_fetch.py --no-headers --client-rate 700   # a client told too much
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bert4rec.anilist import AniListClient  # noqa: E402
from bert4rec.simulator import FakeAniList  # noqa: E402
from bert4rec.world import FakeUser, World, make_entry, make_media  # noqa: E402

GOAL = 0.90


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=600, help="requests/min the server allows")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run")
    parser.add_argument("--requests", type=int, help="stop after this many requests instead")
    parser.add_argument(
        "--no-headers", action="store_true", help="the server sends no X-RateLimit headers"
    )
    parser.add_argument(
        "--client-rate", type=float, help="the client's --rate-limit (default: adapt)"
    )
    return parser.parse_args()


def small_world() -> World:
    media = [make_media(i, 10_000 - i) for i in range(1, 501)]
    users = [
        FakeUser(u, f"User{u}", [make_entry(u * 1000 + k, k + 1) for k in range(40)])
        for u in range(1, 11)
    ]
    return World(media, users)


def done(args: argparse.Namespace, sent: int, elapsed: float) -> bool:
    return sent >= args.requests if args.requests else elapsed >= args.seconds


def main() -> None:
    args = parse_args()
    headers = not args.no_headers
    with FakeAniList(small_world(), rate_limit=args.limit, send_rate_headers=headers) as api:
        client = AniListClient(api.url, rate_limit=args.client_rate, notify=print)
        started = time.monotonic()
        while not done(args, client.requests_sent, time.monotonic() - started):
            turn = client.requests_sent
            if turn % 2:  # the stage-1 and stage-2 requests, in turn
                client.fetch_user(f"User{turn % 10 + 1}")
            else:
                client.popular_page(turn % 10 + 1)
        elapsed = time.monotonic() - started
        rate_limited = api.stats.rate_limited
    per_minute = client.requests_sent / elapsed * 60
    share = per_minute / args.limit
    met = share >= GOAL and rate_limited == 0
    print(f"advertised limit : {args.limit} requests/min (headers {'on' if headers else 'off'})")
    print(f"requests sent    : {client.requests_sent} in {elapsed:.1f} s")
    print(f"achieved         : {per_minute:.1f} requests/min = {share:.1%} of the limit")
    print(f"429 answers      : {rate_limited}")
    print(f"goal (>= {GOAL:.0%} of the limit, no 429): {'met' if met else 'missed'}")


if __name__ == "__main__":
    main()
