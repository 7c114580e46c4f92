"""Per user count: our BERT4Rec, what recommendations serve and every baseline, in two regimes.

--dataset anime (the default): real anime lists without an order. --dataset ml1m: MovieLens-1M,
whose ratings carry times, so each list is in the order it was made (the ordered regime, like
AniList's dated lists); its users are drawn the same way, the catalogue is every movie the subset
rated, ranked by training ratings alone (bench/movielens.py), and results go to
bench/results/ml1m_sizes.json and ml1m_sizes_hr10.png. --dataset simulator: the bundled simulator's
fans, in the order watched (ordered too), a world of each size (SimulatorLists); results go to
bench/results/simulator_sizes.json.

    python bench/bench_anime.py --dataset ml1m --sizes 200,500 --draws 2
    python bench/bench_anime.py --dataset simulator --sizes 2000

Data: ../shared/datasets/anime-cooperunion-5k (5,000 MyAnimeList users' lists from about 2016-17,
7,390 titles) and ../shared/datasets/anime-metadata (MAL -> AniList ids, names, genres); read the
SOURCE.md files there. The set is third-party data for benchmarking only: it is read in place
and imported into a store under a temporary folder, never into the repository.

Protocol:
- The lists carry no dates and their rows are in MAL id order, not watch order. Each user's
  titles therefore get a seeded random order (random.Random(7), users in id order, each list
  shuffled from MAL id order), written as one completion date a day, so that our store's watch
  order (data.py) is that random order. "Next title" here means "a held-out title".
- Users with at least 5 titles (4,567). Subsets of 50, 200, 500, 2,000 and all of them, each
  drawn with random.Random(1).sample from those users in id order. With --draws N, each size
  but 'all' is also run on N - 1 further subsets (random.Random(2), (3), ...) and the figures
  are averaged over the draws too: at 50 users one user is 0.02 of HR@10.
- Catalogue = every title the subset's users hold, ranked by how many of them hold it among
  their training titles (not the two each user's leave-one-out holds out), ties by MAL members.
- --split leave-one-out, full ranking, the user's other titles excluded, ties against the
  target: test figures (last title) of best_model.pth, chosen on validation (second to last).
  The baselines (bert4rec/baselines.py) are fitted on the same training titles and ranked on
  the same targets; EASE's lambda and the blend's share are chosen on validation.
- Training: train_model.py's defaults plus --split leave-one-out (what we recommend a user
  runs), unless flags say otherwise.

    python bench/bench_anime.py                          # every size, default training
    python bench/bench_anime.py --sizes 500 --epochs 20  # a quick look
    python bench/bench_anime.py --sizes 50,200 --draws 5 # small sizes, less noise
    python bench/bench_anime.py --sizes 500 --draws 3 --first-draw 2  # add draws 2, 3

Titles without an AniList id (221 of 7,390) are stored under 900,000,000 + their MAL id.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench import movielens
from bench.baseline_report import baseline_rows, blend_row, rounded, settings_of
from bench.bench_default_training import LIST_SIZE_LOG_MEAN as SIMULATOR_LIST_SIZE_LOG_MEAN
from bench.compare_recbole import machine
from bench.gpu_check import build_synthetic_store
from bert4rec import commands, db, files, tuning
from bert4rec import config as config_module
from bert4rec.baselines import BASELINE_NAMES
from bert4rec.train import LEAVE_ONE_OUT_PROTOCOL, TrainingError, train

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATASETS_ENV = "BERT4REC_DATASETS"  # overrides ../shared/datasets (relative to the repository)
DATASET = "anime-cooperunion-5k"
METADATA = "anime-metadata"
DEFAULT_SIZES = ("50", "200", "500", "2000", "all")
ORDER_SEED, SUBSET_SEED, MIN_TITLES = 7, 1, 5
NO_ANILIST_ID = 900_000_000  # + MAL id, for titles arm.json does not map
FIRST_DAY = dt.date(1990, 1, 1)
HELD_OUT = config_module.LEAVE_ONE_OUT_MIN_ITEMS - 1  # each user's validation and test targets
# --dataset simulator: bench/bench_default_training.py's world (3,000 titles, ~300 per list).
SIMULATOR_TITLES, SIMULATOR_SEED, MAX_SIMULATED_USERS = 3000, 42, 20_000


class AnimeDataError(Exception):
    """The shared data set is missing or not what SOURCE.md describes."""


def datasets_dir() -> Path:
    return Path(os.environ.get(DATASETS_ENV) or ROOT.parent / "shared" / "datasets")


def read_tsv(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


class DrawnLists:
    """Lists of real users, from which each size draws a seeded subset (draw_users)."""

    eligible: list[int]

    @property
    def eligible_users(self) -> int:
        return len(self.eligible)

    def subset(self, size: str, draw: int = 0) -> list[int]:
        return draw_users(self.eligible, size, draw)

    def check_size(self, size: str) -> None:
        if size != "all" and not (size.isdigit() and 0 < int(size) <= len(self.eligible)):
            raise ValueError(f"--sizes: {size!r} is not 'all' or 1..{len(self.eligible)}")

    def users_words(self, min_titles: int, draws: range) -> str:
        first = SUBSET_SEED + draws[0]
        return (
            f"users with at least {min_titles} titles, subsets drawn "
            f"with random.Random({first}).sample"
            + (
                f" (and {len(draws) - 1} more per size but 'all', random.Random("
                f"{first + 1}) on; means_over_draws averages them)"
                if len(draws) > 1
                else ""
            )
        )


class AnimeLists(DrawnLists):
    """The users' lists (item ids of the sample) and each item's metadata."""

    def __init__(
        self, folder: Path, top_titles: int | None = None, min_titles: int = MIN_TITLES
    ) -> None:
        base, meta = folder / DATASET, folder / METADATA
        needed = [
            base / "anime_history.dat.gz",
            base / "item_id_to_mal_id.tsv",
            base / "anime_info.dat",
            meta / "arm.json.gz",
        ]
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            raise AnimeDataError(
                f"the shared anime data is missing ({', '.join(missing)}); set {DATASETS_ENV} "
                "to the folder holding anime-cooperunion-5k and anime-metadata"
            )
        lists: dict[int, list[int]] = {}
        for row in read_tsv(base / "anime_history.dat.gz"):
            lists.setdefault(int(row["User_ID"]), []).append(int(row["Anime_ID"]))
        self.mal_of = {
            int(r["item_id"]): int(r["mal_anime_id"])
            for r in read_tsv(base / "item_id_to_mal_id.tsv")
        }
        self.info = {int(r["anime_ids"]): r for r in read_tsv(base / "anime_info.dat")}
        with gzip.open(meta / "arm.json.gz", "rt", encoding="utf-8") as handle:
            arm = json.load(handle)
        anilist_of_mal = {
            e["mal_id"]: e["anilist_id"] for e in arm if "mal_id" in e and "anilist_id" in e
        }
        self.anilist_of = {
            item: anilist_of_mal.get(mal, NO_ANILIST_ID + mal) for item, mal in self.mal_of.items()
        }
        # The seeded random order (module docstring): from MAL id order, users in id order.
        order = random.Random(ORDER_SEED)
        self.lists: dict[int, list[int]] = {}
        for user in sorted(lists):
            items = sorted(set(lists[user]), key=lambda i: self.mal_of[i])
            order.shuffle(items)
            self.lists[user] = items
        if top_titles:
            self.lists = best_known_only(self.lists, self.members, top_titles)
        self.eligible = [u for u in sorted(self.lists) if len(self.lists[u]) >= min_titles]

    name = DATASET
    ordered = False
    order_words = (
        f"each user's titles in a seeded random order (random.Random({ORDER_SEED})): the data "
        "has no watch order; "
    )
    catalogue_words = "catalogue = every title of the subset, ranked by training titles alone; "

    def import_subset(self, users: list[int], path: Path) -> dict:
        return import_subset(self, users, path)

    def members(self, item: int) -> int:
        """MyAnimeList members of the title (0 when anime_info.dat has none)."""
        return int(self.info[item]["members"] or 0) if item in self.info else 0

    def anime(self, item: int, rank: int) -> db.Anime:
        info = self.info[item]
        genres = tuple(g.strip() for g in info["genre"].split(",") if g.strip())
        return db.Anime(
            self.anilist_of[item],
            title_romaji=info["name"],
            id_mal=self.mal_of[item],
            genres=genres,
            format=info["type"] or None,
            popularity=int(info["members"]) if info["members"].isdigit() else None,
            popularity_rank=rank,
        )


def best_known_only(
    lists: dict[int, list[int]], members: Callable[[int], int], top_titles: int
) -> dict[int, list[int]]:
    """Each list with only the `top_titles` titles of most MyAnimeList members, in its order.
    Members are a count from outside the lists: counting the lists would let leave-one-out's
    held-out targets decide which titles stay."""
    held = {i for items in lists.values() for i in items}
    kept = set(sorted(held, key=lambda i: (-members(i), i))[:top_titles])
    return {u: [i for i in items if i in kept] for u, items in lists.items()}


def draw_users(eligible: list[int], size: str, draw: int) -> list[int]:
    """'all' of them, or a seeded sample of `size` (random.Random(SUBSET_SEED + draw))."""
    if size == "all":
        return list(eligible)
    return sorted(random.Random(SUBSET_SEED + draw).sample(eligible, int(size)))


class MovieLensLists(DrawnLists):
    """MovieLens-1M's users, each list in the order it was rated (bench/movielens.py)."""

    name = movielens.DATASET_NAME
    ordered = True
    order_words = (
        "each user's ratings in the order they were made (ties by title, bench/movielens.py); "
    )
    catalogue_words = AnimeLists.catalogue_words

    def __init__(self, cache: Path | None = None, min_titles: int = MIN_TITLES) -> None:
        try:
            ratings = movielens.read_ratings(movielens.fetch_ml1m(cache))
        except movielens.MovieLensError as exc:
            raise AnimeDataError(str(exc)) from exc
        self.ratings: dict[int, list[movielens.Rating]] = {}
        for rating in ratings:
            self.ratings.setdefault(rating.user_id, []).append(rating)
        self.eligible = [u for u in sorted(self.ratings) if len(self.ratings[u]) >= min_titles]

    def import_subset(self, users: list[int], path: Path) -> dict:
        chosen = [r for u in users for r in self.ratings[u]]
        conn = db.connect(path)
        try:
            counts = movielens.import_ratings(conn, chosen)
        finally:
            conn.close()
        return {"users": counts.users, "titles": counts.items, "interactions": counts.ratings}


