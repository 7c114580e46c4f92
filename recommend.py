"""Stage 4: the trained model recommends anime.

    recommend.py --user NAME                  a stored user, else their list fetched from AniList
    recommend.py --user NAME --live           fetch the list now even when it is stored
    recommend.py --titles "Title A" "Title B" a history typed by hand, oldest first
    recommend.py --all-users --out recs.csv   every loaded user, batched
    recommend.py --user NAME --html FILE      also a page with covers, reasons and links

NAME may also be @NAME or a profile address (https://anilist.co/user/NAME/). Run it with
.venv's Python, or through 4_recommend (.bat / .sh), which asks for a name when given none.

The work is done by bert4rec/recommender.py (Recommender); this file reads the flags and prints.
A model reads only lists of the world it was trained on (bert4rec/worlds.py): a model of the
simulator's synthetic data never scores a real AniList list, nor the other way round.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys

from tqdm import tqdm

from bert4rec import cli, commands, db, files, page, paths, worlds
from bert4rec.config import DEVICES
from bert4rec.filters import FORMATS, FilterError, Filters, make_filters
from bert4rec.recommender import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MODEL_DIR,
    DEFAULT_TOP_K,
    OpenedModel,
    Recommender,
    RecommendError,
    TitleHistory,
    WatchedTitles,
    choose_device,
    default_database,
    describe,
    fetch_list,
    history_from_entries,
    history_from_titles,
    json_document,
    open_model,
    recommend_all_users,
    table_lines,
    write_csv,
)
from bert4rec.rules import DEFAULT_CONTINUE, FranchiseRules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Recommend anime with the trained BERT4Rec model: the titles a user is "
        "most likely to watch next, never one already on their list.",
        epilog="Exit status: 0 done, 1 AniList failed or is unreachable, 2 bad input (no "
        "model, no database, no such AniList user, a private list, no title matched, a model "
        "of the simulator's data asked about a real list or the other way round...), "
        "130 interrupted.",
    )
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--user",
        type=cli.user_name,
        metavar="NAME",
        help="an AniList user: NAME, @NAME or the profile address (https://anilist.co/user/"
        "NAME/); their list as load_users.py stored it, else fetched from AniList now",
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
        help="with --user: fetch the user's current list from AniList even when the database "
        "holds it (a user it does not hold is fetched anyway); nothing is stored",
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
        "--html",
        metavar="FILE.html",
        help="also write the recommendations as a page (covers, reasons, AniList links): one "
        "self-contained HTML file to open in a browser",
    )
    parser.add_argument(
        "--page",
        action="store_true",
        help=f"write the page to {page.DEFAULT_PAGE_DIR}/NAME.html (what 4_recommend does) and "
        "open it in the browser where there is one",
    )
    parser.add_argument(
        "--open",
        action="store_true",
        help="open the page written by --html in the browser (skipped, never waited for, "
        "where there is no browser or display)",
    )
    add_rule_arguments(parser)
    add_filter_arguments(parser)
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
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.user or args.titles or args.all_users):
        parser.error('say for whom: --user NAME, --titles "Title A" "Title B" ..., or --all-users')
    if args.live and not args.user:
        parser.error("--live goes with --user NAME")
    if args.all_users != bool(args.out):
        parser.error("--all-users and --out FILE.csv go together")
    if (args.html or args.page) and args.all_users:
        parser.error("--html and --page make the page of one user: use --user or --titles")
    if args.open and not (args.html or args.page):
        parser.error("--open opens the page of --html FILE (or use --page)")
    return args


def add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    rules = parser.add_argument_group("franchise rules (each on unless turned off)")
    rules.add_argument(
        "--allow-unwatched-prequels",
        action="store_true",
        help="recommend a sequel even when its prequel chain is unwatched (default: the "
        "franchise's first unwatched entry is recommended in its place)",
    )
    rules.add_argument(
        "--allow-dropped",
        action="store_true",
        help="recommend more of a franchise the user DROPPED an entry of (default: none)",
    )
    rules.add_argument(
        "--allow-summaries",
        action="store_true",
        help="recommend summaries and recaps too (default: never)",
    )
    rules.add_argument(
        "--all-seasons",
        action="store_true",
        help="any number of entries of one franchise (default: at most one)",
    )
    rules.add_argument(
        "--continue",
        dest="continue_top",
        type=cli.non_negative_int,
        default=DEFAULT_CONTINUE,
        metavar="N",
        help="the Continue list: the next unwatched entry of up to N franchises the user "
        "completed or is watching, by score; 0 turns it off (default: %(default)s)",
    )
    rules.add_argument(
        "--no-reasons",
        action="store_true",
        help='skip the reasons ("because you watched ..."; a Continue entry still names the '
        "entry before it): saves the model's pass over each title alone, a user",
    )


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    filters = parser.add_argument_group("filters (applied after scoring, before cutting to --top)")
    filters.add_argument(
        "--genre",
        action="append",
        default=[],
        metavar="GENRE",
        help="only titles of this genre; repeat for titles having every one given",
    )
    filters.add_argument(
        "--exclude-genre",
        action="append",
        default=[],
        metavar="GENRE",
        help="no titles of this genre (repeatable)",
    )
    filters.add_argument(
        "--format",
        action="append",
        default=[],
        metavar="FORMAT",
        help=f"only titles of this format, one of {', '.join(FORMATS)} (repeatable: any of them)",
    )
    filters.add_argument("--year-from", type=int, metavar="YEAR", help="started in YEAR or later")
    filters.add_argument("--year-to", type=int, metavar="YEAR", help="started in YEAR or earlier")
    filters.add_argument(
        "--min-popularity",
        type=cli.non_negative_int,
        metavar="N",
        help="only titles at least N AniList users have on their list",
    )
    filters.add_argument(
        "--include-unreleased",
        action="store_true",
        help="titles that have not started airing may be recommended (default: left out)",
    )


def rules_from(args: argparse.Namespace) -> FranchiseRules:
    return FranchiseRules(
        prequels_first=not args.allow_unwatched_prequels,
        skip_dropped=not args.allow_dropped,
        skip_summaries=not args.allow_summaries,
        one_per_franchise=not args.all_seasons,
        continue_top=args.continue_top,
    )


def filters_from(args: argparse.Namespace, catalogue: list[db.Anime]) -> Filters:
    try:
        return make_filters(
            catalogue,
            genres=args.genre,
            exclude_genres=args.exclude_genre,
            formats=args.format,
            year_from=args.year_from,
            year_to=args.year_to,
            min_popularity=args.min_popularity,
            include_unreleased=args.include_unreleased,
        )
    except FilterError as exc:
        raise RecommendError(str(exc)) from None


def main(args: argparse.Namespace) -> int:
    cli.printable_console()
    try:
        return run_recommendations(args)
    except RecommendError as exc:
        cli.error(str(exc))
        return cli.EXIT_BAD_INPUT
    except KeyboardInterrupt:
        cli.error("interrupted; nothing was written.")
        return cli.EXIT_INTERRUPTED


def run_recommendations(args: argparse.Namespace) -> int:
    """Open the model and the store, then answer for one user, typed titles or everyone."""
    device = choose_device(args.device)
    opened = open_model(args.model, device, cli.say)
    args.db = args.db or default_database(opened.loaded.payload)
    conn = db.connect(args.db, create=False)
    args.world = model_world(opened, conn, args.db)
    catalogue = db.load_catalogue(conn)
    args.filters = filters_from(args, catalogue)
    args.rules = rules_from(args)
    recommender = Recommender.from_model(
        opened, catalogue, device=device, relations=db.load_relations(conn)
    )
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
    name, entries, source = user_list(conn, args)
    history = history_from_entries(entries, include_planning=args.include_planning)
    if not history.watched:
        where = "on AniList" if source == "anilist" else f"stored in {args.db} (try --live)"
        raise RecommendError(f"{name} has no watched titles {where}; nothing to start from.")
    return show(recommender, history, name, source, args)


def model_world(opened: OpenedModel, conn: sqlite3.Connection, db_path: str) -> str | None:
    """The world the model was trained on (worlds.py), or the store's when the model does not
    say; RecommendError when the two differ."""
    trained = worlds.of_settings(opened.loaded.payload.get("train_config"))
    stored = worlds.of_store(conn)
    if trained and stored and trained != stored:
        raise RecommendError(
            f"the model {opened.path} was trained on {worlds.describe(trained)}, but {db_path} "
            f"holds {worlds.describe(stored)}: their ids name different titles. Leave out --db "
            "to use the database the model was trained on, or train a model on this one."
        )
    return trained or stored


def user_list(
    conn: sqlite3.Connection, args: argparse.Namespace
) -> tuple[str, tuple[db.ListEntry, ...], str]:
    """(name, list entries, "database" or "anilist"): the stored list, else (and with --live)
    the list fetched from AniList now, once it is sure the model can read that world's lists."""
    if not args.live:
        stored = db.load_history(conn, args.user)
        if stored is not None:
            return stored.user_name, stored.entries, "database"
    url = cli.api_url(args)
    check_list_world(args.world, url, args.user, args.model)
    if not args.live:
        learned = db.count_users_by_state(conn).get("loaded", 0)
        cli.say(
            f"{args.user} is not among the {learned} users in {args.db} (those the model "
            f"learned from); fetching {args.user}'s list from {worlds.list_source(url)} ..."
        )
    name, entries = fetch_list(cli.make_client(args), args.user)
    return name, entries, "anilist"


