"""What the benchmarks write about the baselines: each one's figures and the settings chosen
on validation (evaluate.fit_baselines), for every name of baselines.BASELINE_NAMES; and about
the scorer recommendations serve (evaluate.fit_blend), on the same test targets."""

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


def blend_row(blend: dict | None) -> dict:
    """The served scorer's test figures and how it was chosen; {} when no blend was fitted."""
    if not blend:
        return {}
    return {
        "test": rounded(blend["test"]),
        "part": blend.get("part"),  # the item-item model mixed in, None for the model alone
        "ease_weight": blend["ease_weight"],
        "ease_lambda": blend["ease_lambda"],
        "decay": blend.get("decay"),  # the part's recency decay in titles, None for none
        "lead_over_ease": blend["lead_over_ease"],  # with standard errors, same targets
        "best_mix": blend.get("best_mix"),  # --blend-min-lead's test, None when not needed
    }


def settings_of(entry: dict) -> str:
    """'(lambda 100, decay 2)'; '' for a baseline without settings (popularity)."""
    if "skipped" in entry:
        return ""
    label = baselines.settings_label(entry)
    return f"({label})" if label else ""