class SimulatorLists:
    """The bundled simulator's fans (bert4rec/synthetic.py), each list in the order watched, as
    bench/bench_default_training.py builds them: 3,000 titles, lists of about 300 titles. A size
    is a world of that many generated accounts (seed SIMULATOR_SEED + draw), stored as the data
    stages store it (private accounts and lists under 20 watched titles left out)."""

    name = "simulator"
    ordered = True
    order_words = "each simulated fan's list in the order watched (bert4rec/synthetic.py); "
    catalogue_words = (
        "catalogue = the world's titles, ranked by the simulated AniList popularity (a signal "
        "from outside the lists, as on AniList); "
    )
    eligible_users = None  # a world is generated for each size, up to MAX_SIMULATED_USERS

    def subset(self, size: str, draw: int = 0) -> tuple[int, int]:
        return int(size), draw

    def check_size(self, size: str) -> None:
        if not (size.isdigit() and 0 < int(size) <= MAX_SIMULATED_USERS):
            raise ValueError(
                f"--sizes: {size!r} is not 1..{MAX_SIMULATED_USERS} (the simulator has no 'all')"
            )

    def users_words(self, min_titles: int, draws: range) -> str:
        first = SIMULATOR_SEED + draws[0]
        return (
            f"a world of that many generated accounts per size (seed {first}"
            + (f", then {first + 1} on for further draws" if len(draws) > 1 else "")
            + ")"
        )

    def import_subset(self, users: tuple[int, int], path: Path) -> dict:
        count, draw = users
        built = build_synthetic_store(
            path,
            SIMULATOR_TITLES,
            count,
            seed=SIMULATOR_SEED + draw,
            list_size_log_mean=SIMULATOR_LIST_SIZE_LOG_MEAN,
        )
        conn = db.connect(path)
        try:
            interactions = conn.execute(
                "SELECT COUNT(*) FROM bert_user_anime_list l JOIN bert_users u "
                "ON u.user_id = l.user_id WHERE u.state = 'loaded'"
            ).fetchone()[0]
        finally:
            conn.close()
        return {
            "users": built["users_loaded"],
            "titles": built["titles"],
            "interactions": interactions,
        }