def check_list_world(world: str | None, url: str, user: str, model: str) -> None:
    """Refuse a live list from another world than the model's: the simulator's ids name other
    titles on AniList, so the ranking would be confident nonsense."""
    fetched_from = worlds.of_api_url(url)
    if world is None or world == fetched_from:
        return
    if world == worlds.SIMULATOR:
        advice = (
            f"Train a model on real AniList data first ({commands.launcher('run_all')}), or "
            "ask for a user of the simulator (--api-url with its address)."
        )
    else:
        advice = (
            "Leave out --api-url (and $ANILIST_API_URL) to read the list from AniList, or "
            "point --model at a model trained on the simulator's data (the demo's)."
        )
    raise RecommendError(
        f"the model in {model} was trained on {worlds.describe(world)}, but {user}'s list "
        f"would come from {worlds.list_source(url)}: the model cannot score it (the same ids "
        f"name other titles there). {advice}"
    )


def show(
    recommender: Recommender,
    history: WatchedTitles,
    name: str,
    source: str,
    args: argparse.Namespace,
    typed: TitleHistory | None = None,
) -> int:
    result = recommender.recommend(
        history,
        top_k=args.top,
        exclude_adult=args.exclude_adult,
        rules=args.rules,
        filters=args.filters,
        explain=not args.no_reasons,
    )
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
    document = json_document(
        recommender,
        result,
        name=None if typed else name,
        source=source,
        watched=watched,
        rules=args.rules,
        filters=args.filters,
    )
    if typed is not None:
        document["titles"] = typed_matches(typed)
    if args.page and not args.html:
        args.html = str(page.page_path(name if typed is None else "titles"))
    if args.html:
        write_page(args.html, document, open_it=args.open or args.page)
    if args.json:
        # Escaped non-ASCII where stdout is not UTF-8: the JSON stays exact on any console.
        utf8 = (sys.stdout.encoding or "").lower().replace("-", "") == "utf8"
        print(json.dumps(document, indent=2, ensure_ascii=not utf8))
        return cli.EXIT_OK
    print(
        f"Top {len(result.items)} for {name}: read {result.titles_used} of {watched} watched "
        f"titles; model {recommender.model_file} (epoch {recommender.epoch})\n"
    )
    print("\n".join(table_lines(result.items)))
    if result.continue_items:
        print("\nContinue (the next entry of franchises you follow):")
        print("\n".join(table_lines(result.continue_items)))
    passed = ", ".join(f"{n} {why}" for why, n in result.left_out.items())
    if passed:
        print(f"\nPassed over: {passed}.")
    print(f"\nScoring: {recommender.scoring}.\nScore: {recommender.score_meaning}.")
    return cli.EXIT_OK


