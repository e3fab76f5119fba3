"""What each validation film is for: fitting the conditioning, setting the threshold, or choosing between runs.

A threshold is only honest when the films it is set on are scored exactly as the test films are. Options that fit
something on normal validation films (``normative`` and ``film_normative`` fit map regressions, ``stratified`` and
``film_stratified`` a per-group calibration) would otherwise score those films in-sample (too low: the test FPR
then overshoots the nominal one) or cross-fitted on part of the reference (a different model than the test films
see). So the normal validation films are split *by patient* into two roles:

* ``reference``: fits the regressions or calibration (saved for ``cxrad.predict``); never scored, never thresholded.
* ``calibration``: scored by the fitted model exactly as test films are; sets the threshold.

The reference comes from the normal validation patients (``reference_source: validation``) or from a patient-wise
held-out part of the normal *training* patients (``reference_source: train``): on a large data set the training
films are many more, so the regressions are fitted on hundreds to thousands of films; those films are then not
used to fit the detector (their ``split`` becomes ``val``) and every normal validation film sets the threshold.

Abnormal validation films (``selection``) are scored like test films too and serve one purpose: validation
metrics for choosing between runs (``cxrad.select``). Options that fit nothing on validation films (``none``,
``film``) use every normal validation film for the threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from cxrad.metadata_conditioning.options import rescores

log = logging.getLogger(__name__)

ROLE_COLUMN = "val_role"
REFERENCE, CALIBRATION, SELECTION = "reference", "calibration", "selection"
DEFAULT_REFERENCE_FRACTION = 0.5
REFERENCE_SOURCES = ("validation", "train")


def fits_on_validation(conditioning: Mapping[str, object] | None) -> bool:
    """Whether the option fits a score conditioner on reference films (and so needs a reference part)."""
    return rescores(conditioning)


def reference_fraction(conditioning: Mapping[str, object]) -> float:
    """``metadata_conditioning.reference_fraction``: the share of normal validation patients that fit the option.

    Raises:
        ValueError: naming the value when it is not strictly between 0 and 1.
    """
    value = float(conditioning.get("reference_fraction", DEFAULT_REFERENCE_FRACTION))
    if not 0.0 < value < 1.0:
        msg = (
            f"metadata_conditioning.reference_fraction={value} must be in (0, 1): the rest of the normal "
            "validation films sets the threshold; e.g. metadata_conditioning.reference_fraction=0.5"
        )
        raise ValueError(msg)
    return value


def reference_source(conditioning: Mapping[str, object]) -> str:
    """``metadata_conditioning.reference_source``: where the reference films come from (validation | train)."""
    source = str(conditioning.get("reference_source", "validation"))
    if source not in REFERENCE_SOURCES:
        msg = (
            f"metadata_conditioning.reference_source={source} is unknown; choose from {list(REFERENCE_SOURCES)}, "
            "e.g. metadata_conditioning.reference_source=train"
        )
        raise ValueError(msg)
    return source


def assign_val_roles(samples: pd.DataFrame, conditioning: Mapping[str, object], seed: int) -> pd.DataFrame:
    """A copy of ``samples`` with :data:`ROLE_COLUMN`: '' outside val, else reference / calibration / selection.

    With ``reference_source: train`` the reference patients are drawn from the training split (their films move
    to ``val`` with role ``reference``); ``reference_fraction`` is then the share of the normal training films.

    Example:
        >>> frame = pd.DataFrame({"split": ["val"] * 4 + ["test"], "label": [0, 0, 0, 1, 0],
        ...                       "patient_id": ["a", "b", "c", "d", "e"]})
        >>> assign_val_roles(frame, {"name": "none"}, seed=0)["val_role"].tolist()
        ['calibration', 'calibration', 'calibration', 'selection', '']
    """
    out = samples.copy()
    val = out["split"] == "val"
    normal_val = val & (out["label"] == 0)
    out[ROLE_COLUMN] = np.where(val, np.where(normal_val, CALIBRATION, SELECTION), "")
    if fits_on_validation(conditioning):
        source = reference_source(conditioning)
        pool = normal_val if source == "validation" else (out["split"] == "train") & (out["label"] == 0)
        films = out.loc[pool, "patient_id"].astype(str).value_counts().sort_index()
        films = films.iloc[np.random.default_rng(seed).permutation(len(films))]
        # patients in a random order until the reference holds its fraction of the films (patients of many films
        # would make a fraction of patients miss the fraction of films by far); never all of them
        before = films.cumsum() - films
        chosen = films.index[before.to_numpy() < reference_fraction(conditioning) * films.sum()]
        chosen = chosen[: max(len(films) - 1, 1)]
        reference = pool & out["patient_id"].astype(str).isin(set(chosen))
        out.loc[reference, ROLE_COLUMN] = REFERENCE
        out.loc[reference, "split"] = "val"  # scored like validation films; never fitted on by the detector
        log.info(
            "metadata_conditioning=%s: %d normal %s films fit it (reference), %d normal validation films set the "
            "threshold",
            conditioning.get("name"),
            int(reference.sum()),
            source,
            int((normal_val & ~reference).sum()),
        )
    return out


def films_with_role(samples: pd.DataFrame, role: str, index: pd.Index | None = None) -> list[int]:
    """Sample indices (of ``index``, default all) whose validation role is ``role``.

    A table without the role column (saved before it existed) treats every normal validation film as both
    reference and calibration, as those runs did.
    """
    frame = samples if index is None else samples.loc[index]
    if ROLE_COLUMN not in frame.columns:
        normal = frame["label"] == 0
        return [int(i) for i in frame.index[normal.to_numpy()]] if role in (REFERENCE, CALIBRATION) else []
    return [int(i) for i in frame.index[(frame[ROLE_COLUMN] == role).to_numpy()]]


def role_counts(samples: pd.DataFrame) -> dict[str, int]:
    """``n_val_reference``, ``n_val_calibration``, ``n_val_selection`` (abnormal) for ``metrics.json``, and the
    films each split holds once the roles are set (a training-source reference moves films from train to val)."""
    roles = samples[ROLE_COLUMN] if ROLE_COLUMN in samples.columns else pd.Series(dtype=str)
    counts = {f"n_val_{role}": int((roles == role).sum()) for role in (REFERENCE, CALIBRATION, SELECTION)}
    return {**counts, **{f"n_{name}": int((samples["split"] == name).sum()) for name in ("train", "val", "test")}}


def calibration_rows(val_scores: pd.DataFrame) -> pd.DataFrame:
    """The rows of a ``val_scores.csv`` table that set the threshold (all rows of one saved before roles existed)."""
    if ROLE_COLUMN not in val_scores.columns:
        return val_scores
    return val_scores[val_scores[ROLE_COLUMN] == CALIBRATION]
