"""The sample table: one row per film, the contract between dataset loaders and the pipeline.

Columns (one vocabulary for every source): ``image_path`` (absolute), ``label`` (0 normal / 1 abnormal),
``age``, ``sex``, ``view``, ``patient_id``, ``finding_labels`` ('|'-separated, 'No Finding' for normals),
``split`` (train/val/test), ``mask_path`` ('' when none), ``boxes`` ('Kind:x,y,w,h;...' in a
``boxes_frame``-pixel square frame, '' when none), ``boxes_frame`` (0 when no boxes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

NORMAL_FINDING = "No Finding"
SPLITS = ("train", "val", "test")
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
    """How films are split when the source has no split of its own.

    Patients with any abnormal film go to test (their films can't be used for training without leaking the
    patient); patients with only normal films are divided by these fractions.
    """

    val_fraction: float = 0.15
    test_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
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


def assign_patient_splits(frame: pd.DataFrame, config: SplitConfig) -> pd.DataFrame:
    """Assign ``split`` by patient so that no patient appears in two splits.

    Example:
        >>> f = pd.DataFrame({"patient_id": ["a", "a", "b", "c"], "label": [0, 1, 0, 0]})
        >>> assign_patient_splits(f, SplitConfig(0.0, 0.0)).split.tolist()
        ['test', 'test', 'train', 'train']
    """
    patient_has_finding = frame.groupby("patient_id")["label"].max()
    sick = patient_has_finding.index[patient_has_finding == 1]
    healthy = np.array(sorted(patient_has_finding.index[patient_has_finding == 0]))
    rng = np.random.default_rng(config.seed)
    healthy = healthy[rng.permutation(len(healthy))]
    n_test = int(round(config.test_fraction * len(healthy)))
    n_val = int(round(config.val_fraction * len(healthy)))
    split_of = dict.fromkeys(sick, "test")
    split_of.update(dict.fromkeys(healthy[:n_test], "test"))
    split_of.update(dict.fromkeys(healthy[n_test : n_test + n_val], "val"))
    split_of.update(dict.fromkeys(healthy[n_test + n_val :], "train"))
    out = frame.copy()
    out["split"] = out["patient_id"].map(split_of)
    return out


def enforce_split_rules(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop abnormal films from train/val (training is normal-only) and check patients stay in one split."""
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
    dropped = (frame["split"] != "test") & (frame["label"] == 1)
    if dropped.any():
        log.info("dropping %d abnormal films from train/val (training is normal-only)", int(dropped.sum()))
    return frame[~dropped].reset_index(drop=True)


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
        ("test", 1): "no abnormal test films; check data.test_findings and that abnormal images exist",
    }
    for key, fix in fixes.items():
        if counts.get(key, 0) == 0:
            msg = f"split '{key[0]}' has no films with label {key[1]}: {fix} (counts: {counts})"
            raise ValueError(msg)