def write_page(path: str, document: dict, *, open_it: bool) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    files.write_text(path, page.render(document), encoding="utf-8")
    opened = open_it and page.open_in_browser(path)
    how = " (opened in the browser)" if opened else ""
    if open_it and not opened:
        how = " (no browser or display here: open it yourself)"
    cli.say(f"Wrote the page {os.path.abspath(path)}{how}")


def typed_matches(typed: TitleHistory) -> list[dict]:
    return [
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
        raise RecommendError(
            f"no loaded users in {args.db}; run {commands.launcher('2_load_users')} first."
        )
    with tqdm(total=users, desc="Recommending", unit="user") as bar:
        rows = recommend_all_users(
            recommender,
            conn,
            top_k=args.top,
            include_planning=args.include_planning,
            exclude_adult=args.exclude_adult,
            rules=args.rules,
            filters=args.filters,
            explain=not args.no_reasons,
            batch_size=args.batch_size,
            on_batch=bar.update,
        )
    write_csv(args.out, rows)
    left_out = users - len(rows)
    print(
        f"Wrote the top {args.top} for {len(rows)} users to {args.out}"
        + (f" ({left_out} left out: no watched title the model knows)" if left_out else "")
        + f". Scoring: {recommender.scoring}. Score: {recommender.score_meaning}."
    )
    return cli.EXIT_OK


def run() -> int:
    """The command line, also installed as `bert4rec-recommend`."""
    arguments = parse_args()
    return cli.run(lambda: main(arguments), arguments, kept=cli.READ_ONLY)


if __name__ == "__main__":
    sys.exit(run())
