"""One metadata vocabulary for every dataset: ``age`` (years), ``sex`` (M/F/unknown), ``view`` (PA/AP/unknown).

Every loader normalises its raw columns through these parsers, and one encoder turns the normalised values
into the fixed-length vector the models receive.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

SEXES = ("M", "F")
VIEWS = ("PA", "AP")
UNKNOWN = "unknown"
MAX_AGE_YEARS = 120.0
# Fixed standardisation constants (not fitted), so the encoding never depends on which split is seen first.
AGE_MEAN_YEARS = 50.0
AGE_STD_YEARS = 20.0

# The covariates a conditioning option can use, and the encoder features each one occupies.
COVARIATES = ("view", "sex", "age")
COVARIATE_FEATURES = {
    "age": ("age_z", "age_missing"),
    "sex": ("sex_M", "sex_F", "sex_unknown"),
    "view": ("view_PA", "view_AP", "view_unknown"),
}
# The known levels whose films a reference must hold enough of before a covariate is fitted (age: known ages).
COVARIATE_LEVELS = {"age": ("age_known",), "sex": ("sex_M", "sex_F"), "view": ("view_PA", "view_AP")}

_AGE_PATTERN = re.compile(r"^\s*0*(\d+(?:\.\d+)?)\s*([YMWD]?)\s*$", re.IGNORECASE)
_AGE_UNIT_TO_YEARS = {"": 1.0, "Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}
_SEX_ALIASES = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}
_VIEW_ALIASES = {"PA": "PA", "POSTEROANTERIOR": "PA", "AP": "AP", "ANTEROPOSTERIOR": "AP"}


def parse_age(value: object) -> float:
    """Parse an age into years; NaN when missing or implausible.

    Accepts numbers and DICOM age strings (``'058Y'``, ``'006M'``). Values outside [0, 120] years (NIH has
    ages like 414) are treated as unknown rather than clipped, because a clipped age is a wrong age.

    Example:
        >>> parse_age("058Y"), parse_age(414), math.isnan(parse_age(""))
        (58.0, nan, True)
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if isinstance(value, int | float | np.integer | np.floating):
        years = float(value)
    else:
        match = _AGE_PATTERN.match(str(value))
        if match is None:
            return math.nan
        years = float(match.group(1)) * _AGE_UNIT_TO_YEARS[match.group(2).upper()]
    return years if 0.0 <= years <= MAX_AGE_YEARS else math.nan


def parse_sex(value: object) -> str:
    """Normalise a sex code to ``'M'``, ``'F'`` or ``'unknown'`` (e.g. ``'O'``, blank)."""
    return _SEX_ALIASES.get(str(value).strip().upper(), UNKNOWN) if _present(value) else UNKNOWN


def parse_view(value: object) -> str:
    """Normalise a view position to ``'PA'``, ``'AP'`` or ``'unknown'`` (``'AP Supine'`` -> ``'AP'``, ``'LL'``)."""
    if not _present(value):
        return UNKNOWN
    text = str(value).strip().upper()
    first = text.split()[0] if text else ""
    return _VIEW_ALIASES.get(text, _VIEW_ALIASES.get(first, UNKNOWN))


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value).strip() != ""


