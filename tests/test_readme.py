"""The README and docs/ state what the code does: the quick start runs as written, every command
and flag they show exists, every link resolves, and the generated command reference is fresh."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, fake_venv
from test_demo import clean_copy  # noqa: F401  (a fixture: the repository as a fresh clone has it)
from test_launchers import python_calls

from bert4rec import db, recommender, simulator
from bert4rec.metrics import TrainingHistory

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 200
CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
LAUNCHER = re.compile(r"^(?:\./)?(\w+)\.(?:bat|sh)$")
PYTHON = re.compile(r"^(?:\.venv[\\/](?:bin|Scripts)[\\/])?python3?$")
# Scripts whose flags the docs show: what docs/make_commands.py documents.
SCRIPTS = ("setup_env", "prepare_dataset", "load_users", "train_model", "recommend", "demo")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def make_commands():
    spec = importlib.util.spec_from_file_location(
        "make_commands", ROOT / "docs" / "make_commands.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the generated command reference ----------------------------------------------------------


def test_the_command_reference_is_fresh():
    tool = make_commands()
    text = read(tool.COMMANDS_DOC)
    assert tool.render(text) == text, "docs/COMMANDS.md is stale: run python docs/make_commands.py"


def test_the_command_reference_names_every_output_field():
    text = read(ROOT / "docs" / "COMMANDS.md")
    csv_table = text[text.index("## recommend.py --all-users CSV") :]
    for column in recommender.CSV_COLUMNS:
        assert f"`{column}`" in csv_table, f"COMMANDS.md lacks the CSV column {column}"
    title = recommender.Recommendation(1, db.Anime(1), 0.5).to_dict()
    document = re.findall(r'^\s+"(\w+)":', inspect.getsource(recommender.json_document), re.M)
    metrics = ["epochs", *TrainingHistory().to_dict()]
    for field in [*title, *document, *metrics]:
        assert f"`{field}`" in text, f"COMMANDS.md lacks the field {field}"


# --- the README -------------------------------------------------------------------------------


def test_readme_is_short_and_names_the_launchers_and_the_test_command():
    text = read(README)
    assert len(text.splitlines()) <= README_MAX_LINES
    for launcher in sorted(p.stem for p in ROOT.glob("*.bat")):
        assert launcher in text, launcher
    # .ci/run runs what the README tells developers to run.
    assert "./test.sh" in text and ".venv/bin/python -m pytest -q" in text
    assert "docs/demo_recommendations.png" in text.split("## ")[0]  # the picture comes first


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a markdown page's headings (code blocks left out)."""
    text = CODE_BLOCK.sub("", text)
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
        anchors.add(slug.replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in LINK.findall(CODE_BLOCK.sub("", read(page))):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: outside the repository
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in heading_anchors(read(linked)), f"{page.name}: no heading #{anchor}"


def commands_shown(text: str) -> list[list[str]]:
    """Every command line of the code blocks and every code span that starts with a launcher
    or the project's Python, as tokens."""
    candidates = [line for block in CODE_BLOCK.findall(text) for line in block.splitlines()]
    candidates += CODE_SPAN.findall(CODE_BLOCK.sub("", text))
    commands = []
    for line in candidates:
        try:
            tokens = shlex.split(line, comments=True, posix=False)
        except ValueError:  # an explanation beside the command, with an apostrophe
            tokens = line.split()
        if tokens and (LAUNCHER.match(tokens[0]) or PYTHON.match(tokens[0])):
            commands.append(tokens)
    return commands


def script_of(tokens: list[str]) -> tuple[str | None, list[str]]:
    """(the project script a command runs, or None for another tool; the flags it gets)."""
    flags = [t.split("=")[0] for t in tokens if t.startswith("--")]
    launcher = LAUNCHER.match(tokens[0])
    if launcher:
        name = launcher.group(1)
        assert (ROOT / f"{name}.sh").is_file(), f"no launcher {name}"
        if name == "setup":
            return "setup_env", flags
        if name == "test":
            return None, flags
        if name == "run_all":
            if "--demo" not in flags:
                assert not flags, f"run_all takes no flags but --demo: {tokens}"
            return "demo", [f for f in flags if f != "--demo"]
        (script, fixed), *_ = python_calls(ROOT / f"{name}.sh")
        return script.removesuffix(".py"), flags
    if tokens[1:3] == ["-m", "bert4rec.simulator"]:
        return "simulator", flags
    script = next((t for t in tokens[1:] if t.endswith(".py")), None)
    if script is None or "/" in script or "\\" in script:
        return None, flags  # python -m ..., a benchmark, a docs tool
    return script.removesuffix(".py"), flags


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_command_shown_runs_a_real_script_with_real_flags(page):
    tool = make_commands()
    parsers = {name: tool.load_script(name).build_parser() for name in SCRIPTS}
    parsers["simulator"] = simulator.build_parser()
    for tokens in commands_shown(read(page)):
        script, flags = script_of(tokens)
        if script is None:
            continue
        assert script in parsers, f"{page.name}: {' '.join(tokens)} runs unknown {script}.py"
        known = parsers[script]._option_string_actions
        for flag in flags:
            assert flag in known, f"{page.name}: {script}.py has no {flag} ({' '.join(tokens)})"


# --- the quick start, run as written ----------------------------------------------------------


def quick_start_block() -> list[list[str]]:
    """The commands of the README's Linux and macOS quick start, in order."""
    text = read(README)
    section = text[text.index("### Linux and macOS") :]
    section = section[: section.index("\n## ")]
    block = CODE_BLOCK.search(section)
    assert block, "the Linux and macOS quick start lost its code block"
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    return [c for c in commands if c]


def quick_demo_flags() -> list[str]:
    """The smaller demo the README offers for the impatient (the test's time budget)."""
    offered = re.search(r"`\./demo\.sh (--[^`]+)`", read(README))
    assert offered, "the README no longer offers a quick demo with smaller sizes"
    return offered.group(1).split()


@pytest.mark.slow
def test_the_readme_quick_start_runs_as_written(clean_copy):  # noqa: F811
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    demo_user = None
    commands = quick_start_block()
    assert [c[0] for c in commands] == ["./setup.sh", "./demo.sh", "./4_recommend.sh"], (
        "the quick start changed: teach this test its new steps"
    )
    for command in commands:
        program = clean_copy / command[0]
        assert program.is_file() and os.access(program, os.X_OK), command[0]
        if command[0] == "./setup.sh":
            fake_venv(clean_copy)  # setup downloads PyTorch; the test has no network
            continue
        if command[0] == "./demo.sh":
            command = [*command, *quick_demo_flags()]
        answer = f"{demo_user}\n" if command == ["./4_recommend.sh"] else None
        out = subprocess.run(
            command, cwd=clean_copy, env=env, input=answer, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, f"{command}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
        if command[0] == "./demo.sh":
            named = re.search(r"--user (\S+)", out.stdout)
            assert named, "the demo no longer prints a user to ask for: " + out.stdout[-500:]
            demo_user = named.group(1)
    page = clean_copy / "output" / "recommendations" / f"{demo_user}.html"
    assert page.is_file(), "4_recommend wrote no page for the demo's user"
    assert f"Recommendations for {demo_user}" in page.read_text(encoding="utf-8")
