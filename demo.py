"""The whole pipeline offline: stages 1-3 against the local AniList simulator, at a small size.

Starts the simulator (synthetic titles and users, not AniList's), runs prepare_dataset.py,
load_users.py and train_model.py against it exactly as a user would, stops it, and points at the
outputs. Takes a few minutes on a 2-core CPU. `demo` (.bat / .sh) and `run_all --demo` run this.

Its model is of the simulator's world (bert4rec/worlds.py): recommend.py refuses to score a real
AniList list with it, and it never takes the place of a model trained on real data (it then
writes to output/demo/).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bert4rec import commands, worlds
from bert4rec.checkpoint import BEST_MODEL_FILE, TRAINING_CONFIG_FILE, OutputPaths
from bert4rec.paths import DEFAULT_OUTPUT_DIR, DEMO_DB_PATH
from bert4rec.simulator import SYNTHETIC_NOTICE, FakeAniList, write_user_names
from bert4rec.synthetic import generate_world

ROOT = os.path.dirname(os.path.abspath(__file__))
DEMO_DB = DEMO_DB_PATH
# The simulator allows far more than AniList's 30 a minute, so the demo spends its time training.
DEMO_RATE_LIMIT = 6000
# A model sized for a few hundred synthetic users rather than AniList's thousands.
DEMO_TRAIN_FLAGS = ("--hidden", "64", "--heads", "2", "--lr", "2e-3")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run stages 1-3 against the local AniList simulator (synthetic data, no "
        "network needed) and write the outputs a real run writes."
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT_DIR,
        metavar="DIR",
        help="where the outputs go (default: %(default)s; output/demo when "
        "output/ already holds a model trained on real data)",
    )
    parser.add_argument(
        "--db",
        default=DEMO_DB,
        metavar="PATH",
        help="the demo's own database, made anew each run (default: %(default)s)",
    )
    parser.add_argument("--media", type=int, default=600, help="synthetic titles (default: 600)")
    parser.add_argument("--users", type=int, default=800, help="synthetic users (default: 800)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default: 30)")
    parser.add_argument("--seed", type=int, default=42, help="world seed (default: 42)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def holds_real_model(output: str, demo_db: str) -> bool:
    """True when `output` has a model of another world than the simulator's (worlds.py), or,
    for a model from before worlds were recorded, one trained on another database than the
    demo's."""
    config_path = OutputPaths(Path(output)).models / TRAINING_CONFIG_FILE
    try:
        with open(config_path, encoding="utf-8") as f:
            settings = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(settings, dict):
        return False
    world = settings.get(worlds.SETTINGS_FIELD)
    if world:
        return world != worlds.SIMULATOR
    return os.path.abspath(settings.get("db", "")) != os.path.abspath(demo_db)


def remove_database(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def run_stage(title: str, args: list[str]) -> None:
    print(f"\n=== {title} ===\n$ {commands.python(*args)}", flush=True)
    # No stage asks the person at the console anything: the demo's world is complete as made.
    code = subprocess.call([sys.executable, *args], cwd=ROOT, stdin=subprocess.DEVNULL)
    if code != 0:
        raise SystemExit(f"[ERROR] the demo stopped: {args[0]} exited with code {code}.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    output = args.output
    if holds_real_model(output, args.db):
        output = os.path.join(output, "demo")
        print(f"{args.output}/ holds a model trained on real data; the demo writes to {output}/.")
    os.makedirs(os.path.dirname(os.path.abspath(args.db)), exist_ok=True)
    remove_database(args.db)

    started = time.monotonic()
    world = generate_world(args.media, args.users, seed=args.seed)
    users_file = os.path.join(os.path.dirname(args.db) or ".", "demo_users.txt")
    write_user_names(world, users_file)
    print(SYNTHETIC_NOTICE)
    with FakeAniList(world, rate_limit=DEMO_RATE_LIMIT) as api:
        print(f"Simulator on {api.url}: {len(world.media)} titles, {len(world.users)} users.")
        common = ["--db", args.db, "--api-url", api.url, "--rate-limit", str(DEMO_RATE_LIMIT)]
        run_stage(
            "Stage 1: anime catalogue", ["prepare_dataset.py", "--count", str(args.media), *common]
        )
        run_stage(
            "Stage 2: users",
            ["load_users.py", "--users", users_file, "--min-anime", "20", *common],
        )
    run_stage("Stage 3: training", [
        "train_model.py", "--db", args.db, "--output", output, "--epochs", str(args.epochs),
        *DEMO_TRAIN_FLAGS,
    ])  # fmt: skip

    minutes = (time.monotonic() - started) / 60
    print(
        f"\nDemo finished in {minutes:.1f} min (synthetic data: the figures say nothing about "
        "real AniList users)."
    )
    layout = OutputPaths(Path(output))
    print(f"  model:  {layout.models / BEST_MODEL_FILE}")
    print(f"  plots:  {layout.plots}")
    print(f"  log:    {layout.log_file}")
    example = next(u.name for u in world.users if not u.private and len(u.entries) >= 30)
    model_flags = () if output == DEFAULT_OUTPUT_DIR else ("--model", output)
    print(f"Recommendations: {commands.launcher('4_recommend', '--user', example, *model_flags)}")
    print(
        "  (a user of the simulator: this model refuses real AniList lists, being trained on "
        "synthetic data)"
    )
    print(
        "Real data next: put AniList user names in datas_user.txt, then run "
        f"{commands.launcher('run_all')} (it never mixes with the demo's data)."
    )
    return 0


def run() -> int:
    """The command line, also installed as `bert4rec-demo`."""
    return main()


if __name__ == "__main__":
    sys.exit(run())