def normalise_metadata(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``frame`` with ``age``, ``sex`` and ``view`` parsed into the cxrad vocabulary."""
    out = frame.copy()
    out["age"] = [parse_age(v) for v in out["age"]]
    out["sex"] = [parse_sex(v) for v in out["sex"]]
    out["view"] = [parse_view(v) for v in out["view"]]
    return out


def metadata_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Counts of unknown metadata values, for ``metrics.json``."""
    return {
        "age_unknown": int(frame["age"].isna().sum()),
        "sex_unknown": int((frame["sex"] == UNKNOWN).sum()),
        "view_unknown": int((frame["view"] == UNKNOWN).sum()),
    }


@dataclass(frozen=True)
class MetadataEncoder:
    """Turns normalised metadata into a float vector.

    Layout: ``[age_z, age_missing, sex_M, sex_F, sex_unknown, view_PA, view_AP, view_unknown]``. Unknown
    values get their own flag instead of an imputed value, so a model can learn to ignore them.

    Example:
        >>> MetadataEncoder().encode(70.0, "F", "AP").tolist()
        [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    """

    names: tuple[str, ...] = (
        "age_z",
        "age_missing",
        "sex_M",
        "sex_F",
        "sex_unknown",
        "view_PA",
        "view_AP",
        "view_unknown",
    )

    @property
    def dim(self) -> int:
        return len(self.names)

    def encode(self, age: float, sex: str, view: str) -> torch.Tensor:
        missing_age = age is None or math.isnan(age)
        age_z = 0.0 if missing_age else (age - AGE_MEAN_YEARS) / AGE_STD_YEARS
        sex_hot = [float(sex == s) for s in SEXES] + [float(sex not in SEXES)]
        view_hot = [float(view == v) for v in VIEWS] + [float(view not in VIEWS)]
        return torch.tensor([age_z, float(missing_age), *sex_hot, *view_hot], dtype=torch.float32)

    def encode_many(self, rows: Iterable[tuple[float, str, str]]) -> torch.Tensor:
        return torch.stack([self.encode(*row) for row in rows])


def check_covariates(covariates: Iterable[str] | None) -> tuple[str, ...]:
    """The configured covariates in :data:`COVARIATES` order (``None``: all), or ``ValueError`` naming the bad one."""
    chosen = COVARIATES if covariates is None else tuple(str(c) for c in covariates)
    unknown = [c for c in chosen if c not in COVARIATES]
    if unknown:
        msg = (
            f"metadata_conditioning.covariates has unknown {unknown}; choose a subset of {list(COVARIATES)}, "
            "e.g. metadata_conditioning.covariates=[view]"
        )
        raise ValueError(msg)
    return tuple(c for c in COVARIATES if c in chosen)


def covariate_columns(covariates: Iterable[str] | None) -> list[int]:
    """Columns of :class:`MetadataEncoder`'s vector that hold ``covariates`` (``None``: all), in encoder order.

    Example:
        >>> covariate_columns(["view"])
        [5, 6, 7]
    """
    names = MetadataEncoder().names
    wanted = {feature for c in check_covariates(covariates) for feature in COVARIATE_FEATURES[c]}
    return [i for i, name in enumerate(names) if name in wanted]


def covariate_support(metadata: np.ndarray, covariates: Iterable[str] | None) -> dict[str, int]:
    """Reference films behind each covariate: the fewest films of any of its known levels.

    ``metadata`` is encoded by :class:`MetadataEncoder` (all columns). A view is only estimated from the films of
    that view, so the view covariate is as well supported as its rarer view; age by the films of known age.
    """
    names = MetadataEncoder().names
    x = np.asarray(metadata, dtype=np.float64).reshape(-1, len(names))
    counts: dict[str, int] = {}
    for covariate in check_covariates(covariates):
        if covariate == "age":
            counts[covariate] = int((x[:, names.index("age_missing")] == 0).sum())
        else:
            counts[covariate] = int(min((x[:, names.index(level)] > 0).sum() for level in COVARIATE_LEVELS[covariate]))
    return counts


def supported_covariates(
    metadata: np.ndarray, covariates: Iterable[str] | None, min_films: int
) -> tuple[tuple[str, ...], dict[str, int]]:
    """The covariates a reference of encoded ``metadata`` can support, and those it cannot with their film counts.

    A covariate is kept when each of its known levels has at least ``min_films`` reference films (age: films of
    known age): a correction estimated from a handful of films adds their noise to every film it is applied to.

    Example:
        >>> enc = MetadataEncoder()
        >>> rows = enc.encode_many([(50.0, "M", "PA")] * 12 + [(60.0, "F", "AP")] * 3).numpy()
        >>> supported_covariates(rows, ["view", "sex", "age"], min_films=10)
        (('age',), {'view': 3, 'sex': 3})
    """
    counts = covariate_support(metadata, covariates)
    kept = tuple(c for c, n in counts.items() if n >= min_films)
    return kept, {c: n for c, n in counts.items() if n < min_films}
