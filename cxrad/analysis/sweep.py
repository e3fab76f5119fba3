"""Load every run of a sweep (a Hydra multirun directory) into tables.

A run is a directory holding ``metrics.json``; its config choices come from ``metrics.json`` and its Hydra
overrides from ``.hydra/overrides.yaml``. Nested metrics become flat columns (``small_nodule_auroc`` is the
AUROC, ``small_nodule_n`` its positive count, ...), so one row per run compares directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

# Flat column -> path into metrics.json.
COLUMNS: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "backbone": ("backbone",),
    "conditioning": ("metadata_conditioning",),
    "threshold_method": ("threshold_method",),
    "threshold_is_oracle": ("threshold_is_oracle",),
    "data": ("data",),
    "image_auroc": ("image_auroc",),
    "image_aupr": ("image_aupr",),
    "fpr": ("fpr",),
    "tpr": ("tpr",),
    "tpr_at_fpr_0.05": ("tpr_at_fpr_0.05",),
    "small_nodule_auroc": ("small_nodule_auroc", "auroc"),
    "small_nodule_n": ("small_nodule_auroc", "n_positive"),
    "small_nodule_low_confidence": ("small_nodule_auroc", "low_confidence"),
    "small_nodule_max_mm": ("small_nodule_auroc", "max_mm"),
    "nodule_auroc": ("nodule_auroc", "auroc"),
    "nodule_n": ("nodule_auroc", "n_positive"),
    "nodule_only_auroc": ("nodule_only_auroc", "auroc"),
    "pointing_game": ("pointing_game", "rate"),
    "box_hit_rate": ("box_hit_rate", "rate"),
    "pixel_auroc": ("pixel_auroc", "auroc"),
    "view_stratified_auroc": ("view_stratified_auroc",),
    "normal_view_leakage_auroc": ("normal_view_leakage_auroc",),
    "fpr_gap_ap_minus_pa": ("fpr_gap_ap_minus_pa",),
    "n_test": ("n_test",),
    "view_shortcut": ("view_shortcut",),
    "val_image_auroc": ("val_image_auroc",),
    "val_view_stratified_auroc": ("val_view_stratified_auroc",),
    "val_view_shortcut": ("val_view_shortcut",),
    "val_fpr": ("val_fpr",),
    "val_tpr": ("val_tpr",),
    "val_n_normal": ("val_n_test_normal",),
    "val_n_abnormal": ("val_n_test_abnormal",),
    "val_selection_nodule_auroc": ("val", "selection_nodule_auroc", "auroc"),
    "val_nodule_band": ("val", "selection_nodule_auroc", "band"),
    "val_nodule_n": ("val", "selection_nodule_auroc", "n_positive"),
    "val_nodule_note": ("val", "selection_nodule_auroc", "note"),
    "fit_seconds": ("fit_seconds",),
    "test_seconds": ("test_seconds",),
}

# Test metrics with a patient-bootstrap CI in metrics.json ("ci"): <name>_low / <name>_high columns.
CI_METRICS = ("image_auroc", "view_stratified_auroc", "view_shortcut", "fpr", "tpr", "nodule_auroc")
COLUMNS.update({f"{name}_{end}": ("ci", name, end) for name in CI_METRICS for end in ("low", "high")})


def lookup(metrics: dict[str, Any], path: tuple[str, ...]) -> Any:
    """``metrics[path[0]][path[1]]...`` or None when any step is missing."""
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _job_order(path: Path) -> tuple[int, str]:
    match = re.match(r"(\d+)_", path.name)
    return (int(match.group(1)) if match else 10**9, path.name)


def find_runs(sweep_dir: str | Path) -> list[Path]:
    """Run directories (holding ``metrics.json``) directly below ``sweep_dir``, in job order.

    Raises:
        FileNotFoundError: when the directory is missing or holds no finished run.
    """
    root = Path(sweep_dir).expanduser()
    if not root.is_dir():
        msg = f"sweep directory {root} does not exist; pass a multirun dir such as outputs/multiruns/<time>"
        raise FileNotFoundError(msg)
    runs = sorted((p.parent for p in root.glob("*/metrics.json")), key=_job_order)
    if not runs:
        msg = f"no finished run (*/metrics.json) in {root}; run a sweep first: python -m cxrad.run -m ..."
        raise FileNotFoundError(msg)
    return runs


def latest_sweep(root: str | Path = "outputs/multiruns") -> Path:
    """The newest multirun directory below ``root`` (names are timestamps), for a notebook's default.

    Raises:
        FileNotFoundError: when ``root`` holds no sweep.
    """
    sweeps = sorted(p for p in Path(root).glob("*") if p.is_dir() and any(p.glob("*/metrics.json")))
    if not sweeps:
        msg = f"no sweep with finished runs in {root}; run one (python -m cxrad.run -m experiment=research_sweep)"
        raise FileNotFoundError(msg)
    return sweeps[-1]


def read_overrides(run_dir: Path) -> list[str]:
    """The run's command-line overrides from ``.hydra/overrides.yaml`` (empty when absent)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    return [str(item) for item in yaml.safe_load(path.read_text()) or []] if path.is_file() else []