def import_subset(lists: AnimeLists, users: list[int], path: Path) -> dict:
    """A store of our schema with these users and every title they hold, the catalogue ranked
    by how many of them hold each title among their training titles, ties by MAL members.
    Training titles are all but each list's last HELD_OUT, the targets leave-one-out holds out:
    a held-out title's count never enters the rank (MostPopular breaks its ties by the rank,
    and index order follows it)."""
    counts = Counter(i for u in users for i in lists.lists[u])
    trained = Counter(i for u in users for i in lists.lists[u][:-HELD_OUT])
    ranked = sorted(counts, key=lambda i: (-trained[i], -lists.members(i), i))
    conn = db.connect(path)
    try:
        db.upsert_anime(conn, [lists.anime(i, rank) for rank, i in enumerate(ranked, start=1)])
        for user in users:
            entries = [
                db.ListEntry(
                    lists.anilist_of[item],
                    "COMPLETED",
                    completed_at=(FIRST_DAY + dt.timedelta(days=day)).isoformat(),
                )
                for day, item in enumerate(lists.lists[user])
            ]
            db.store_user_list(conn, f"mal_user_{user}", user, entries, source="bench")
    finally:
        conn.close()
    return {"users": len(users), "titles": len(ranked), "interactions": sum(counts.values())}


