"""The sample table: one row per film, the contract between dataset loaders and the pipeline.

Columns (one vocabulary for every source): ``image_path`` (absolute), ``label`` (0 normal / 1 abnormal),
``age``, ``sex``, ``view``, ``patient_id``, ``finding_labels`` ('|'-separated, 'No Finding' for normals),
``split`` (train/val/test), ``mask_path`` ('' when none), ``boxes`` ('Kind:x,y,w,h;...' in a
``boxes_frame``-pixel square frame, '' when none), ``boxes_frame`` (0 when no boxes). A source may add
``patient_has_finding`` (True for every film of a patient with an abnormal film anywhere in the source, also
among films it filtered out), which the ``normal_patients`` split strategy honours, and ``excluded_finding``
(True for abnormal films outside ``test_findings``: they take part in the split, then are dropped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

NORMAL_FINDING = "No Finding"
SPLITS = ("train", "val", "test")
SPLIT_STRATEGIES = ("patient_random", "normal_patients")
REQUIRED_COLUMNS = ("image_path", "label", "age", "sex", "view")
OPTIONAL_DEFAULTS: dict[str, object] = {
    "patient_id": None,
    "finding_labels": None,
    "split": "",
    "mask_path": "",
    "boxes": "",
    "boxes_frame": 0,
    "lesion_sizes_mm": "",
    "pixel_spacing_mm": np.nan,
}


@dataclass(frozen=True)
class SplitConfig:
    """How films are split by patient when the source has no split (or only NIH-style ``trainval``/``test``).

    Strategies (``data.split.strategy``):

    - ``patient_random`` (default): every patient is drawn at random (by ``seed``) into train, val or test in
      the proportions ``1 - val_fraction - test_fraction`` / ``val_fraction`` / ``test_fraction``, whatever
      his films show. Train keeps only its patients' normal films (their abnormal films are dropped and
      counted); val and test keep every film, normal and abnormal. Normal films of all three splits thus come
      from one population of patients.
    - ``normal_patients``: patients with any abnormal film (``label`` 1 or ``patient_has_finding``) go to test
      with all their films; patients with only normal films are divided by the fractions. Train and val then
      hold only patients who never had a finding (val is normal-only), while test normals come mostly from
      patients with a finding elsewhere, a different population (on NIH: more AP films).

    Attributes:
        val_fraction: share of the patients (``normal_patients``: of the all-normal patients) sent to val.
        test_fraction: share sent to test (ignored where the source names its test films).
        seed: seed of the patient permutation.
        strategy: one of ``SPLIT_STRATEGIES``.
    """

    val_fraction: float = 0.15
    test_fraction: float = 0.25
    seed: int = 0
    strategy: str = "patient_random"

    def __post_init__(self) -> None:
        if self.strategy not in SPLIT_STRATEGIES:
            msg = f"data.split.strategy={self.strategy} is unknown; choose from {list(SPLIT_STRATEGIES)}"
            raise ValueError(msg)
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                msg = f"data.split.{name}={value} must be in [0, 1)"
                raise ValueError(msg)
        if self.val_fraction + self.test_fraction >= 1.0:
            msg = (
                f"data.split.val_fraction + test_fraction = {self.val_fraction + self.test_fraction} leaves no "
                "training films; lower one of them"
            )
            raise ValueError(msg)


def require_columns(frame: pd.DataFrame, source: str) -> None:
    """Raise ``ValueError`` naming the required columns ``frame`` lacks and the ones it has."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        msg = (
            f"{source} lacks required column(s) {missing}; it has {list(frame.columns)}. Every source needs "
            f"{list(REQUIRED_COLUMNS)} (age/sex/view cells may be blank: they then count as unknown)"
        )
        raise ValueError(msg)