def load_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


# Overrides with a column of their own (model, backbone, conditioning, threshold_method): not repeated in ``settings``.
OWN_COLUMNS = ("model", "backbone", "metadata_conditioning", "threshold", "threshold.method")


def varied_settings(overrides: Sequence[Sequence[str]]) -> list[str]:
    """Per run (``overrides``: each run's command-line overrides), those whose values differ between the runs.

    Runs that differ only in, say, ``metadata_conditioning.map_units`` or ``model.detector.coreset_sampling_ratio``
    would otherwise look the same in the leaderboard. Overrides with a column of their own (:data:`OWN_COLUMNS`)
    and overrides every run shares are left out; a run without a varied key shows nothing for it.
    """
    parsed = []
    for items in overrides:
        run = {}
        for item in items:
            key, _, value = item.partition("=")
            # +key / ++key add or force the same setting as key=; ~key deletes it and stays marked as a deletion
            run[key.lstrip("+")] = value
        parsed.append(run)
    keys = sorted({key for run in parsed for key in run} - set(OWN_COLUMNS))
    varied = [key for key in keys if len({run.get(key) for run in parsed}) > 1]
    return [
        " ".join(key if key.startswith("~") and not run[key] else f"{key}={run[key]}" for key in varied if key in run)
        for run in parsed
    ]


def load_sweep(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per run: ``run`` (directory name), ``path``, ``overrides`` and the :data:`COLUMNS` metrics, plus
    ``settings`` (:func:`varied_settings`) when the runs differ in overrides without a column of their own."""
    rows, overrides = [], []
    for run_dir in find_runs(sweep_dir):
        metrics = load_metrics(run_dir)
        overrides.append(read_overrides(run_dir))
        row = {"run": run_dir.name, "path": str(run_dir), "overrides": " ".join(overrides[-1])}
        row.update({column: lookup(metrics, path) for column, path in COLUMNS.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    settings = varied_settings(overrides)
    if any(settings):
        frame["settings"] = settings
    text = ("model", "backbone", "conditioning", "threshold_method", "data", "val_nodule_band", "val_nodule_note")
    numeric = [c for c in COLUMNS if c not in text]
    for column in numeric:
        if column not in ("threshold_is_oracle", "small_nodule_low_confidence"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def load_predictions(run_dir: str | Path) -> pd.DataFrame:
    """A run's ``predictions.csv``."""
    path = Path(run_dir) / "predictions.csv"
    if not path.is_file():
        msg = f"{path} does not exist; the run did not finish"
        raise FileNotFoundError(msg)
    return pd.read_csv(path)


def _long_table(sweep: pd.DataFrame, rows_of: Callable[[str], list[dict[str, Any]]]) -> pd.DataFrame:
    rows = [{"run": run, **row} for run, path in zip(sweep["run"], sweep["path"], strict=True) for row in rows_of(path)]
    return pd.DataFrame(rows)


def subgroup_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Long table ``run, attribute, group, auroc, aupr, fpr, tpr, n, ...`` of every run's subgroup metrics."""

    def rows(path: str) -> list[dict[str, Any]]:
        groups = load_metrics(Path(path)).get("subgroups") or {}
        return [{"attribute": a, "group": g, **values} for a, by in groups.items() for g, values in by.items()]

    return _long_table(sweep, rows)


def finding_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Long table ``run, finding, auroc, n_positive`` (each finding against the normals)."""

    def rows(path: str) -> list[dict[str, Any]]:
        findings = load_metrics(Path(path)).get("per_finding_auroc") or {}
        return [{"finding": name, **values} for name, values in findings.items()]

    return _long_table(sweep, rows)


def nodule_size_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Long table ``run, size_band, auroc, n_positive, n_normal, low_confidence`` in band order."""

    def rows(path: str) -> list[dict[str, Any]]:
        bands = load_metrics(Path(path)).get("nodule_auroc_by_size") or {}
        return [{"size_band": name, **values} for name, values in bands.items() if isinstance(values, dict)]

    return _long_table(sweep, rows)
