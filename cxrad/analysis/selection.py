"""Final model selection: rank a sweep's runs by the seed study's criterion and compare thresholds.

Criterion (weights in ``conf/selection/default.yaml``)::

    score = w_small * small_nodule_auroc + w_auroc * image_auroc - w_fpr * fpr

with ``fpr`` the false-positive rate at each run's own threshold. Rules:

* **Missing terms.** A term missing from *every* run (no small nodules in the test split, say) is dropped and
  the remaining weights are scaled up to the same total, so scores stay on one scale; a note says so. A run
  missing a term that other runs have gets a score from its remaining terms (renormalised the same way) but is
  ranked after every complete run, with a note: a partial score is not comparable.
* **Oracle thresholds.** A run whose threshold used the test labels (``f1_oracle``) has no deployable FPR; it is
  ranked after every deployable run (complete or not).
* **Ties.** Scores equal to ``tie_decimals`` decimals rank by higher ``image_auroc``, then lower ``fpr``, then
  run name.
* ``small_nodule_auroc`` on fewer than ``min_positives`` positives is used but noted as low confidence.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from cxrad.analysis.sweep import read_overrides
from cxrad.metrics.curves import rates_at_threshold
from cxrad.threshold import Threshold, fit_threshold, per_group_threshold

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "selection" / "default.yaml"
# term -> +1 (higher is better) or -1 (lower is better)
TERM_SIGNS = {"small_nodule_auroc": 1.0, "image_auroc": 1.0, "fpr": -1.0}


@dataclass(frozen=True)
class SelectionConfig:
    """Weights and settings of the selection (``conf/selection/default.yaml``)."""

    weights: dict[str, float] = field(
        default_factory=lambda: {"small_nodule_auroc": 1.0, "image_auroc": 1.0, "fpr": 0.5}
    )
    tie_decimals: int = 6
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(TERM_SIGNS))
        if unknown:
            msg = f"selection.weights has unknown term(s) {unknown}; use {sorted(TERM_SIGNS)}"
            raise ValueError(msg)
        negative = {k: v for k, v in self.weights.items() if v < 0}
        if negative or not sum(self.weights.values()) > 0:
            msg = f"selection.weights {dict(self.weights)} must be >= 0 with a positive sum (fpr is subtracted)"
            raise ValueError(msg)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CONFIG) -> SelectionConfig:
        """Read a selection YAML (see ``conf/selection/default.yaml``)."""
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        return cls(
            weights={k: float(v) for k, v in raw.get("weights", {}).items()},
            tie_decimals=int(raw.get("tie_decimals", 6)),
            thresholds=dict(raw.get("thresholds") or {}),
        )


def score_runs(sweep: pd.DataFrame, weights: Mapping[str, float]) -> tuple[pd.DataFrame, list[str]]:
    """Add ``term_<name>`` (signed weighted term), ``score``, ``complete`` and ``notes`` columns.

    Returns:
        The scored copy and the sweep-wide notes (e.g. a term dropped because no run has it).
    """
    frame = sweep.copy()
    notes: list[str] = []
    terms = [t for t, w in weights.items() if w > 0]
    for term in list(terms):
        if frame[term].isna().all():
            terms.remove(term)
            notes.append(f"{term} is missing in every run: dropped, the other weights renormalised to the same total")
    total = sum(weights[t] for t in weights if weights[t] > 0)
    weighted = pd.DataFrame({f"term_{t}": TERM_SIGNS[t] * weights[t] * frame[t] for t in terms}, index=frame.index)
    present_weight = sum((frame[t].notna() * weights[t] for t in terms), start=pd.Series(0.0, index=frame.index))
    frame = frame.join(weighted)
    frame["score"] = weighted.sum(axis=1, min_count=1) * total / present_weight.replace(0.0, np.nan)
    frame["complete"] = frame[terms].notna().all(axis=1) if terms else False
    frame["notes"] = [_run_notes(row, terms) for _, row in frame.iterrows()]
    return frame, notes


def _run_notes(row: pd.Series, terms: list[str]) -> str:
    notes = [f"missing {t}: ranked after complete runs" for t in terms if pd.isna(row[t])]
    if bool(row.get("threshold_is_oracle")):
        notes.append("f1_oracle threshold (test labels): FPR not deployable, ranked last")
    if (
        "small_nodule_auroc" in terms
        and bool(row.get("small_nodule_low_confidence"))
        and pd.notna(row.get("small_nodule_n"))
    ):
        notes.append(f"small_nodule_auroc on {int(row['small_nodule_n'])} positives: low confidence")
    return "; ".join(notes)


def rank_runs(sweep: pd.DataFrame, config: SelectionConfig) -> tuple[pd.DataFrame, list[str]]:
    """Score and sort runs (best first, ``rank`` 1..n) by the module's rules; return the board and notes."""
    frame, notes = score_runs(sweep, config.weights)
    frame["_deployable"] = ~frame["threshold_is_oracle"].fillna(False).astype(bool)
    frame["_score"] = frame["score"].round(config.tie_decimals).fillna(-np.inf)
    frame["_auroc"] = frame["image_auroc"].fillna(-np.inf)
    frame["_fpr"] = frame["fpr"].fillna(np.inf)
    order = ["_deployable", "complete", "_score", "_auroc", "_fpr", "run"]
    frame = frame.sort_values(order, ascending=[False, False, False, False, True, True], kind="mergesort")
    frame = frame.drop(columns=["_deployable", "_score", "_auroc", "_fpr"]).reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame, notes


