"""Write a ranked sweep as ``leaderboard.csv`` and a readable ``leaderboard.md``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cxrad.analysis.selection import TERM_SIGNS, SelectionConfig, reproduce_command

SHOWN = ("rank", "run", "model", "backbone", "conditioning", "settings", "threshold_method")
# What the ranking reads (validation films), then what it never reads (test films, reported for the record).
VALIDATION_SHOWN = {
    "val_nodule_band": "val nodule band",
    "val_selection_nodule_auroc": "val nodule AUROC",
    "val_image_auroc": "val AUROC",
    "val_view_stratified_auroc": "val within-view AUROC",
    "val_fpr": "val FPR",
    "val_view_shortcut": "val view shortcut",
}
TEST_SHOWN = {
    "image_auroc": "test AUROC",
    "view_stratified_auroc": "test within-view AUROC",
    "view_shortcut": "test view shortcut",
    "fpr": "test FPR",
    "nodule_auroc": "test nodule AUROC",
}
# Test figures of the selected run, with their patient-bootstrap CI columns (``<name>_low``/``<name>_high``).
SELECTED_TEST = ("image_auroc", "view_stratified_auroc", "view_shortcut", "fpr", "tpr", "nodule_auroc")


def format_cell(value: object) -> str:
    """Numbers with 3 decimals, missing values as ``-``, ``|`` escaped for markdown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table of ``frame`` (no index).

    Example:
        >>> print(markdown_table(pd.DataFrame({"a": [1.0], "b": ["x"]})))
        | a | b |
        |---|---|
        | 1.000 | x |
    """
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def formula(config: SelectionConfig) -> str:
    """The criterion as text, e.g. ``score = 1*val nodule_auroc + 1*val image_auroc - 0.5*val fpr``."""
    parts = [f"{'+' if TERM_SIGNS[t] > 0 else '-'} {w:g}*val {t}" for t, w in config.weights.items() if w > 0]
    return "score = " + " ".join(parts).lstrip("+ ")


def with_ci(row: pd.Series, name: str) -> str:
    """``0.612 [0.550, 0.671]`` from a row's ``name``, ``name_low`` and ``name_high`` (no CI part when absent)."""
    value = format_cell(row.get(name))
    low, high = row.get(f"{name}_low"), row.get(f"{name}_high")
    if value == "-" or low is None or high is None or pd.isna(low) or pd.isna(high):
        return value
    return f"{value} [{format_cell(float(low))}, {format_cell(float(high))}]"


def selected_test_lines(best: pd.Series) -> list[str]:
    """The chosen run's test metrics, once, labelled as such (95% patient-bootstrap CIs where recorded)."""
    cells = [f"{name} {with_ci(best, name)}" for name in SELECTED_TEST if name in best.index]
    return [
        "Test metrics of the selected run (reported once, never used to rank; 95% patient-bootstrap CIs):",
        "",
        "; ".join(cells),
    ]


def leaderboard_markdown(
    board: pd.DataFrame,
    notes: Sequence[str],
    comparison: pd.DataFrame | None,
    config: SelectionConfig,
    paired: Sequence[str] | None = None,
) -> str:
    """The whole ``leaderboard.md``: criterion, ranked table, selected run with its command, thresholds."""
    terms = [c for c in board.columns if c.startswith("term_")]
    shown = [c for c in (*SHOWN, *VALIDATION_SHOWN, "score", *terms, *TEST_SHOWN, "notes") if c in board.columns]
    table = board[shown].rename(columns={**VALIDATION_SHOWN, **TEST_SHOWN})
    best = board.iloc[0]
    text = [
        "# Leaderboard",
        "",
        f"`{formula(config)}`: ranked on validation films only (fpr at each run's own threshold; terms are signed "
        "and weighted). Ties: higher val AUROC, then lower val FPR, then run name. Runs missing a term or using "
        "the f1_oracle threshold rank last. The test columns are never read by the ranking.",
        "",
        *([f"- {note}" for note in notes] + [""] if notes else []),
        markdown_table(table),
        "",
        f"## Selected: {best['run']}",
        "",
        f"{best['model']} / {best['backbone']} / conditioning {best['conditioning']}"
        + (f" / {best['settings']}" if best.get("settings") else "")
        + f" / threshold {best['threshold_method']}: score {format_cell(best['score'])}. Reproduce with:",
        "",
        "```bash",
        reproduce_command(best["path"]),
        "```",
        "",
        *selected_test_lines(best),
    ]
    if paired is not None and len(paired):
        text += ["", "### Paired comparisons on the same test films (patient bootstrap, 95% CI)", ""]
        text += [f"- {line}" for line in paired]
    if comparison is not None:
        text += ["", f"### Thresholds on {best['run']} (refitted on its normal validation scores)", ""]
        text += [markdown_table(comparison), ""]
        text += ["f1_oracle uses the test labels: an upper reference, not a deployable rule."]
    return "\n".join(text) + "\n"


def write_leaderboard(
    sweep_dir: str | Path,
    board: pd.DataFrame,
    notes: Sequence[str],
    comparison: pd.DataFrame | None,
    config: SelectionConfig,
    paired: Sequence[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``leaderboard.csv`` (every column) and ``leaderboard.md`` into ``sweep_dir``; return both paths."""
    sweep_dir = Path(sweep_dir)
    csv_path, md_path = sweep_dir / "leaderboard.csv", sweep_dir / "leaderboard.md"
    board.to_csv(csv_path, index=False)
    md_path.write_text(leaderboard_markdown(board, notes, comparison, config, paired))
    if comparison is not None:
        comparison.to_csv(sweep_dir / "threshold_comparison.csv", index=False)
    return csv_path, md_path
