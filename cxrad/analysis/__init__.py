"""Compare the runs of a sweep: load them into tables, plot them, and select the final model.

Used by ``notebooks/analyze_sweep.ipynb`` and ``python -m cxrad.select``; needs only the run directories (no
W&B).
"""

from cxrad.analysis.leaderboard import write_leaderboard
from cxrad.analysis.selection import SelectionConfig, rank_runs, reproduce_command, threshold_comparison
from cxrad.analysis.sweep import (
    find_runs,
    finding_table,
    latest_sweep,
    load_predictions,
    load_sweep,
    nodule_size_table,
    subgroup_table,
)

__all__ = [
    "SelectionConfig",
    "find_runs",
    "finding_table",
    "latest_sweep",
    "load_predictions",
    "load_sweep",
    "nodule_size_table",
    "rank_runs",
    "reproduce_command",
    "subgroup_table",
    "threshold_comparison",
    "write_leaderboard",
]