def reproduce_command(run_dir: str | Path) -> str:
    """``python -m cxrad.run <overrides>`` re-running one job of a sweep as a single run.

    Example:
        >>> reproduce_command("/nonexistent")
        'python -m cxrad.run'
    """
    overrides = read_overrides(Path(run_dir))
    if any(o.startswith("experiment=") for o in overrides):
        overrides.append("hydra.mode=RUN")  # an experiment may set MULTIRUN; one job is one run
    return " ".join(["python -m cxrad.run", *(shlex.quote(o) for o in overrides)])


def _rates(label: np.ndarray, score: np.ndarray, cuts: np.ndarray, view: np.ndarray) -> dict[str, Any]:
    fpr, tpr = rates_at_threshold(label, score, cuts)
    normal = label == 0
    fpr_ap, _ = rates_at_threshold(
        label[normal & (view == "AP")], score[normal & (view == "AP")], cuts[normal & (view == "AP")]
    )
    fpr_pa, _ = rates_at_threshold(
        label[normal & (view == "PA")], score[normal & (view == "PA")], cuts[normal & (view == "PA")]
    )
    return {"fpr": fpr, "tpr": tpr, "fpr_ap_normals": fpr_ap, "fpr_pa_normals": fpr_pa}


def fit_method(method: str, params: Mapping[str, Any], val: pd.DataFrame, test: pd.DataFrame) -> Threshold:
    """Fit one threshold rule on the normal validation scores (``f1_oracle``: on the test labels)."""
    params = dict(params)
    if method == "per_group":
        group_by = tuple(params.pop("group_by", ("view",)))
        return per_group_threshold(val["score"], val, group_by=group_by, **params)
    return fit_threshold(
        method,
        val["score"].to_numpy(),
        test_scores=test["score"].to_numpy(),
        test_labels=test["label"].to_numpy(),
        **params,
    )


def threshold_comparison(run_dir: str | Path, methods: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """FPR/TPR on the test films of one run under each threshold rule, refitted from its saved scores.

    Uses ``predictions.csv`` (test scores, labels, views) and ``val_scores.csv`` (normal validation scores, in the
    units the run thresholded). ``fpr_ap_normals``/``fpr_pa_normals`` show whether a rule treats views alike.

    Raises:
        FileNotFoundError: when the run has no ``val_scores.csv`` (runs before it existed): rerun it.
    """
    run_dir = Path(run_dir)
    val_path = run_dir / "val_scores.csv"
    if not val_path.is_file():
        msg = f"{val_path} does not exist; rerun {run_dir.name} with this version of cxrad to compare thresholds"
        raise FileNotFoundError(msg)
    val, test = pd.read_csv(val_path), pd.read_csv(run_dir / "predictions.csv")
    label, score, view = test["label"].to_numpy(), test["score"].to_numpy(np.float64), test["view"].to_numpy()
    rows = []
    for method, params in methods.items():
        threshold = fit_method(method, params or {}, val, test)
        groups = ", ".join(f"{k} {v:.4g}" for k, v in threshold.group_values.items())
        rows.append(
            {
                "method": method,
                "threshold": f"{threshold.value:.4g}" + (f" ({groups})" if groups else ""),
                **_rates(label, score, threshold.cuts(test), view),
                "oracle": threshold.is_oracle,
            }
        )
    return pd.DataFrame(rows)