def run_size(lists, size: str, given: dict, work: Path, draw: int = 0) -> dict:
    folder = work / (f"users_{size}_draw_{draw + 1}" if draw else f"users_{size}")
    store = folder / "anime.db"
    store.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    shape = lists.import_subset(lists.subset(size, draw), store)
    settings = config_module.from_dict(
        {
            "split": "leave-one-out",
            "checkpoint_every": 0,
            **given,
            "db": str(store),
            "output": str(folder / "output"),
        }
    )
    settings.validate()
    started = time.perf_counter()
    tuning.tune_for_training(settings)  # as train_model.py does
    history = train(settings)
    seconds = time.perf_counter() - started
    baselines = baseline_rows(history.baselines)
    return {
        "size": size,
        "draw": draw + 1,
        "subset_seed": SUBSET_SEED + draw,
        **shape,
        "model": {
            "test": rounded(history.test_ranking),
            "best_epoch": history.test_epoch,
            "epochs": history.epochs_done,
        },
        "blend": blend_row(history.blend),
        "baselines": baselines,
        "seconds": round(seconds, 1),
        "seconds_means": "all of train(): baselines, every epoch, the test and the blend",
        "config": asdict(settings),
    }


def mean_rows(rows: list[dict]) -> list[dict]:
    """One row per size whose figures are the means over its draws (sizes run more than once),
    shaped like a run's row for table() and plot(); EASE's lambda is each draw's own."""

    def mean(parts: list[dict]) -> dict:
        return {k: round(statistics.fmean(p[k] for p in parts), 4) for k in parts[0]}

    means = []
    for size in dict.fromkeys(r["size"] for r in rows):
        draws = [r for r in rows if r["size"] == size]
        if len(draws) < 2:
            continue
        blends = [r["blend"] for r in draws if r["blend"]]
        baselines = {}
        for name in BASELINE_NAMES:
            fitted = [r["baselines"][name] for r in draws if "test" in r["baselines"].get(name, {})]
            baselines[name] = (
                {"test": mean([f["test"] for f in fitted])}
                if len(fitted) == len(draws)
                else {"skipped": "in some draws"}
            )
        means.append(
            {
                "size": size,
                "draws": len(draws),
                "users": draws[0]["users"],
                "titles": round(statistics.fmean(r["titles"] for r in draws)),
                "model": {"test": mean([r["model"]["test"] for r in draws])},
                "blend": {
                    "test": mean([b["test"] for b in blends]),
                    "ease_weight": statistics.fmean(b["ease_weight"] for b in blends),
                }
                if len(blends) == len(draws)
                else {},
                "baselines": baselines,
                "seconds": statistics.fmean(r["seconds"] for r in draws),
            }
        )
    return means


