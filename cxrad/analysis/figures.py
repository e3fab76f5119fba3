"""Figures comparing a sweep's runs: ROC overlays, subgroup/finding bars, nodule-size curves, heatmap grids.

Each function takes the table of :func:`cxrad.analysis.sweep.load_sweep`, returns a matplotlib
:class:`~matplotlib.figure.Figure` (no pyplot state) and saves it when given a path.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cxrad.analysis.sweep import finding_table, load_predictions, nodule_size_table, subgroup_table
from cxrad.metrics.curves import auroc, has_both_classes, roc_points
from cxrad.report.plots import save_figure


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_roc_overlay(sweep: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Every run's test ROC curve (from its ``predictions.csv``) on one axis, AUROC in the legend."""
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    for run, run_dir in zip(sweep["run"], sweep["path"], strict=True):
        predictions = load_predictions(run_dir)
        labels, scores = predictions["label"].to_numpy(), predictions["score"].to_numpy(np.float64)
        if has_both_classes(labels):
            fpr, tpr, _ = roc_points(labels, scores)
            ax.plot(fpr, tpr, lw=1.4, label=f"{run}: {auroc(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="Test ROC of every run (legend: AUROC)")
    ax.legend(fontsize=7, loc="lower right")
    return _finish(fig, path)


def plot_grouped_bars(table: pd.DataFrame, category: str, value: str, title: str, path: str | Path | None) -> Figure:
    """Bars of ``value`` per ``category`` (x) with one bar per run; missing values leave a gap."""
    pivot = table.pivot_table(index=category, columns="run", values=value, aggfunc="first", sort=False)
    fig = Figure(figsize=(max(6.0, 0.9 * len(pivot) * max(1, pivot.shape[1]) / 3 + 3), 4.5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, pivot.shape[1])
    positions = np.arange(len(pivot))
    for offset, run in enumerate(pivot.columns):
        ax.bar(positions + offset * width - 0.4 + width / 2, pivot[run].to_numpy(np.float64), width, label=run)
    ax.set_xticks(positions, [str(name) for name in pivot.index])
    ax.set(ylabel=value, title=title)
    if value in ("auroc", "aupr"):
        ax.axhline(0.5, color="grey", ls="--", lw=1)
        ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncols=2)
    return _finish(fig, path)


def plot_subgroup_bars(
    sweep: pd.DataFrame, attribute: str = "view", metric: str = "auroc", path: str | Path | None = None
) -> Figure:
    """``metric`` (auroc, fpr, tpr, ...) per group of ``attribute`` (view, sex, age_band) for every run."""
    table = subgroup_table(sweep)
    table = table[(table["attribute"] == attribute) & (table["n"] > 0)]
    return plot_grouped_bars(table, "group", metric, f"{metric} by {attribute}", path)


def plot_finding_bars(sweep: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """AUROC of each finding against the normals, for every run."""
    return plot_grouped_bars(finding_table(sweep), "finding", "auroc", "AUROC per finding (vs normals)", path)


def plot_nodule_size_curves(sweep: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Nodule AUROC by size band per run; hollow markers are low-confidence values (few positives)."""
    table = nodule_size_table(sweep)
    bands = list(dict.fromkeys(table["size_band"])) if len(table) else []
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for run, rows in table.groupby("run", sort=False) if len(table) else []:
        x = rows["size_band"].map(bands.index).to_numpy()
        line = ax.plot(x, rows["auroc"].astype(float), lw=1.4, label=run)[0]
        low = rows["low_confidence"].astype(bool).to_numpy()
        y = rows["auroc"].astype(float).to_numpy()
        color = line.get_color()
        ax.plot(x[~low], y[~low], "o", color=color, ms=7)
        ax.plot(x[low], y[low], "o", color=color, mfc="none", ms=7)
    ax.set_xticks(range(len(bands)), [_band_label(table[table["size_band"] == band]) for band in bands])
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set(ylim=(0, 1), xlabel="nodule size", ylabel="AUROC vs normals", title="Nodule AUROC by size (hollow: low n)")
    ax.legend(fontsize=7)
    return _finish(fig, path)


def _band_label(rows: pd.DataFrame) -> str:
    """``'<10 mm\n(n=5)'``, or ``(n=3-5)`` when runs saw different numbers of positives."""
    low, high = int(rows["n_positive"].min()), int(rows["n_positive"].max())
    return f"{rows['size_band'].iloc[0]}\n(n={low}{'' if low == high else f'-{high}'})"


def plot_heatmap_grids(sweep: pd.DataFrame, max_runs: int = 4, path: str | Path | None = None) -> Figure:
    """The first ``max_runs`` runs' ``heatmaps/grid.png`` (top- and bottom-scoring films), one row each."""
    grids = [(run, Path(p) / "heatmaps" / "grid.png") for run, p in zip(sweep["run"], sweep["path"], strict=True)]
    grids = [(run, grid) for run, grid in grids if grid.is_file()][:max_runs]
    if not grids:
        msg = "no run of the sweep has heatmaps/grid.png; set heatmap_top_k > 0 and use a model with anomaly maps"
        raise FileNotFoundError(msg)
    fig = Figure(figsize=(10, 10 * len(grids)), layout="constrained")
    for ax, (run, grid) in zip(np.atleast_1d(fig.subplots(len(grids), 1)), grids, strict=True):
        ax.imshow(mpimg.imread(grid))
        ax.set_title(run, fontsize=10)
        ax.set_axis_off()
    return _finish(fig, path)
