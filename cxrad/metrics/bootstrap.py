"""Patient-level (cluster) bootstrap confidence intervals of the image metrics, and paired comparisons of runs.

Films of one patient are not independent (the same chest, often the same scanner and the same disease), so the
resampling unit is the patient: a replicate draws ``n_patients`` patients with replacement and keeps every film
of each drawn patient as many times as the patient was drawn. That is the same as giving each film the
multiplicity of its patient, so a replicate is a weight vector over the films and every statistic is computed as
a *weighted* statistic, for a whole ``(B, n_films)`` block of replicates at once.

Why hand-written: ``scipy.stats.bootstrap`` resamples observations, not clusters, and would call the metric
(sklearn's ``roc_auc_score``) once per replicate, about a second per metric for 10,000 films x 1,000 replicates
and seven metrics. The weighted AUROC below sorts the scores once and costs ``O(B * N)`` with cumulative sums.

Intervals are percentile intervals of the valid (non-NaN) replicates; a replicate is invalid when it lacks a
class the metric needs (e.g. no AP normal film drawn). Point estimates are those of
:func:`cxrad.metrics.image.view_shortcut_metrics`, :func:`cxrad.metrics.curves.auroc` and
:func:`cxrad.metrics.nodules.compute_nodule_metrics` on the unweighted films.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cxrad.metrics.curves import auroc, rates_at_threshold
from cxrad.metrics.image import audited_views, view_shortcut_metrics
from cxrad.metrics.nodules import NODULE, findings_of, positive_vs_normal

METRICS = (
    "image_auroc",
    "view_stratified_auroc",
    "normal_view_leakage_auroc",
    "view_shortcut",
    "fpr",
    "tpr",
    "nodule_auroc",
)
NEEDS_CUTS = ("fpr", "tpr")
REQUIRED_COLUMNS = ("label", "score", "view", "finding_labels")
PATIENT_COLUMN = "patient_id"
_CHUNK_ELEMENTS = 2_000_000  # films x replicates per block: 16 MB of float64 weights (a few blocks alive at once)


@dataclass(frozen=True)
class AurocPlan:
    """The score order of one AUROC, computed once and applied to any number of weight vectors.

    Attributes:
        columns: Film indices of the positive and negative films, in ascending score order.
        positive: 1.0 where ``columns`` is a positive film, 0.0 where negative.
        starts: Position in ``columns`` of the first film of each group of tied scores.
    """

    columns: np.ndarray
    positive: np.ndarray
    starts: np.ndarray

    @classmethod
    def build(cls, scores: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> AurocPlan:
        """Plan of the AUROC of ``scores`` separating the ``positive`` films from the ``negative`` ones."""
        rows = np.flatnonzero(positive | negative)
        columns = rows[np.argsort(scores[rows], kind="stable")]
        ordered = scores[columns]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if columns.size else columns
        return cls(columns, positive[columns].astype(np.float64), starts)

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """Weighted AUROC of each row of ``weights`` (``(B, n_films)``); NaN where a class has no weight."""
        if not self.columns.size:
            return np.full(weights.shape[0], np.nan)
        w_pos = weights[:, self.columns] * self.positive
        w_neg = weights[:, self.columns] - w_pos
        if self.starts.size < self.columns.size:  # ties: pool each group of equal scores
            w_pos = np.add.reduceat(w_pos, self.starts, axis=1)
            w_neg = np.add.reduceat(w_neg, self.starts, axis=1)
        below = np.cumsum(w_neg, axis=1) - w_neg  # negative weight strictly below each score
        pairs = (w_pos * (below + 0.5 * w_neg)).sum(axis=1)
        total = w_pos.sum(axis=1) * w_neg.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, pairs / total, np.nan)


def weighted_auroc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC with film weights: ``sum w_i w_j ([s_i > s_j] + [s_i == s_j] / 2) / (W_pos W_neg)`` over pos i, neg j.

    Integer weights give the AUROC of the films repeated that many times; unit weights give :func:`auroc`.

    Args:
        labels: ``(N,)`` 0/1 labels.
        scores: ``(N,)`` scores, higher = more anomalous.
        weights: ``(N,)`` or ``(B, N)`` non-negative weights, one row per replicate.

    Returns:
        ``(B,)`` AUROCs (a 0-d array for 1-D weights); NaN where a class has zero total weight.

    Example:
        >>> float(weighted_auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]), np.ones(4)))
        0.75
        >>> weighted_auroc(np.array([0, 0, 1]), np.array([0.1, 0.5, 0.5]), np.array([[1, 1, 1], [0, 2, 1]]))
        array([0.75, 0.5 ])
    """
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    result = AurocPlan.build(s, y == 1, y == 0)(np.atleast_2d(w))
    return result if w.ndim == 2 else result[0]


