"""What the data scripts share: the AniList and database flags, and turning failures into a
clear message and an exit code instead of a traceback.

Exit codes: 0 done, 1 something failed that was not the user's doing (AniList down, disabled,
unreachable, answering badly), 2 bad input (flags, files, the database, data of another world
than the store's), 130 interrupted.
"""

from __future__ import annotations

import argparse
import io
import sqlite3
import sys
from collections.abc import Callable

from tqdm import tqdm

from bert4rec import db, paths, worlds
from bert4rec.anilist import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_RATE_LIMIT,
    DEFAULT_TIMEOUT,
    PACE_HEADROOM,
    AniListClient,
    AniListError,
    ApiUnavailable,
    ApiUnreachable,
    RequestRejected,
    RetriesExhausted,
)
from bert4rec.users import MissingCatalogue, StageStopped
from bert4rec.users_file import BadUserName, UserFileError, parse_user_name

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

KEPT = "Everything stored so far is kept; run the same command again to carry on."
READ_ONLY = "Nothing was changed; run the same command again."  # for scripts that store nothing


def positive_int(text: str) -> int:
    return _number(text, int, minimum=1)


def non_negative_int(text: str) -> int:
    return _number(text, int, minimum=0)


def positive_float(text: str) -> float:
    return _number(text, float, minimum=None)


def _number(text: str, kind: type, minimum: int | None) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if (minimum is not None and value < minimum) or (minimum is None and not value > 0):
        raise argparse.ArgumentTypeError(f"{text} is too small (at least {minimum or '> 0'})")
    return value


def user_name(text: str) -> str:
    """An argparse type: an AniList user as typed or pasted (name, @name, profile address)."""
    try:
        return parse_user_name(text)
    except BadUserName as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=paths.DEFAULT_DB_PATH,
        metavar="PATH",
        help="SQLite database to fill (created if missing; default: %(default)s)",
    )
    add_api_arguments(parser)


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of make_client(): where AniList is and how fast to ask it."""
    parser.add_argument(
        "--api-url",
        metavar="URL",
        help=f"AniList GraphQL endpoint (default: ${paths.API_URL_ENV} when set, else "
        f"{paths.ANILIST_API_URL}); point it at the AniList simulator to work offline",
    )
    parser.add_argument(
        "--rate-limit",
        type=positive_float,
        metavar="N",
        help="send at most N requests per minute (default: the limit AniList announces in "
        f"its X-RateLimit-Limit header, else {DEFAULT_RATE_LIMIT}); requests are paced at "
        f"{PACE_HEADROOM * 100:.0f}%% of the limit",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="give up on an answer after this long and retry (default: %(default)s)",
    )
    parser.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=DEFAULT_MAX_RETRIES,
        metavar="N",
        help="retries of a request after a server error, timeout or lost connection, with "
        "waits of about 2, 6, 18, 54 s (default: %(default)s); rate-limit waits do not count",
    )


def api_url(args: argparse.Namespace) -> str:
    return args.api_url or paths.default_api_url()


def make_client(args: argparse.Namespace) -> AniListClient:
    return AniListClient(
        api_url(args),
        rate_limit=args.rate_limit,
        timeout=args.timeout,
        max_retries=args.max_retries,
        notify=say,
    )


def open_store(args: argparse.Namespace) -> sqlite3.Connection:
    """The store a data stage fills (--db), claimed for the world --api-url serves: data of the
    simulator and of AniList never share a store (worlds.py)."""
    conn = db.connect(args.db)
    worlds.claim_store(conn, worlds.of_api_url(api_url(args)), args.db)
    return conn


def printable_console() -> None:
    """Show '?' for what the console's code page cannot (a Japanese title on a cp1252 Windows
    console, say) instead of stopping with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="replace")


def say(message: str) -> None:
    """A line on stderr that does not break a progress bar."""
    tqdm.write(message, file=sys.stderr)


def error(message: str) -> None:
    say(f"error: {message}")


def console_attended() -> bool:
    """Whether a person may be at the console: stdin is a terminal (not a script's pipe, a
    file, or CI), so a question gets an answer."""
    return sys.stdin is not None and sys.stdin.isatty()


def ask_yes(question: str) -> bool:
    """Ask on the console where a person sits at it; Enter means yes. False at once without
    one, so that nothing waits for an answer nobody can give."""
    if not console_attended():
        return False
    try:
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("", "y", "yes")


def run(main: Callable[[], int], args: argparse.Namespace, *, kept: str = KEPT) -> int:
    """Run a script's `main`, turning every expected failure into a message and an exit code.
    `kept` ends the messages of failures that leave the store as it was."""
    try:
        return main()
    except KeyboardInterrupt:
        error(f"interrupted. {kept}")
        return EXIT_INTERRUPTED
    except (db.DatabaseError, UserFileError, MissingCatalogue, worlds.WorldError) as exc:
        error(str(exc))
        return EXIT_BAD_INPUT
    except sqlite3.Error as exc:
        error(f"database problem with {args.db}: {exc}. {kept}")
        return EXIT_FAILED
    except ApiUnavailable as exc:
        error(
            f"AniList refused the request (HTTP 403): {exc}\nThe API is switched off or this "
            "address is blocked. Wait (hours, not minutes) and run the same command again; "
            "AniList's Discord has news of outages. Everything stored so far is kept."
        )
        return EXIT_FAILED
    except ApiUnreachable as exc:
        error(
            f"cannot reach the AniList API at {api_url(args)}: {exc}.\nCheck the internet "
            f"connection (proxy, firewall), or --api-url / ${paths.API_URL_ENV}. {kept}"
        )
        return EXIT_FAILED
    except (RetriesExhausted, StageStopped) as exc:
        error(f"AniList is not answering properly at {api_url(args)}: {exc}.\n{kept}")
        return EXIT_FAILED
    except RequestRejected as exc:
        error(
            f"AniList rejected a request: {exc}\nThis program's query no longer fits AniList's "
            "API; please report it."
        )
        return EXIT_FAILED
    except AniListError as exc:
        error(f"{exc}. Check --api-url / ${paths.API_URL_ENV}.")
        return EXIT_BAD_INPUT
