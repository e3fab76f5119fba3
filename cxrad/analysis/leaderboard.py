"""Write a ranked sweep as ``leaderboard.csv`` and a readable ``leaderboard.md``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cxrad.analysis.selection import TERM_SIGNS, SelectionConfig, reproduce_command

SHOWN = (
    "rank",
    "run",
    "model",
    "backbone",
    "conditioning",
    "settings",
    "threshold_method",
    "small_nodule_auroc",
    "small_nodule_n",
)
SHOWN_AFTER = ("image_auroc", "fpr", "score", "tpr", "nodule_auroc", "pointing_game", "box_hit_rate", "notes")


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
    """The criterion as text, e.g. ``score = 1*small_nodule_auroc + 1*image_auroc - 0.5*fpr``."""
    parts = [f"{'+' if TERM_SIGNS[t] > 0 else '-'} {w:g}*{t}" for t, w in config.weights.items() if w > 0]
    return "score = " + " ".join(parts).lstrip("+ ")


def leaderboard_markdown(
    board: pd.DataFrame, notes: Sequence[str], comparison: pd.DataFrame | None, config: SelectionConfig
) -> str:
    """The whole ``leaderboard.md``: criterion, ranked table, selected run with its command, thresholds."""
    terms = [c for c in board.columns if c.startswith("term_")]
    columns = [c for c in (*SHOWN, *terms, *SHOWN_AFTER) if c in board.columns]
    best = board.iloc[0]
    text = [
        "# Leaderboard",
        "",
        f"`{formula(config)}` (fpr at each run's own threshold; terms below are signed and weighted). Ties: higher "
        "image_auroc, then lower fpr, then run name. Runs missing a term or using the f1_oracle threshold rank last.",
        "",
        *([f"- {note}" for note in notes] + [""] if notes else []),
        markdown_table(board[columns]),
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
    ]
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
) -> tuple[Path, Path]:
    """Write ``leaderboard.csv`` (every column) and ``leaderboard.md`` into ``sweep_dir``; return both paths."""
    sweep_dir = Path(sweep_dir)
    csv_path, md_path = sweep_dir / "leaderboard.csv", sweep_dir / "leaderboard.md"
    board.to_csv(csv_path, index=False)
    md_path.write_text(leaderboard_markdown(board, notes, comparison, config))
    if comparison is not None:
        comparison.to_csv(sweep_dir / "threshold_comparison.csv", index=False)
    return csv_path, md_path
