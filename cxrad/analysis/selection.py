"""Final model selection: rank a sweep's runs on their *validation* metrics, report the winner's test metrics.

Criterion (weights in ``conf/selection/default.yaml``), every term read from the run's validation films::

    score = w_nodule * val nodule_auroc + w_auroc * val image_auroc - w_fpr * val fpr - w_shortcut * val view_shortcut

``nodule_auroc`` is the AUROC of the smallest nodule size band with enough validation positives (the band is
named in the leaderboard; NIH has no boxed nodule under 10 mm), ``fpr`` the false-positive rate of the normal
validation films at each run's own threshold, ``view_shortcut`` the two-sided ``|normal view leakage - 0.5|``.
No test label is read to rank: the test metrics of the chosen run are reported once, with their CIs. Rules:

* **Missing terms.** A term missing from *every* run (no validation nodules, say) is dropped and the remaining
  weights are scaled up to the same total, so scores stay on one scale; a note says so. A run missing a term that
  other runs have gets a score from its remaining terms (renormalised the same way) but is ranked after every
  complete run, with a note: a partial score is not comparable.
* **Oracle thresholds.** A run whose threshold used the test labels (``f1_oracle``) has no deployable FPR; it is
  ranked after every deployable run (complete or not).
* **Ties.** Scores equal to ``tie_decimals`` decimals rank by higher validation ``image_auroc``, then lower
  validation ``fpr``, then run name.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from cxrad.analysis.sweep import load_predictions, read_overrides
from cxrad.data.metadata import EXTRA_VIEWS
from cxrad.metadata_conditioning.reference import calibration_rows
from cxrad.metrics.bootstrap import format_difference, paired_difference
from cxrad.metrics.curves import rates_at_threshold
from cxrad.threshold import Threshold, fit_threshold, per_group_threshold

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "selection" / "default.yaml"
# term -> +1 (higher is better) or -1 (lower is better)
TERM_SIGNS = {"nodule_auroc": 1.0, "image_auroc": 1.0, "fpr": -1.0, "view_shortcut": -1.0}
# term -> the validation column of the sweep table it is read from (never a test column)
TERM_COLUMNS = {
    "nodule_auroc": "val_selection_nodule_auroc",
    "image_auroc": "val_image_auroc",
    "fpr": "val_fpr",
    "view_shortcut": "val_view_shortcut",
}
DEFAULT_WEIGHTS = {"nodule_auroc": 1.0, "image_auroc": 1.0, "fpr": 0.5, "view_shortcut": 0.5}


@dataclass(frozen=True)
class SelectionConfig:
    """Weights and settings of the selection (``conf/selection/default.yaml``)."""

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    tie_decimals: int = 6
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(TERM_SIGNS))
        if unknown:
            hint = " (small_nodule_auroc is now nodule_auroc: the smallest size band with enough positives)"
            msg = f"selection.weights has unknown term(s) {unknown}; use {sorted(TERM_SIGNS)}"
            raise ValueError(msg + (hint if "small_nodule_auroc" in unknown else ""))
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

    Every term is read from its validation column (:data:`TERM_COLUMNS`).

    Returns:
        The scored copy and the sweep-wide notes (e.g. a term dropped because no run has it).
    """
    frame = sweep.copy()
    for column in TERM_COLUMNS.values():
        if column not in frame.columns:
            frame[column] = np.nan
    notes: list[str] = []
    terms = [t for t, w in weights.items() if w > 0]
    for term in list(terms):
        if frame[TERM_COLUMNS[term]].isna().all():
            terms.remove(term)
            why = _missing_reason(frame, term)
            notes.append(f"{term} is missing in every run{why}: dropped, the other weights renormalised")
    total = sum(weights[t] for t in weights if weights[t] > 0)
    values = {t: frame[TERM_COLUMNS[t]] for t in terms}
    weighted = pd.DataFrame({f"term_{t}": TERM_SIGNS[t] * weights[t] * values[t] for t in terms}, index=frame.index)
    present_weight = sum((values[t].notna() * weights[t] for t in terms), start=pd.Series(0.0, index=frame.index))
    frame = frame.join(weighted)
    frame["score"] = weighted.sum(axis=1, min_count=1) * total / present_weight.replace(0.0, np.nan)
    frame["complete"] = pd.DataFrame(values).notna().all(axis=1) if terms else False
    frame["notes"] = [_run_notes(row, terms) for _, row in frame.iterrows()]
    bands = sorted({str(b) for b in frame.get("val_nodule_band", pd.Series(dtype=object)).dropna()})
    if "nodule_auroc" in terms and len(bands) > 1:
        notes.append(f"runs' nodule terms use different size bands ({', '.join(bands)}): not comparable")
    return frame, notes


def _missing_reason(frame: pd.DataFrame, term: str) -> str:
    if term == "nodule_auroc" and "val_nodule_note" in frame.columns and frame["val_nodule_note"].notna().any():
        return f" ({frame['val_nodule_note'].dropna().iloc[0]})"
    if term != "fpr" and "val_n_abnormal" in frame.columns and (frame["val_n_abnormal"].fillna(0) == 0).all():
        return " (no abnormal validation films: use data.split.strategy=patient_random)"
    return ""