def complete_columns(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check required columns and fill optional ones with their defaults.

    Raises:
        ValueError: naming the missing columns and the source they were expected in.
    """
    require_columns(frame, source)
    out = frame.copy()
    for column, default in OPTIONAL_DEFAULTS.items():
        if column not in out.columns:
            out[column] = default
    if out["patient_id"].isna().any():
        # Without patient ids each film is its own patient: the only assumption that never merges patients.
        out["patient_id"] = out["patient_id"].fillna(pd.Series(out["image_path"], index=out.index))
    out["patient_id"] = out["patient_id"].astype(str)
    out["label"] = out["label"].astype(int)
    if out["finding_labels"].isna().any():
        filler = np.where(out["label"] == 0, NORMAL_FINDING, "Abnormal")
        out["finding_labels"] = out["finding_labels"].fillna(pd.Series(filler, index=out.index))
    for column in ("split", "mask_path", "boxes"):
        out[column] = out[column].fillna("").astype(str)
    out["boxes_frame"] = out["boxes_frame"].fillna(0).astype(int)
    return out.reset_index(drop=True)


def patients_with_findings(frame: pd.DataFrame) -> pd.Index:
    """Patients with an abnormal film in ``frame`` or flagged by the source (``patient_has_finding``)."""
    flagged = frame["label"] == 1
    if "patient_has_finding" in frame.columns:
        flagged = flagged | frame["patient_has_finding"].fillna(False).astype(bool)
    return pd.Index(frame.loc[flagged, "patient_id"].unique())


def assign_patient_splits(frame: pd.DataFrame, config: SplitConfig) -> pd.DataFrame:
    """Assign ``split`` by patient so that no patient appears in two splits (see :class:`SplitConfig`).

    Example:
        >>> f = pd.DataFrame({"patient_id": ["a", "a", "b", "c"], "label": [0, 1, 0, 0]})
        >>> assign_patient_splits(f, SplitConfig(0.0, 0.0, strategy="normal_patients")).split.tolist()
        ['test', 'test', 'train', 'train']
        >>> assign_patient_splits(f, SplitConfig(0.0, 0.0)).split.tolist()
        ['train', 'train', 'train', 'train']
    """
    if config.strategy == "patient_random":
        out = frame.copy()
        out["split"] = out["patient_id"].map(balanced_patient_splits(frame, config))
        return out
    patients = np.array(sorted(frame["patient_id"].unique()), dtype=object)
    sick = pd.Index(patients).isin(patients_with_findings(frame))
    pool = patients[~sick]
    pool = pool[np.random.default_rng(config.seed).permutation(len(pool))]
    n_test = int(round(config.test_fraction * len(pool)))
    n_val = int(round(config.val_fraction * len(pool)))
    drawn = np.full(len(pool), "train", dtype=object)
    drawn[:n_test] = "test"
    drawn[n_test : n_test + n_val] = "val"
    split_of = pd.concat([pd.Series(drawn, index=pool), pd.Series("test", index=patients[sick], dtype=object)])
    out = frame.copy()
    out["split"] = out["patient_id"].map(split_of)
    return out


RERANDOMISATIONS = 200  # candidate patient permutations per seed; the most balanced one is kept


def balanced_patient_splits(frame: pd.DataFrame, config: SplitConfig) -> pd.Series:
    """Patient -> split for ``patient_random``: a seeded random patient split, rerandomised for balance.

    A candidate is a random permutation of the patients cut where the cumulative share of films reaches the
    fractions. Of :data:`RERANDOMISATIONS` candidates drawn from ``seed`` the one whose splits differ least in their
    share of normal, normal AP and abnormal films is kept (rerandomisation, as in balanced trial allocation; Morgan
    & Rubin 2012). With a few hundred patients of many mixed-view films each (NIH's dev sets, where one patient can
    hold a third of the AP normals) a single permutation leaves the AP share of normal films 10-25 points apart
    between splits; the kept candidate keeps the three normal populations alike and is still random: every seed
    gives another split.
    """
    kinds = np.select([frame["label"] == 1, frame["view"] == "AP"], ["abnormal", "AP"], "other")
    counts = pd.crosstab(frame["patient_id"].to_numpy(), kinds).reindex(columns=["other", "AP", "abnormal"])
    films = counts.fillna(0).to_numpy(np.float64)  # (patient, kind): normal non-AP, normal AP, abnormal
    fractions = np.array([1.0 - config.val_fraction - config.test_fraction, config.val_fraction, config.test_fraction])
    edges = np.cumsum(fractions)[:-1]
    sizes = films.sum(1)
    rng = np.random.default_rng(config.seed)
    best, best_cost = None, np.inf
    for _ in range(RERANDOMISATIONS):
        order = rng.permutation(len(films))
        position = (np.cumsum(sizes[order]) - 0.5 * sizes[order]) / sizes.sum()
        split = np.empty(len(films), dtype=np.int64)
        split[order] = np.searchsorted(edges, position, side="right")
        cost = _imbalance(films, split, fractions)
        if cost < best_cost:
            best, best_cost = split, cost
    return pd.Series(np.asarray(SPLITS, dtype=object)[best], index=counts.index.astype(str), dtype=object)


def _imbalance(films: np.ndarray, split: np.ndarray, fractions: np.ndarray) -> float:
    """How far a candidate's splits are from their fractions of normal films and from one AP share and abnormal
    share (of the splits with a positive fraction)."""
    per_split = np.stack([films[split == s].sum(0) for s in range(3)])  # (split, kind)
    live = fractions > 0
    normal = per_split[:, :2].sum(1)
    normal_share = normal / max(normal.sum(), 1.0)
    ap_share = per_split[:, 1] / np.maximum(normal, 1.0)
    abnormal_share = per_split[:, 2] / np.maximum(per_split.sum(1), 1.0)
    cost = np.abs(normal_share - fractions)[live].max()
    for share in (ap_share, abnormal_share):
        cost += np.ptp(share[live]) if live.sum() > 1 else 0.0
    return float(cost)


def enforce_split_rules(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop abnormal films from train (training is normal-only) and check patients stay in one split.

    Val and test keep their abnormal films (val's serve model selection; thresholds use its normals).
    """
    crossing = frame.groupby("patient_id")["split"].nunique()
    crossing = crossing[crossing > 1]
    if len(crossing):
        msg = (
            f"{len(crossing)} patient(s) appear in more than one split (e.g. {list(crossing.index[:3])}); "
            "fix the 'split' column or drop it so cxrad splits by patient"
        )
        raise ValueError(msg)
    bad = ~frame["split"].isin(SPLITS)
    if bad.any():
        msg = f"unknown split value(s) {sorted(frame.loc[bad, 'split'].unique())}; use one of {SPLITS}"
        raise ValueError(msg)
    dropped = (frame["split"] == "train") & (frame["label"] == 1)
    if dropped.any():
        log.info("dropping %d abnormal films of training patients (training is normal-only)", int(dropped.sum()))
    return frame[~dropped].reset_index(drop=True)


def drop_excluded_findings(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop the films a source marked ``excluded_finding`` (call after the split); return them counted."""
    if "excluded_finding" not in frame.columns:
        return frame, 0
    excluded = frame["excluded_finding"].fillna(False).astype(bool)
    if excluded.any():
        log.info("dropping %d abnormal films outside data.source.test_findings (after the split)", excluded.sum())
    return frame[~excluded].drop(columns="excluded_finding").reset_index(drop=True), int(excluded.sum())


def cap_split(frame: pd.DataFrame, split: str, limit: int | None, seed: int) -> pd.DataFrame:
    """Keep at most ``limit`` films of ``split`` (random, by seed; other splits untouched)."""
    in_split = frame["split"] == split
    if limit is None or in_split.sum() <= limit:
        return frame
    keep = frame[in_split].sample(n=limit, random_state=seed).index
    return frame[~in_split | frame.index.isin(keep)].reset_index(drop=True)


def check_splits(frame: pd.DataFrame) -> None:
    """Fail before any training when a split cannot support the run."""
    counts = frame.groupby(["split", "label"]).size().to_dict()
    fixes = {
        (
            "train",
            0,
        ): "no normal training films; add normal films or lower data.split.test_fraction/val_fraction",
        ("val", 0): "no normal validation films for the threshold; raise data.split.val_fraction",
        ("test", 0): "no normal test films; raise data.split.test_fraction",
        ("test", 1): "no abnormal test films; check data.source.test_findings and that abnormal images exist",
    }
    for key, fix in fixes.items():
        if counts.get(key, 0) == 0:
            msg = f"split '{key[0]}' has no films with label {key[1]}: {fix} (counts: {counts})"
            raise ValueError(msg)
