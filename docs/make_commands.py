"""Writes the generated parts of docs/COMMANDS.md: each script's description, flag table and exit
statuses, read from the parser the script itself builds (build_parser) and, for train_model.py,
from config.TrainConfig, the one source of every training default. The prose around them is
written by hand; only what lies between a pair of markers is replaced:

    <!-- generated:prepare_dataset -->
    ...
    <!-- end:prepare_dataset -->

    python docs/make_commands.py           # rewrite those parts of docs/COMMANDS.md
    python docs/make_commands.py --check   # exit 1 when they are stale (tests/test_readme.py)
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
COMMANDS_DOC = ROOT / "docs" / "COMMANDS.md"
BLOCK = re.compile(r"(<!-- generated:(\w+) -->\n)(.*?)(<!-- end:\2 -->)", re.S)
# argparse's own titles for the flags outside any named group.
PLAIN_GROUPS = ("options", "optional arguments", "positional arguments")


def load_script(name: str) -> ModuleType:
    """A top-level script as a module (setup_env.py is not installed, so by path for all)."""
    spec = importlib.util.spec_from_file_location(f"_commands_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def metavar(action: argparse.Action) -> str:
    if action.metavar:
        return action.metavar
    if action.choices:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest.upper()


def flag_cell(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ", ".join(f"`{o}`" for o in action.option_strings)
    value = metavar(action)
    if action.nargs == "+":
        value = f"{value} [{value} ...]"
    return ", ".join(f"`{o} {value}`" for o in action.option_strings)


def help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help as --help shows it, %(default)s and kin filled in the way argparse fills them."""
    params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    params = {k: getattr(v, "__name__", v) for k, v in params.items()}
    if params.get("choices") is not None:
        params["choices"] = ", ".join(map(str, params["choices"]))
    return action.help % {**params, "prog": parser.prog}


def flag_tables(parser: argparse.ArgumentParser) -> str:
    """One table per argument group of the parser, --help left out."""
    sections = []
    for group in parser._action_groups:
        actions = [
            a
            for a in group._group_actions
            if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
        ]
        if not actions:
            continue
        rows = ["| flag | meaning |", "| --- | --- |"]
        rows += [f"| {flag_cell(a)} | {cell(help_text(parser, a))} |" for a in actions]
        title = "" if group.title in PLAIN_GROUPS else f"*{group.title}*\n\n"
        sections.append(title + "\n".join(rows))
    return "\n\n".join(sections)


def parser_block(parser: argparse.ArgumentParser) -> str:
    parts = [cell(parser.description or ""), flag_tables(parser)]
    if parser.epilog:
        parts.append(cell(parser.epilog))
    return "\n\n".join(p for p in parts if p)


def train_model_block() -> str:
    """Every TrainConfig field with its default, and what --preset stands for."""
    from bert4rec import config

    parser = load_script("train_model").build_parser()
    presets = "\n".join(
        f"- `--preset {name}` is `{config.describe_preset(name)}`" for name in config.PRESETS
    )
    return "\n\n".join([cell(parser.description), config.flags_markdown(), presets])


def simulator_block() -> str:
    from bert4rec import simulator

    return parser_block(simulator.build_parser())


def script_block(name: str) -> Callable[[], str]:
    return lambda: parser_block(load_script(name).build_parser())


GENERATORS: dict[str, Callable[[], str]] = {
    "setup": script_block("setup_env"),
    "prepare_dataset": script_block("prepare_dataset"),
    "load_users": script_block("load_users"),
    "train_model": train_model_block,
    "recommend": script_block("recommend"),
    "demo": script_block("demo"),
    "simulator": simulator_block,
}


def render(text: str) -> str:
    """`text` with every generated part written anew; an unknown or missing part is an error."""
    found = [m.group(2) for m in BLOCK.finditer(text)]
    unknown = sorted(set(found) - set(GENERATORS))
    missing = sorted(set(GENERATORS) - set(found))
    if unknown or missing:
        raise SystemExit(
            f"{COMMANDS_DOC}: markers unknown {unknown or 'none'}, missing {missing or 'none'}"
        )
    blocks = {name: GENERATORS[name]() for name in found}
    return BLOCK.sub(lambda m: m.group(1) + blocks[m.group(2)] + "\n" + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the flag tables of docs/COMMANDS.md.")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when the file is stale"
    )
    args = parser.parse_args(argv)
    text = COMMANDS_DOC.read_text(encoding="utf-8")
    fresh = render(text)
    if args.check:
        if fresh != text:
            print(f"{COMMANDS_DOC} is stale: run python docs/make_commands.py", file=sys.stderr)
            return 1
        return 0
    if fresh != text:
        from bert4rec import files

        files.write_text(COMMANDS_DOC, fresh)
        print(f"Wrote {COMMANDS_DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