def _run_notes(row: pd.Series, terms: list[str]) -> str:
    notes = [f"missing {t}: ranked after complete runs" for t in terms if pd.isna(row[TERM_COLUMNS[t]])]
    if bool(row.get("threshold_is_oracle")):
        notes.append("f1_oracle threshold (test labels): FPR not deployable, ranked last")
    if "nodule_auroc" in terms and pd.notna(row.get("val_nodule_band")):
        notes.append(f"nodule term: {row['val_nodule_band']} ({int(row['val_nodule_n'])} validation positives)")
    return "; ".join(notes)


def rank_runs(sweep: pd.DataFrame, config: SelectionConfig) -> tuple[pd.DataFrame, list[str]]:
    """Score and sort runs (best first, ``rank`` 1..n) by the module's rules; return the board and notes."""
    frame, notes = score_runs(sweep, config.weights)
    frame["_deployable"] = ~frame["threshold_is_oracle"].fillna(False).astype(bool)
    frame["_score"] = frame["score"].round(config.tie_decimals).fillna(-np.inf)
    frame["_auroc"] = frame[TERM_COLUMNS["image_auroc"]].fillna(-np.inf)
    frame["_fpr"] = frame[TERM_COLUMNS["fpr"]].fillna(np.inf)
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
    metrics = Path(run_dir) / "metrics.json"
    if not any(o.split("=")[0].lstrip("+") == "model" for o in overrides) and metrics.is_file():
        # the job ran the default model of its day: name it, so the command means the same under a later default
        overrides.append(f"model={json.loads(metrics.read_text())['model']}")
    if any(o.startswith("experiment=") for o in overrides):
        overrides.append("hydra.mode=RUN")  # an experiment may set MULTIRUN; one job is one run
    return " ".join(["python -m cxrad.run", *(shlex.quote(o) for o in overrides)])


def _rates(label: np.ndarray, score: np.ndarray, cuts: np.ndarray, view: np.ndarray) -> dict[str, Any]:
    """Overall FPR/TPR and the FPR of each view's normals: PA and AP always, extra views where films have them."""
    fpr, tpr = rates_at_threshold(label, score, cuts)
    normal = label == 0
    present = set(view)
    rates = {"fpr": fpr, "tpr": tpr}
    for name in ("AP", "PA", *(v for v in EXTRA_VIEWS if v in present)):
        rows = normal & (view == name)
        rates[f"fpr_{name.lower()}_normals"] = rates_at_threshold(label[rows], score[rows], cuts[rows])[0]
    return rates


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
    units the run thresholded). ``fpr_ap_normals``/``fpr_pa_normals`` (and ``fpr_lateral_normals`` etc. where the films
    have extra views) show whether a rule treats views alike.

    Raises:
        FileNotFoundError: when the run has no ``val_scores.csv`` (runs before it existed): rerun it.
    """
    run_dir = Path(run_dir)
    val_path = run_dir / "val_scores.csv"
    if not val_path.is_file():
        msg = f"{val_path} does not exist; rerun {run_dir.name} with this version of cxrad to compare thresholds"
        raise FileNotFoundError(msg)
    val, test = calibration_rows(pd.read_csv(val_path)), pd.read_csv(run_dir / "predictions.csv")
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


PAIRED_METRICS = {"view_stratified_auroc": "within-view AUROC", "image_auroc": "image AUROC"}


def comparison_partners(board: pd.DataFrame) -> list[tuple[pd.Series, pd.Series]]:
    """(selected run, other) pairs worth a paired test: the runner-up, and the same model without conditioning."""
    best = board.iloc[0]
    pairs = [(best, board.iloc[1])] if len(board) > 1 else []
    if best.get("conditioning") != "none":
        same = board[
            (board["conditioning"] == "none")
            & (board["model"] == best["model"])
            & (board["backbone"] == best["backbone"])
        ]
        if len(same) and (not pairs or same.iloc[0]["run"] != pairs[0][1]["run"]):
            pairs.append((best, same.iloc[0]))
    return pairs


def paired_comparisons(board: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> list[str]:
    """Paired patient-bootstrap differences of the selected run against its partners on the same test films.

    Reported after selection, never used for it, e.g. ``film_normative (0_run) vs none (3_run): within-view AUROC
    -0.070 [-0.120, -0.020]``.
    """
    lines = []
    for best, other in comparison_partners(board):
        try:
            a, b = load_predictions(best["path"]), load_predictions(other["path"])
            parts = []
            for metric, name in PAIRED_METRICS.items():
                result = paired_difference(a, b, metric, n_boot=n_boot, seed=seed)
                parts.append(f"{name} {format_difference(result).split(': ', 1)[1]}")
        except (FileNotFoundError, ValueError, KeyError) as error:
            parts = [f"no paired comparison ({error})"]
        label = f"{best['conditioning']} ({best['run']}) vs {other['conditioning']} ({other['run']})"
        lines.append(f"{label}: " + "; ".join(parts))
    return lines