def table(rows: list[dict], metric: str) -> list[str]:
    """One line per row: the model, the blend and every baseline (with the settings chosen on
    validation; '(-)' for a mean over draws, each of which chose its own)."""
    lines = [
        f"{'users':>6} {'titles':>6} | {'model':>6} {'blend':>6} (w)   | "
        + " | ".join(BASELINE_NAMES)
        + f" | {'minutes':>7}  ({metric}, test)"
    ]
    for row in rows:
        figures = []
        for name in BASELINE_NAMES:
            entry = row["baselines"].get(name, {"skipped": "not run"})
            if "test" not in entry:
                figures.append("skip")
                continue
            chosen = settings_of(entry)
            if "draws" in row and name != "popularity":
                chosen = "(-)"  # each draw chose its own
            figures.append(f"{entry['test'][metric]:.4f} {chosen}".rstrip())
        blend = row["blend"]
        blended = f"{blend['test'][metric]:.4f} ({blend['ease_weight']:.1f})" if blend else "-"
        lines.append(
            f"{row['users']:>6} {row['titles']:>6} | {row['model']['test'][metric]:.4f} "
            f"{blended:>12} | "
            + " | ".join(figures)
            + f" | {row['seconds'] / 60:7.1f}"
            + (f"  mean of {row['draws']} draws" if "draws" in row else "")
        )
    return lines


