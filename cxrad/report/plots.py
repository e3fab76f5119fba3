"""Figures for a run report: ROC/PR curves split by view, score distributions, heat-map overlays.

Curves and histograms use :class:`matplotlib.figure.Figure` objects (Agg canvas, no pyplot global state), so
they are safe in worker processes and tests. Overlays are drawn with OpenCV in :mod:`cxrad.report.overlay`
(re-exported here) and laid out by :func:`save_heatmap_grid`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from cxrad.metrics.curves import aupr, auroc, has_both_classes, rates_at_threshold, roc_points
from cxrad.metrics.image import audited_views, check_predictions, view_shortcut_metrics
from cxrad.report.overlay import overlay_heatmap, panel_caption
from cxrad.threshold import Threshold

__all__ = [
    "overlay_heatmap",
    "panel_caption",
    "plot_pr",
    "plot_roc",
    "plot_score_distribution",
    "save_heatmap_grid",
]

DPI = 150
VIEW_COLORS = {"all": "black", "PA": "tab:blue", "AP": "tab:orange", "LATERAL": "tab:green", "AP_SUPINE": "tab:purple"}
POINT_STYLE = {"marker": "o", "ls": "none", "ms": 9, "mfc": "none", "mew": 2}
# normals filled and solid, abnormals as dashed outlines, so the four groups stay apart where they overlap
HIST_STYLES = {
    "normal": {"histtype": "stepfilled", "alpha": 0.3},
    "abnormal": {"histtype": "step", "ls": "--", "lw": 2},
}


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as an image (format from the suffix), creating parent folders; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def view_groups(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """All images, then PA only and AP only (and each extra view the films have): the curves of every curve plot."""
    return [("all", frame), *((view, frame[frame["view"] == view]) for view in audited_views(frame))]


def threshold_label(threshold: Threshold) -> str:
    """Legend text of a threshold, e.g. ``'percentile cut 1.23'`` or ``'f1_oracle cut 1.23 (ORACLE)'``."""
    return f"{threshold.method} cut {threshold.value:.3g}" + (" (ORACLE)" if threshold.is_oracle else "")


def plot_roc(
    predictions: pd.DataFrame, path: str | Path, title: str = "ROC", *, threshold: Threshold | None = None
) -> Path:
    """ROC curves of all images and of PA and AP films alone, AUROC in the legend, the cut marked.

    Args:
        predictions: Table with ``label``, ``score``, ``view`` and the other metric columns.
        path: Output image path (``.png``).
        title: Figure title.
        threshold: When given, each curve's operating point at ``score >= threshold.value`` is marked.

    Returns:
        The written path.
    """
    frame = check_predictions(predictions)
    fig = Figure(figsize=(6.5, 6.5))
    ax = fig.subplots()
    for name, rows in view_groups(frame):
        labels, scores = rows["label"].to_numpy(), rows["score"].to_numpy()
        if not has_both_classes(labels):
            ax.plot([], [], color=VIEW_COLORS[name], label=f"{name}: AUROC n/a, one class (n={len(rows)})")
            continue
        fpr, tpr, _ = roc_points(labels, scores)
        legend = f"{name}: AUROC {auroc(labels, scores):.3f} (n={len(rows)})"
        ax.plot(fpr, tpr, color=VIEW_COLORS[name], lw=2.0 if name == "all" else 1.3, label=legend)
        if threshold is not None:
            point_fpr, point_tpr = rates_at_threshold(labels, scores, threshold.cuts(rows))
            ax.plot(point_fpr, point_tpr, **POINT_STYLE, mec=VIEW_COLORS[name])
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    if threshold is not None:
        ax.plot([], [], **POINT_STYLE, mec="grey", label=f"operating point: {threshold_label(threshold)}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title=title, aspect="equal")
    ax.set_xlabel("false-positive rate (normal films flagged)")
    ax.set_ylabel("true-positive rate (abnormal films flagged)")
    finish_axes(ax, legend_loc="lower right")
    return save_figure(fig, path)


def plot_pr(
    predictions: pd.DataFrame,
    path: str | Path,
    title: str = "Precision-recall",
    *,
    threshold: Threshold | None = None,
) -> Path:
    """Precision-recall curves of all images and of PA and AP films alone, average precision in the legend.

    Each curve's prevalence (the precision of flagging everything) is drawn as a dotted line of its colour.

    Args:
        predictions: Table with ``label``, ``score``, ``view`` and the other metric columns.
        path: Output image path (``.png``).
        title: Figure title.
        threshold: When given, each curve's operating point is marked.

    Returns:
        The written path.
    """
    frame = check_predictions(predictions)
    fig = Figure(figsize=(6.5, 6.5))
    ax = fig.subplots()
    for name, rows in view_groups(frame):
        labels, scores = rows["label"].to_numpy(), rows["score"].to_numpy()
        if not has_both_classes(labels):
            ax.plot([], [], color=VIEW_COLORS[name], label=f"{name}: AP n/a, one class (n={len(rows)})")
            continue
        precision, recall, _ = precision_recall_curve(labels, scores)
        legend = f"{name}: AP {aupr(labels, scores):.3f} (n={len(rows)})"
        ax.plot(recall, precision, color=VIEW_COLORS[name], lw=2.0 if name == "all" else 1.3, label=legend)
        ax.axhline(labels.mean(), color=VIEW_COLORS[name], ls=":", lw=1)
        if threshold is not None:
            flagged = scores >= threshold.cuts(rows)
            if flagged.any():  # precision is undefined when nothing is flagged
                point = (flagged[labels == 1].mean(), labels[flagged].mean())
                ax.plot(*point, **POINT_STYLE, mec=VIEW_COLORS[name])
    if threshold is not None:
        ax.plot([], [], **POINT_STYLE, mec="grey", label=f"operating point: {threshold_label(threshold)}")
    ax.plot([], [], ls=":", color="grey", label="prevalence (flag everything)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title=title, aspect="equal")
    ax.set_xlabel("recall (abnormal films flagged)")
    ax.set_ylabel("precision (flagged films that are abnormal)")
    finish_axes(ax, legend_loc="lower left")
    return save_figure(fig, path)


def finish_axes(ax: Axes, legend_loc: str) -> None:
    """Light grid and a small legend."""
    ax.grid(alpha=0.3)
    ax.legend(loc=legend_loc, fontsize=8, framealpha=0.9)


def plot_score_distribution(
    predictions: pd.DataFrame, threshold: Threshold, path: str | Path, title: str = "Anomaly scores"
) -> Path:
    """Score histograms of PA/AP normal/abnormal films on shared bins, the cut as a vertical line.

    Each group is normalised to unit area so small groups stay visible. The title carries the normal-film
    view-leakage AUROC (0.5 = no view shortcut) and the false-positive rates of AP and PA normals at the cut.

    Args:
        predictions: Table with ``label``, ``score``, ``view`` and the other metric columns.
        threshold: The cut drawn and used for the FPRs.
        path: Output image path (``.png``).
        title: First title line.

    Returns:
        The written path.
    """
    frame = check_predictions(predictions)
    edges = np.histogram_bin_edges(frame["score"].to_numpy(), bins=min(50, max(10, len(frame) // 10)))
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    for view, label in ((v, lab) for lab in (0, 1) for v in audited_views(frame)):
        scores = frame.loc[(frame["label"] == label) & (frame["view"] == view), "score"].to_numpy()
        if scores.size == 0:
            continue
        kind = "normal" if label == 0 else "abnormal"
        style = HIST_STYLES[kind]
        ax.hist(
            scores,
            bins=edges,
            density=True,
            color=VIEW_COLORS[view],
            label=f"{view} {kind} (n={scores.size})",
            **style,
        )
    ax.axvline(threshold.value, color="red", lw=2, label=threshold_label(threshold))
    shortcut = view_shortcut_metrics(frame, threshold.cuts(frame))
    ax.set_title(f"{title}\n{shortcut_summary(shortcut)}", fontsize=10)
    ax.set_xlabel("raw anomaly score")
    ax.set_ylabel("density (each group normalised)")
    finish_axes(ax, legend_loc="upper right")
    return save_figure(fig, path)


def shortcut_summary(shortcut: dict[str, float | None]) -> str:
    """One line: leakage AUROC and the FPRs of AP and PA normals at the cut."""

    def show(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    leakage = show(shortcut["normal_view_leakage_auroc"])
    ap_fpr, pa_fpr = show(shortcut["fpr_ap_normals"]), show(shortcut["fpr_pa_normals"])
    return (
        f"normal AP-vs-PA leakage AUROC {leakage} (0.5 = no view shortcut)\n"
        f"FPR at cut: AP normals {ap_fpr}, PA normals {pa_fpr}"
    )


def save_heatmap_grid(
    panels: Sequence[np.ndarray],
    captions: Sequence[str] | None,
    path: str | Path,
    ncols: int = 4,
    *,
    colormap_name: str | None = "jet",
) -> Path:
    """Lay out overlay panels in a grid with optional titles and a low-to-high colour key; save it.

    Args:
        panels: RGB uint8 arrays, e.g. from :func:`overlay_heatmap`.
        captions: One title per panel, or None (the overlays carry their own captions).
        path: Output image path (``.png``).
        ncols: Panels per row.
        colormap_name: Matplotlib name of the overlays' colormap for the colour key (``"jet"`` matches
            OpenCV's default JET, ``"inferno"`` its INFERNO); None draws no key.

    Returns:
        The written path.

    Raises:
        ValueError: If there are no panels or the caption count differs from the panel count.
    """
    if not panels:
        msg = "no panels to save; pass at least one overlay from overlay_heatmap"
        raise ValueError(msg)
    if captions is not None and len(captions) != len(panels):
        msg = f"{len(captions)} captions for {len(panels)} panels; pass one per panel or None"
        raise ValueError(msg)
    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    aspect = panels[0].shape[0] / panels[0].shape[1]
    fig = Figure(figsize=(4.2 * ncols, 4.2 * aspect * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for index, ax in enumerate(axes):
        ax.set_axis_off()
        if index < len(panels):
            ax.imshow(panels[index])
            if captions is not None:
                ax.set_title(captions[index], fontsize=9)
    if colormap_name is not None:
        key = fig.colorbar(
            ScalarMappable(cmap=colormap_name), ax=axes.tolist(), orientation="horizontal", fraction=0.03
        )
        key.set_ticks([0, 1], labels=["low", "high (per-image scale)"])
    return save_figure(fig, path)
