"""``python -m cxrad.select [<multirun dir>] [--config conf/selection/default.yaml]``: pick the final model.

Ranks the sweep's runs on their validation metrics (:mod:`cxrad.analysis.selection`; no test label is read),
reports the selected run's test metrics with CIs and paired comparisons with its runner-up and its unconditioned
twin, compares threshold rules on the selected run, writes ``leaderboard.csv``, ``leaderboard.md`` and
``threshold_comparison.csv`` into the multirun directory, and prints the leaderboard and the command that
reproduces the selected run.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cxrad.analysis.leaderboard import write_leaderboard
from cxrad.analysis.selection import (
    DEFAULT_CONFIG,
    SelectionConfig,
    paired_comparisons,
    rank_runs,
    threshold_comparison,
)
from cxrad.analysis.sweep import latest_sweep, load_sweep
from cxrad.console import quiet_third_party

log = logging.getLogger(__name__)


def select(sweep_dir: str | Path, config_path: str | Path = DEFAULT_CONFIG) -> str:
    """Rank, compare thresholds on the winner, write the leaderboard files; return the markdown."""
    config = SelectionConfig.load(config_path)
    board, notes = rank_runs(load_sweep(sweep_dir), config)
    comparison = None
    try:
        comparison = threshold_comparison(board.iloc[0]["path"], config.thresholds) if config.thresholds else None
    except FileNotFoundError as error:
        notes = [*notes, f"no threshold comparison: {error}"]
    paired = paired_comparisons(board)
    csv_path, md_path = write_leaderboard(sweep_dir, board, notes, comparison, config, paired)
    log.info("wrote %s and %s", csv_path, md_path)
    return md_path.read_text()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m cxrad.select", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir", type=Path, nargs="?", default=None, help="multirun dir (default: newest in outputs/multiruns)"
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="selection weights YAML")
    args = parser.parse_args(argv)
    print(select(args.sweep_dir or latest_sweep(), args.config))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_third_party()
    main()