def plot(rows: list[dict], path: Path, title: str) -> None:
    fig = Figure(figsize=(8, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    averaged = {r["size"]: r for r in mean_rows(rows)}
    rows = [averaged.get(r["size"], r) for r in {r["size"]: r for r in rows}.values()]
    users = [r["users"] for r in rows]
    series = {
        "BERT4Rec alone": [r["model"]["test"]["HR@10"] for r in rows],
        "blend (recommendations)": [
            r["blend"]["test"]["HR@10"] if r["blend"] else None for r in rows
        ],
    }
    for name in BASELINE_NAMES:
        series[name] = [r["baselines"].get(name, {}).get("test", {}).get("HR@10") for r in rows]
    for (name, values), style in zip(series.items(), ("-o", "-s", ":^", "-.v", "--d", "--x")):
        points = [(u, v) for u, v in zip(users, values) if v is not None]
        if points:
            ax.plot(*zip(*points), style, label=name)
    ax.set_xscale("log")
    ax.set(
        title=title,
        xlabel="users",
        ylabel="HR@10",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.write_with(path, lambda handle: fig.savefig(handle, format="png", dpi=110))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--dataset",
        choices=("anime", "ml1m", "simulator"),
        default="anime",
        help="anime: the shared anime lists, in a seeded random order; ml1m: MovieLens-1M in "
        "the order each user rated; simulator: the bundled simulator's fans, in the order "
        "watched, a world of each size (default: %(default)s)",
    )
    parser.add_argument(
        "--sizes",
        default=",".join(DEFAULT_SIZES),
        help="user counts, comma-separated; 'all' is every user with 5+ titles "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--data", type=Path, default=None, help=f"default: ${DATASETS_ENV} or ../shared/datasets"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="stores and outputs (default: a temporary folder)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="default: bench/results/anime.json (ml1m_sizes.json)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="default: bench/results/anime_hr10.png (ml1m_sizes_hr10.png)",
    )
    parser.add_argument(
        "--draws",
        type=int,
        default=1,
        help="run each size but 'all' on this many subsets and report the means too "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--first-draw",
        type=int,
        default=1,
        help="start at this draw: adds draws 2.. to an earlier run without redoing the first; "
        "each row names its draw (default: %(default)s)",
    )
    parser.add_argument(
        "--top-titles",
        type=int,
        default=None,
        help="keep only the N titles with the most MyAnimeList members (a count from outside "
        "the lists, so no held-out title decides) before choosing users",
    )
    parser.add_argument(
        "--min-titles",
        type=int,
        default=MIN_TITLES,
        help="users need at least this many (kept) titles (default: %(default)s)",
    )
    config_module.add_arguments(parser)  # any train_model.py flag changes the training
    args = parser.parse_args(argv)
    given = config_module.given_settings(args)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    try:
        stem = "anime" if args.dataset == "anime" else f"{args.dataset}_sizes"
        args.json = args.json or RESULTS / f"{stem}.json"
        args.plot = args.plot or RESULTS / f"{stem}_hr10.png"
        if args.dataset == "ml1m":
            lists = MovieLensLists(min_titles=args.min_titles)
        elif args.dataset == "simulator":
            lists = SimulatorLists()
        else:
            lists = AnimeLists(args.data or datasets_dir(), args.top_titles, args.min_titles)
        for size in sizes:
            lists.check_size(size)
        if args.draws < 1:
            raise ValueError(f"--draws must be at least 1 (got {args.draws})")
        if not 1 <= args.first_draw <= args.draws:
            raise ValueError(
                f"--first-draw must be 1..--draws ({args.draws}); got {args.first_draw}"
            )
        if args.first_draw > 1 and "all" in sizes:
            raise ValueError("--sizes: 'all' has one draw only; leave it out with --first-draw")
        draws = range(args.first_draw - 1, args.draws)  # each subset's seed: SUBSET_SEED + draw
        with tempfile.TemporaryDirectory(prefix="bench_anime_") as temporary:
            work = args.work or Path(temporary)
            rows = []
            for size in sizes:
                for draw in range(1) if size == "all" else draws:
                    print(f"\n=== {size} users, draw {draw + 1} ===", flush=True)
                    rows.append(run_size(lists, size, given, work, draw))
                    print("\n".join(table(rows[-1:], "HR@10")), flush=True)
                    write_results(args, lists, draws, rows)  # an interrupted run keeps them
    except (AnimeDataError, ValueError, TrainingError, db.DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for metric in ("HR@10", "NDCG@10"):
        print("\n" + "\n".join(table(rows + mean_rows(rows), metric)))
    print(f"\nwritten: {args.json}, {args.plot}")
    return 0


def write_results(args: argparse.Namespace, lists, draws: range, rows: list[dict]) -> None:
    result = {
        "dataset": lists.name if lists.ordered else f"{DATASET} (+ {METADATA})",
        "command": commands.python("bench/bench_anime.py", *sys.argv[1:]),
        "protocol": (
            lists.order_words
            + (
                f"only the {args.top_titles} titles with most MyAnimeList members kept; "
                if args.top_titles
                else ""
            )
            + lists.users_words(args.min_titles, draws)
            + "; "
            + lists.catalogue_words
            + LEAVE_ONE_OUT_PROTOCOL
        ),
        "eligible_users": lists.eligible_users,
        "rows": rows,
        "means_over_draws": mean_rows(rows),
        "machine": machine(),
    }
    files.write_json(args.json, result)
    regime = "time order" if lists.ordered else "random order"
    plot(rows, args.plot, f"{lists.name}: leave-one-out ({regime}), full ranking, test")


if __name__ == "__main__":
    sys.exit(main())