def patient_codes(frame: pd.DataFrame) -> np.ndarray:
    """Integer patient of each film, ``0..n_patients-1``; a film without ``patient_id`` is its own patient.

    Example:
        >>> patient_codes(pd.DataFrame({"patient_id": ["p1", None, "p1", "p2", ""]})).tolist()
        [0, 2, 0, 1, 3]
    """
    if PATIENT_COLUMN not in frame.columns:
        return np.arange(len(frame))
    ids = frame[PATIENT_COLUMN]
    missing = (ids.isna() | (ids.astype(str).str.strip() == "")).to_numpy()
    codes, uniques = pd.factorize(ids.where(~missing, None).astype(object))
    codes = codes.astype(np.int64)
    codes[missing] = len(uniques) + np.arange(int(missing.sum()))
    return codes


def weight_blocks(codes: np.ndarray, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Film weights of ``n_boot`` patient resamples, in ``(b, n_films)`` blocks small enough for memory.

    Row ``r`` draws a multinomial count of each patient (``n_patients`` draws, equal probabilities) and gives
    every film its patient's count. Blocks are consecutive draws of one stream, so the replicates do not depend
    on the block size.
    """
    n_patients = int(codes.max()) + 1
    block = max(1, _CHUNK_ELEMENTS // max(codes.size, n_patients))
    probabilities = np.full(n_patients, 1.0 / n_patients)
    for start in range(0, n_boot, block):
        counts = rng.multinomial(n_patients, probabilities, size=min(block, n_boot - start))
        yield counts[:, codes].astype(np.float64)


class WeightedMetrics:
    """Every bootstrap metric of one predictions table, as functions of a ``(B, n_films)`` weight block."""

    def __init__(self, frame: pd.DataFrame, cuts: np.ndarray | None) -> None:
        labels = frame["label"].to_numpy()
        scores = frame["score"].to_numpy(np.float64)
        views = frame["view"].to_numpy()
        normal, abnormal = labels == 0, labels == 1
        pa, ap = views == "PA", views == "AP"
        self.plans = {
            "image": AurocPlan.build(scores, abnormal, normal),
            "pa": AurocPlan.build(scores, abnormal & pa, normal & pa),
            "ap": AurocPlan.build(scores, abnormal & ap, normal & ap),
            "leakage": AurocPlan.build(scores, normal & ap, normal & pa),
            "nodule": AurocPlan.build(scores, nodule_mask(frame), normal),
        }
        # Extra views (LATERAL, ...): the stratified AUROC averages every audited view, and the view shortcut is
        # the largest one-vs-rest leakage, as in view_shortcut_metrics; PA/AP data keeps the two-view formulas.
        self.extra_views = audited_views(frame)[2:]
        audited = normal & np.isin(views, audited_views(frame))
        for view in self.extra_views if self.extra_views else ():
            rows = views == view
            self.plans[f"within_{view}"] = AurocPlan.build(scores, abnormal & rows, normal & rows)
        for view in audited_views(frame) if self.extra_views else ():
            rows = views == view
            self.plans[f"rest_{view}"] = AurocPlan.build(scores, normal & rows, audited & ~rows)
        flagged = None if cuts is None else scores >= cuts
        self.rates = {
            name: None if flagged is None else (group.astype(np.float64), (group & flagged).astype(np.float64))
            for name, group in (("fpr", normal), ("tpr", abnormal))
        }

    def _rate(self, name: str, weights: np.ndarray) -> np.ndarray:
        if self.rates[name] is None:
            msg = f"metric {name!r} needs the cuts of the films (cuts=None was given)"
            raise ValueError(msg)
        group, flagged = self.rates[name]
        with np.errstate(divide="ignore", invalid="ignore"):
            return (weights @ flagged) / (weights @ group)

    def __call__(self, weights: np.ndarray, names: tuple[str, ...] = METRICS) -> dict[str, np.ndarray]:
        """``{metric: (B,) replicates}`` for the requested metrics (each AUROC computed at most once)."""
        done: dict[str, np.ndarray] = {}

        def plan(key: str) -> np.ndarray:
            if key not in done:
                done[key] = self.plans[key](weights)
            return done[key]

        def stratified() -> np.ndarray:
            within = [plan("pa"), plan("ap"), *(plan(f"within_{v}") for v in self.extra_views)]
            return sum(within) / len(within)

        def shortcut() -> np.ndarray:
            if not self.extra_views:
                return np.abs(plan("leakage") - 0.5)
            views = ("PA", "AP", *self.extra_views)
            return np.max(np.stack([np.abs(plan(f"rest_{v}") - 0.5) for v in views]), axis=0)

        formulas: dict[str, Callable[[], np.ndarray]] = {
            "image_auroc": lambda: plan("image"),
            "view_stratified_auroc": stratified,
            "normal_view_leakage_auroc": lambda: plan("leakage"),
            "view_shortcut": shortcut,
            "fpr": lambda: self._rate("fpr", weights),
            "tpr": lambda: self._rate("tpr", weights),
            "nodule_auroc": lambda: plan("nodule"),
        }
        return {name: formulas[name]() for name in names}


def nodule_mask(frame: pd.DataFrame) -> np.ndarray:
    """Nodule films as :func:`cxrad.metrics.nodules.compute_nodule_metrics` counts them: label 1 with a Nodule."""
    has_nodule = frame["finding_labels"].map(lambda text: NODULE in findings_of(text)).to_numpy(dtype=bool)
    return (frame["label"].to_numpy() == 1) & has_nodule


def point_estimates(frame: pd.DataFrame, cuts: np.ndarray | None) -> dict[str, float | None]:
    """The metrics on the unweighted films, from the existing metric functions (fpr/tpr None without cuts)."""
    labels, scores = frame["label"].to_numpy(), frame["score"].to_numpy(np.float64)
    view = view_shortcut_metrics(frame, np.inf if cuts is None else cuts)
    fpr, tpr = (None, None) if cuts is None else rates_at_threshold(labels, scores, cuts)
    return {
        "image_auroc": auroc(labels, scores),
        "view_stratified_auroc": view["view_stratified_auroc"],
        "normal_view_leakage_auroc": view["normal_view_leakage_auroc"],
        "view_shortcut": view["view_shortcut"],
        "fpr": fpr,
        "tpr": tpr,
        "nodule_auroc": positive_vs_normal(frame, nodule_mask(frame), 1)["auroc"],
    }


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """Percentile interval of the non-NaN replicates: ``{"low", "high", "n_valid"}`` (None bounds if none valid).

    Example:
        >>> percentile_interval(np.r_[np.arange(101.0), np.nan], 0.9)
        {'low': 5.0, 'high': 95.0, 'n_valid': 101}
    """
    valid = replicates[~np.isnan(replicates)]
    if not valid.size:
        return {"low": None, "high": None, "n_valid": 0}
    tail = round(50.0 * (1.0 - confidence), 10)  # percent in each tail; rounding keeps 0.9 -> 5.0, not 4.999...
    low, high = np.percentile(valid, [tail, 100.0 - tail])
    return {"low": float(low), "high": float(high), "n_valid": int(valid.size)}


def _replicates(
    statistic: Callable[[np.ndarray], dict[str, np.ndarray]], codes: np.ndarray, n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """``{metric: (n_boot,) replicates}`` of ``statistic`` over patient resamples (a private Generator)."""
    rng = np.random.default_rng(seed)
    blocks = [statistic(weights) for weights in weight_blocks(codes, n_boot, rng)]
    return {name: np.concatenate([block[name] for block in blocks]) for name in blocks[0]}


def _check(frame: pd.DataFrame, n_boot: int, confidence: float) -> pd.DataFrame:
    """Validate the table and the bootstrap settings; return the table with a fresh index and integer labels."""
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        msg = f"predictions lack column(s) {missing}; the bootstrap needs {list(REQUIRED_COLUMNS)}"
        raise ValueError(msg)
    if frame.empty or n_boot < 1 or not 0.0 < confidence < 1.0:
        msg = f"need films, n_boot >= 1 and 0 < confidence < 1; got {len(frame)} films, {n_boot=}, {confidence=}"
        raise ValueError(msg)
    bad = sorted(set(frame["label"].tolist()) - {0, 1})
    if bad or not np.isfinite(frame["score"].to_numpy(np.float64)).all():
        msg = f"labels must be 0/1 (got extra {bad[:5]}) and scores finite; check the predictions table"
        raise ValueError(msg)
    return frame.reset_index(drop=True).assign(label=frame["label"].to_numpy().astype(int))


def _per_film_cuts(cuts: float | np.ndarray | None, n_films: int) -> np.ndarray | None:
    if cuts is None:
        return None
    values = np.asarray(cuts, dtype=np.float64)
    if values.ndim == 0:
        return np.full(n_films, float(values))
    if values.shape != (n_films,):
        msg = f"cuts hold {values.size} values for {n_films} films; give one cut per film (or a scalar)"
        raise ValueError(msg)
    return values


def _float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def bootstrap_metrics(
    frame: pd.DataFrame, cuts: float | np.ndarray, *, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, dict]:
    """Patient-bootstrap percentile intervals of the image AUROC, view-shortcut metrics, FPR/TPR and nodule AUROC.

    Args:
        frame: One row per film with ``label``, ``score``, ``view``, ``finding_labels`` and (optionally)
            ``patient_id``; a film without ``patient_id`` is its own patient.
        cuts: The cut of each film (flagged when ``score >= cut``), or one cut for all.
        n_boot: Number of patient resamples.
        seed: Seed of the private ``numpy.random.Generator`` (the global RNG is never used).
        confidence: Coverage of the percentile interval.

    Returns:
        ``{metric: {"estimate", "low", "high", "n_valid"}}`` for every name in :data:`METRICS` (JSON-safe; None
        where undefined), plus ``"_bootstrap": {"n_boot", "seed", "confidence", "unit", "n_patients"}``.

    Raises:
        ValueError: If a column is missing, labels are not 0/1, scores are not finite or the settings are invalid.

    Example:
        >>> table = pd.DataFrame({"label": [0, 0, 1, 1], "score": [0.1, 0.2, 0.8, 0.9], "view": ["PA"] * 4,
        ...                       "finding_labels": ["No Finding"] * 2 + ["Nodule"] * 2})
        >>> result = bootstrap_metrics(table, np.full(4, 0.5), n_boot=200)
        >>> result["image_auroc"]["estimate"], result["image_auroc"]["low"], result["image_auroc"]["high"]
        (1.0, 1.0, 1.0)
    """
    table = _check(frame, n_boot, confidence)
    per_film = _per_film_cuts(cuts, len(table))
    codes = patient_codes(table)
    estimates = point_estimates(table, per_film)
    replicates = _replicates(WeightedMetrics(table, per_film), codes, n_boot, seed)
    result: dict[str, dict] = {
        name: {"estimate": _float(estimates[name]), **percentile_interval(replicates[name], confidence)}
        for name in METRICS
    }
    result["_bootstrap"] = {
        "n_boot": int(n_boot),
        "seed": int(seed),
        "confidence": float(confidence),
        "unit": "patient",
        "n_patients": int(codes.max()) + 1,
    }
    return result


def common_films(
    a: pd.DataFrame,
    b: pd.DataFrame,
    key: str,
    cuts_a: float | np.ndarray | None = None,
    cuts_b: float | np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The films of both runs, matched on ``key``: ``(films with a's scores, the same films with b's scores)``.

    Metadata (patient, view, findings) comes from ``a``; each run keeps its own ``score`` and cut (``_cut``).

    Raises:
        ValueError: If ``key`` is missing or repeated, fewer than half of either run's films are in common, or
            the labels of a common film disagree.
    """
    for name, run in (("a", a), ("b", b)):
        if key not in run.columns or run[key].duplicated().any():
            msg = f"run {name} needs a unique {key!r} column to match films ({len(run)} rows)"
            raise ValueError(msg)
    left = a.reset_index(drop=True).assign(_cut=_per_film_cuts(cuts_a, len(a)) if cuts_a is not None else np.nan)
    right = b.reset_index(drop=True).assign(_cut=_per_film_cuts(cuts_b, len(b)) if cuts_b is not None else np.nan)
    merged = left.merge(right[[key, "label", "score", "_cut"]], on=key, suffixes=("", "_b"), validate="1:1")
    n_common = len(merged)
    if 2 * n_common < len(a) or 2 * n_common < len(b):
        msg = f"only {n_common} films in common on {key!r} between run a ({len(a)}) and b ({len(b)}): not one test set"
        raise ValueError(msg)
    disagree = int((merged["label"].to_numpy() != merged["label_b"].to_numpy()).sum())
    if disagree:
        msg = f"{disagree} of {n_common} common films have different labels in run a and run b"
        raise ValueError(msg)
    run_a = merged.drop(columns=["label_b", "score_b", "_cut_b"])
    run_b = run_a.assign(score=merged["score_b"], _cut=merged["_cut_b"])
    return run_a, run_b


def paired_difference(
    a: pd.DataFrame,
    b: pd.DataFrame,
    metric: str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    key: str = "image_path",
    cuts_a: float | np.ndarray | None = None,
    cuts_b: float | np.ndarray | None = None,
) -> dict[str, Any]:
    """Paired patient bootstrap of ``metric(a) - metric(b)`` on the films both runs scored.

    Every replicate resamples patients once and applies the same weights to both runs, so the interval reflects
    the disagreement between the runs, not the (shared) sampling noise of the test set.

    Args:
        a: Predictions of run a (``key``, ``label``, ``score``, ``view``, ``finding_labels``, ``patient_id``).
        b: Predictions of run b on the same test films (its metadata is taken from ``a``).
        metric: One of :data:`METRICS`; ``fpr``/``tpr`` also need ``cuts_a`` and ``cuts_b``.
        n_boot: Number of patient resamples.
        seed: Seed of the private ``numpy.random.Generator``.
        confidence: Coverage of the percentile interval.
        key: Column identifying a film in both runs.
        cuts_a: Per-film cuts of run a (aligned with ``a``'s rows) or one cut, for ``fpr``/``tpr``.
        cuts_b: The same for run b.

    Returns:
        ``{"metric", "a", "b", "difference", "low", "high", "n_valid", "n_films", "n_films_a", "n_films_b",
        "n_patients", "n_boot", "seed", "confidence"}``; ``a``/``b`` are the estimates on the common films.

    Raises:
        ValueError: For an unknown metric, missing cuts, or the mismatches of :func:`common_films`.

    Example:
        >>> run = pd.DataFrame({"image_path": list("wxyz"), "label": [0, 0, 1, 1], "score": [0.1, 0.6, 0.5, 0.9],
        ...                     "view": ["PA"] * 4, "finding_labels": ["No Finding"] * 2 + ["Effusion"] * 2})
        >>> same = paired_difference(run, run, "image_auroc", n_boot=100)
        >>> same["difference"], same["low"], same["high"]
        (0.0, 0.0, 0.0)
    """
    if metric not in METRICS or (metric in NEEDS_CUTS and (cuts_a is None or cuts_b is None)):
        msg = f"metric {metric!r} must be one of {list(METRICS)}; {list(NEEDS_CUTS)} also need cuts_a and cuts_b"
        raise ValueError(msg)
    run_a, run_b = common_films(_check(a, n_boot, confidence), _check(b, n_boot, confidence), key, cuts_a, cuts_b)
    cut_a = None if cuts_a is None else run_a["_cut"].to_numpy(np.float64)
    cut_b = None if cuts_b is None else run_b["_cut"].to_numpy(np.float64)
    est_a = _float(point_estimates(run_a, cut_a)[metric])
    est_b = _float(point_estimates(run_b, cut_b)[metric])
    stat_a, stat_b = WeightedMetrics(run_a, cut_a), WeightedMetrics(run_b, cut_b)

    def difference(weights: np.ndarray) -> dict[str, np.ndarray]:
        return {metric: stat_a(weights, (metric,))[metric] - stat_b(weights, (metric,))[metric]}

    codes = patient_codes(run_a)
    replicates = _replicates(difference, codes, n_boot, seed)[metric]
    return {
        "metric": metric,
        "a": est_a,
        "b": est_b,
        "difference": None if est_a is None or est_b is None else est_a - est_b,
        **percentile_interval(replicates, confidence),
        "n_films": len(run_a),
        "n_films_a": len(a),
        "n_films_b": len(b),
        "n_patients": int(codes.max()) + 1,
        "n_boot": int(n_boot),
        "seed": int(seed),
        "confidence": float(confidence),
    }


def format_difference(result: dict[str, Any]) -> str:
    """One line for a :func:`paired_difference` result.

    Example:
        >>> format_difference({"metric": "image_auroc", "difference": -0.07, "low": -0.12, "high": -0.02})
        'image_auroc a - b: -0.070 [-0.120, -0.020]'
    """

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    interval = f"[{number(result['low'])}, {number(result['high'])}]"
    return f"{result['metric']} a - b: {number(result['difference'])} {interval}"


def mean_over_splits(
    runs: list[pd.DataFrame],
    metric: str,
    baselines: list[pd.DataFrame] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    key: str = "image_path",
) -> dict[str, Any]:
    """Mean over repeated patient-wise splits of an AUROC metric, or of its paired difference to ``baselines``.

    Each split has its own test films and fitted model, so films of different splits cannot be pooled into one
    AUROC (their scores are on different scales). The statistic is the mean of the per-split values; its interval
    comes from one patient bootstrap over the union of the splits' patients: a drawn patient's count weights their
    films in every split that tests them, so a patient tested in several splits is not counted as independent.

    Args:
        runs: One predictions table per split (columns of :func:`bootstrap_metrics`, with ``patient_id``).
        metric: An AUROC metric of :data:`METRICS` (not ``fpr``/``tpr``, whose cuts differ per split).
        baselines: Optional predictions of a baseline on the same test films of each split: the statistic is then
            the mean paired difference ``run - baseline``.
        n_boot, seed, confidence, key: as in :func:`paired_difference`.

    Returns:
        ``{"metric", "estimate", "low", "high", "n_valid", "per_split", "n_patients", "n_boot", "confidence"}``.

    Example:
        >>> split = pd.DataFrame({"image_path": list("wxyz"), "label": [0, 0, 1, 1], "score": [0.1, 0.6, 0.5, 0.9],
        ...                       "view": ["PA"] * 4, "finding_labels": ["No Finding"] * 2 + ["Effusion"] * 2,
        ...                       "patient_id": ["a", "b", "c", "d"]})
        >>> mean_over_splits([split, split], "image_auroc", n_boot=50)["estimate"]
        0.75
    """
    if metric not in METRICS or metric in NEEDS_CUTS:
        msg = f"metric {metric!r} must be an AUROC metric of {[m for m in METRICS if m not in NEEDS_CUTS]}"
        raise ValueError(msg)
    if baselines is not None and len(baselines) != len(runs):
        msg = f"{len(runs)} runs but {len(baselines)} baselines; give one baseline per split"
        raise ValueError(msg)
    pairs = []
    for i, run in enumerate(runs):
        table = _check(run, n_boot, confidence)
        base = None
        if baselines is not None:
            table, base = common_films(table, _check(baselines[i], n_boot, confidence), key, None, None)
        pairs.append((table, base))
    ids = pd.concat([t[PATIENT_COLUMN].astype(str) for t, _ in pairs], ignore_index=True)
    codes_all, uniques = pd.factorize(ids)
    offsets = np.cumsum([0] + [len(t) for t, _ in pairs])
    stats = [(WeightedMetrics(t, None), None if b is None else WeightedMetrics(b, None)) for t, b in pairs]

    def per_split(weights_of: Callable[[int], np.ndarray]) -> np.ndarray:
        values = []
        for i, (stat, base) in enumerate(stats):
            weights = weights_of(i)
            value = stat(weights, (metric,))[metric]
            values.append(value - base(weights, (metric,))[metric] if base is not None else value)
        return np.vstack(values)  # (splits, B)

    point = per_split(lambda i: np.ones((1, offsets[i + 1] - offsets[i])))[:, 0]
    rng = np.random.default_rng(seed)
    n_patients = len(uniques)
    replicates = []
    block = max(1, _CHUNK_ELEMENTS // max(len(ids), n_patients))
    for start in range(0, n_boot, block):
        counts = rng.multinomial(n_patients, np.full(n_patients, 1.0 / n_patients), size=min(block, n_boot - start))
        weights = counts[:, codes_all].astype(np.float64)
        values = per_split(lambda i, w=weights: w[:, offsets[i] : offsets[i + 1]])
        finite_count = np.isfinite(values).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):  # a replicate without a defined split is NaN
            replicates.append(np.where(np.isfinite(values), values, 0.0).sum(0) / finite_count)
    finite = point[np.isfinite(point)]
    return {
        "metric": metric,
        "estimate": float(finite.mean()) if finite.size else None,
        **percentile_interval(np.concatenate(replicates), confidence),
        "per_split": [_float(v) for v in point],
        "n_patients": int(n_patients),
        "n_boot": int(n_boot),
        "confidence": float(confidence),
    }
