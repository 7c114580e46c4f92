"""Stage 4: the trained model recommends anime.

    python recommend.py --user NAME                  a user stored by load_users.py
    python recommend.py --user NAME --live           any public AniList user, fetched now
    python recommend.py --titles "Title A" "Title B" a history typed by hand, oldest first
    python recommend.py --all-users --out recs.csv   every loaded user, batched

The work is done by bert4rec/recommend.py (Recommender); this file reads the flags and prints.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys

from tqdm import tqdm

from bert4rec import cli, db, paths
from bert4rec.config import DEVICES
from bert4rec.recommend import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MODEL_DIR,
    DEFAULT_TOP_K,
    SCORE_MEANING,
    History,
    Recommendations,
    Recommender,
    RecommendError,
    TitleHistory,
    choose_device,
    default_database,
    describe,
    fetch_list,
    history_from_entries,
    history_from_titles,
    open_model,
    recommend_all_users,
    table_lines,
    write_csv,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Recommend anime with the trained BERT4Rec model: the titles a user is "
        "most likely to watch next, never one already on their list.",
        epilog="Exit status: 0 done, 1 AniList failed or is unreachable, 2 bad input (no "
        "model, no database, unknown user, no title matched...), 130 interrupted.",
    )
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--user",
        metavar="NAME",
        help="an AniList user: their list as stored by load_users.py (or fetched with --live)",
    )
    who.add_argument(
        "--titles",
        nargs="+",
        metavar="TITLE",
        help="titles you watched, oldest first, in romaji, English or Japanese (case, "
        'punctuation and small typos are forgiven), e.g. --titles "Attack on Titan" '
        '"Steins;Gate"',
    )
    who.add_argument(
        "--all-users",
        action="store_true",
        help="recommend for every loaded user in the database at once; needs --out",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="with --user: fetch the user's current list from AniList (any public user, "
        "also one never loaded); nothing is stored",
    )
    parser.add_argument(
        "--top",
        type=cli.positive_int,
        default=DEFAULT_TOP_K,
        metavar="K",
        help="how many titles to recommend (default: %(default)s)",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL_DIR,
        metavar="PATH",
        help="a model file (.pth) or the folder holding best_model.pth (default: %(default)s)",
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="SQLite database with the catalogue and the users (default: the one the model "
        f"was trained on while it exists, else {paths.DEFAULT_DB_PATH})",
    )
    parser.add_argument(
        "--include-planning",
        action="store_true",
        help="titles on the user's PLANNING list may be recommended (default: every title on "
        "the list is left out)",
    )
    parser.add_argument(
        "--exclude-adult", action="store_true", help="never recommend adult (18+) titles"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout instead of the table (messages go to stderr)",
    )
    parser.add_argument(
        "--out", metavar="FILE.csv", help="with --all-users: the CSV file to write (K rows a user)"
    )
    parser.add_argument(
        "--batch-size",
        type=cli.positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help="with --all-users: users per forward pass of the model (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where the model runs: auto picks cuda, then mps, then cpu (default: %(default)s)",
    )
    cli.add_api_arguments(parser)
    args = parser.parse_args(argv)
    if not (args.user or args.titles or args.all_users):
        parser.error('say for whom: --user NAME, --titles "Title A" "Title B" ..., or --all-users')
    if args.live and not args.user:
        parser.error("--live goes with --user NAME")
    if args.all_users != bool(args.out):
        parser.error("--all-users and --out FILE.csv go together")
    return args


def main(args: argparse.Namespace) -> int:
    cli.printable_console()
    try:
        return recommend(args)
    except RecommendError as exc:
        cli.error(str(exc))
        return cli.EXIT_BAD_INPUT
    except KeyboardInterrupt:
        cli.error("interrupted; nothing was written.")
        return cli.EXIT_INTERRUPTED


def recommend(args: argparse.Namespace) -> int:
    device = choose_device(args.device)
    opened = open_model(args.model, device, cli.say)
    args.db = args.db or default_database(opened.loaded.payload)
    conn = db.connect(args.db, create=False)
    catalogue = db.load_catalogue(conn)
    recommender = Recommender.from_model(opened, catalogue, device=device)
    if recommender.missing_from_catalogue:
        cli.say(
            f"note: {recommender.missing_from_catalogue} of the model's titles are not in "
            f"{args.db}; they are shown by AniList id."
        )
    if args.all_users:
        return recommend_for_all(recommender, conn, args)
    if args.titles:
        typed = history_from_titles(args.titles, catalogue)
        report_matches(typed, to_stderr=args.json)
        if not typed.history.watched:
            raise RecommendError("none of the titles matched a title of the catalogue.")
        return show(recommender, typed.history, "the titles given", "titles", args, typed)
    if args.live:
        name, entries = fetch_list(cli.make_client(args), args.user)
        source = "anilist"
    else:
        stored = db.load_history(conn, args.user)
        if stored is None:
            raise RecommendError(
                f"{args.user} is not in {args.db}. Fetch their list from AniList with --live "
                f"(recommend.py --user {args.user} --live), or add the name to "
                f"{paths.DEFAULT_USERS_FILE} and run load_users.py."
            )
        name, entries, source = stored.user_name, stored.entries, "database"
    history = history_from_entries(entries, include_planning=args.include_planning)
    if not history.watched:
        where = "on AniList" if args.live else f"stored in {args.db} (try --live)"
        raise RecommendError(f"{name} has no watched titles {where}; nothing to start from.")
    return show(recommender, history, name, source, args)


def show(
    recommender: Recommender,
    history: History,
    name: str,
    source: str,
    args: argparse.Namespace,
    typed: TitleHistory | None = None,
) -> int:
    result = recommender.recommend(history, top_k=args.top, exclude_adult=args.exclude_adult)
    watched = len(set(history.watched))
    if not result.titles_used:
        raise RecommendError(
            f"none of the {watched} watched titles of {name} is in the model's catalogue."
        )
    if result.unknown_ids:
        cli.say(
            f"note: {len(result.unknown_ids)} of {watched} watched titles are not in the "
            "model's catalogue and were left out."
        )
    if args.json:
        document = json_document(recommender, result, name, source, watched, typed)
        # Escaped non-ASCII where stdout is not UTF-8: the JSON stays exact on any console.
        utf8 = (sys.stdout.encoding or "").lower().replace("-", "") == "utf8"
        print(json.dumps(document, indent=2, ensure_ascii=not utf8))
        return cli.EXIT_OK
    print(
        f"Top {len(result.items)} for {name}: read {result.titles_used} of {watched} watched "
        f"titles; model {recommender.model_file} (epoch {recommender.epoch})\n"
    )
    print("\n".join(table_lines(result.items)))
    print(f"\nScore: {SCORE_MEANING}.")
    return cli.EXIT_OK


def json_document(
    recommender: Recommender,
    result: Recommendations,
    name: str,
    source: str,
    watched: int,
    typed: TitleHistory | None,
) -> dict:
    document = {
        "user": None if typed else name,
        "source": source,
        "model": str(recommender.model_file),
        "epoch": recommender.epoch,
        "score": SCORE_MEANING,
        "history": {
            "watched": watched,
            "used": result.titles_used,
            "unknown_ids": list(result.unknown_ids),
        },
        "recommendations": [item.to_dict() for item in result.items],
    }
    if typed is not None:
        document["titles"] = [
            {
                "query": m.query,
                "anime_id": m.anime.anime_id if m.anime else None,
                "title": m.anime.title if m.anime else None,
                "matched_title": m.matched_title,
                "ratio": round(m.ratio, 3),
                "suggestions": [s.title for s in m.suggestions],
            }
            for m in typed.matches
        ]
    return document


def report_matches(typed: TitleHistory, *, to_stderr: bool) -> None:
    def emit(line: str) -> None:
        print(line, file=sys.stderr if to_stderr else sys.stdout)

    emit("Titles:")
    for match in typed.matches:
        if match.anime is not None:
            how = "" if match.ratio == 1.0 else f" [closest, {match.ratio:.0%} alike]"
            emit(f'  "{match.query}" -> {describe(match.anime)}{how}')
        else:
            close = "; ".join(describe(s) for s in match.suggestions)
            emit(f'  "{match.query}": not found' + (f". Did you mean: {close}?" if close else ""))
    emit("")


def recommend_for_all(
    recommender: Recommender, conn: sqlite3.Connection, args: argparse.Namespace
) -> int:
    users = db.count_users_by_state(conn).get("loaded", 0)
    if not users:
        raise RecommendError(f"no loaded users in {args.db}; run load_users.py first.")
    with tqdm(total=users, desc="Recommending", unit="user") as bar:
        rows = recommend_all_users(
            recommender,
            conn,
            top_k=args.top,
            include_planning=args.include_planning,
            exclude_adult=args.exclude_adult,
            batch_size=args.batch_size,
            on_batch=bar.update,
        )
    write_csv(args.out, rows)
    left_out = users - len(rows)
    print(
        f"Wrote the top {args.top} for {len(rows)} users to {args.out}"
        + (f" ({left_out} left out: no watched title the model knows)" if left_out else "")
        + f". Score: {SCORE_MEANING}."
    )
    return cli.EXIT_OK


def run() -> int:
    """The command line, also installed as `bert4rec-recommend`."""
    arguments = parse_args()
    return cli.run(lambda: main(arguments), arguments, kept=cli.READ_ONLY)


if __name__ == "__main__":
    sys.exit(run())
