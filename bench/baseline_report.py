"""What the benchmarks write about the baselines: each one's figures and the settings chosen
on validation (evaluate.fit_baselines), for every name of baselines.BASELINE_NAMES."""

from __future__ import annotations

from bert4rec import baselines

SETTINGS = ("neighbours", "shrinkage", "lambda", "decay")  # what fit_baselines chooses


def rounded(figures: dict) -> dict:
    return {k: round(v, 4) for k, v in figures.items()}


def baseline_rows(report: dict[str, dict]) -> dict[str, dict]:
    """name -> {"test", "validation", the chosen settings, "seconds"} or {"skipped": why}."""
    return {
        name: (
            {"skipped": entry["skipped"]}
            if "skipped" in entry
            else {
                **({"test": rounded(entry["test"])} if "test" in entry else {}),
                "validation": rounded(entry["validation"]),
                **{key: entry[key] for key in SETTINGS if key in entry},
                "seconds": entry["seconds"],
            }
        )
        for name, entry in report.items()
    }


def settings_of(entry: dict) -> str:
    """'(lambda 100, decay 2)'; '' for a baseline without settings (popularity)."""
    if "skipped" in entry:
        return ""
    label = baselines.settings_label(entry)
    return f"({label})" if label else ""
