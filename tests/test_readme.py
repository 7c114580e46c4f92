"""The README states what the code does: its flag table is the one TrainConfig generates."""

from __future__ import annotations

import re

from conftest import ROOT

from bert4rec import config


def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_training_flag_table_matches_the_config():
    block = re.search(r"<!-- train-flags:start -->\n(.*?)<!-- train-flags:end -->", readme(), re.S)
    assert block, "README.md lost its train-flags markers"
    assert block.group(1) == config.flags_markdown().rstrip("\n") + "\n", (
        "README's train_model.py table is stale: paste config.flags_markdown() between the markers"
    )


def test_readme_names_every_launcher_and_the_test_command():
    text = readme()
    for launcher in sorted(p.name for p in ROOT.glob("*.bat")):
        assert launcher.removesuffix(".bat") in text, launcher
    assert "python -m pytest -q" in text
    assert (ROOT / "docs" / "demo_combined_metrics.png").is_file()
