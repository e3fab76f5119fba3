"""One metadata vocabulary for every dataset: ``age`` (years), ``sex`` (M/F/unknown), ``view`` (PA/AP/unknown).

Every loader normalises its raw columns through these parsers, and one encoder turns the normalised values
into the fixed-length vector the models receive.

Views beyond PA/AP (``LATERAL``, ``AP_SUPINE``) enter the vocabulary only where a dataset keeps them separate
(its adapter writes the harmonised name): raw codes such as ``'LL'`` still parse as ``unknown`` by default, and
``AP_SUPINE`` falls back to ``AP`` unless it is kept. Optional covariates (:data:`EXTRA_COVARIATES`: ``site``,
``scanner``, ``portable``) ride along when a source has the column. The encoder's layout for PA/AP data without
extra covariates is the fixed one checkpoints were trained with; extra views and covariates append features.
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
# Every view a dataset may keep separate, in encoder order (PA and AP first: the base layout).
KNOWN_VIEWS = ("PA", "AP", "LATERAL", "AP_SUPINE")
EXTRA_VIEWS = tuple(v for v in KNOWN_VIEWS if v not in VIEWS)
# Covariates carried through the vocabulary when a source has the column (strings; blank -> 'unknown').
EXTRA_COVARIATES = ("site", "scanner", "portable")
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
# Raw codes of the extra views, as the datasets write them (MIMIC 'LL'/'LATERAL', PadChest 'L'/'AP_horizontal').
_EXTRA_VIEW_ALIASES = {
    "LATERAL": "LATERAL",
    "LL": "LATERAL",
    "RL": "LATERAL",
    "L": "LATERAL",
    "XTABLE LATERAL": "LATERAL",
    "AP_SUPINE": "AP_SUPINE",
    "AP SUPINE": "AP_SUPINE",
    "AP_HORIZONTAL": "AP_SUPINE",
}


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


def parse_any_view(value: object, views: Iterable[str] = KNOWN_VIEWS) -> str:
    """Normalise a view into ``views`` (a subset of :data:`KNOWN_VIEWS`), else ``'unknown'``.

    ``AP_SUPINE`` codes (``'AP Supine'``, PadChest's ``'AP_horizontal'``) become ``'AP'`` unless ``AP_SUPINE`` is
    in ``views``; lateral codes (``'LL'``, ``'L'``, ``'LATERAL'``) are ``'LATERAL'`` when it is kept.

    Example:
        >>> parse_any_view("LL"), parse_any_view("AP_horizontal", ("PA", "AP")), parse_any_view("LL", ("PA", "AP"))
        ('LATERAL', 'AP', 'unknown')
    """
    kept = tuple(views)
    if not _present(value):
        return UNKNOWN
    text = str(value).strip().upper()
    view = _EXTRA_VIEW_ALIASES.get(text) or parse_view(text)
    if view == "AP_SUPINE" and view not in kept:
        view = "AP"
    return view if view in kept else UNKNOWN


def view_vocabulary(views: Iterable[object]) -> tuple[str, ...]:
    """The views an encoder separates for data holding ``views``: PA and AP always, then the extra ones present.

    Example:
        >>> view_vocabulary(["AP", "LATERAL", "unknown"]), view_vocabulary(["PA"])
        (('PA', 'AP', 'LATERAL'), ('PA', 'AP'))
    """
    present = set(views)
    return (*VIEWS, *(v for v in EXTRA_VIEWS if v in present))


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value).strip() != ""


def _normalise_view(value: object) -> str:
    """A harmonised extra view name (written by an adapter) is kept; anything else goes through ``parse_view``."""
    return value if isinstance(value, str) and value in EXTRA_VIEWS else parse_view(value)


def parse_covariate(value: object) -> str:
    """An extra covariate's value as a stripped string; blank/NaN -> ``'unknown'`` (booleans -> 'yes'/'no')."""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    return str(value).strip() if _present(value) else UNKNOWN


def normalise_metadata(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``frame`` with ``age``, ``sex`` and ``view`` parsed into the cxrad vocabulary.

    Views an adapter already wrote as :data:`EXTRA_VIEWS` names stay; columns of :data:`EXTRA_COVARIATES`, where
    present, become strings with ``'unknown'`` for blanks.
    """
    out = frame.copy()
    out["age"] = [parse_age(v) for v in out["age"]]
    out["sex"] = [parse_sex(v) for v in out["sex"]]
    out["view"] = [_normalise_view(v) for v in out["view"]]
    for column in extra_covariates(out):
        out[column] = [parse_covariate(v) for v in out[column]]
    return out


def extra_covariates(frame: pd.DataFrame) -> tuple[str, ...]:
    """The :data:`EXTRA_COVARIATES` columns ``frame`` has."""
    return tuple(c for c in EXTRA_COVARIATES if c in frame.columns)


def metadata_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Counts of unknown metadata values (and of films per extra view), for ``metrics.json``."""
    counts = {
        "age_unknown": int(frame["age"].isna().sum()),
        "sex_unknown": int((frame["sex"] == UNKNOWN).sum()),
        "view_unknown": int((frame["view"] == UNKNOWN).sum()),
    }
    for view in EXTRA_VIEWS:
        if (frame["view"] == view).any():
            counts[f"view_{view}"] = int((frame["view"] == view).sum())
    for column in extra_covariates(frame):
        counts[f"{column}_unknown"] = int((frame[column] == UNKNOWN).sum())
    return counts


@dataclass(frozen=True)
class MetadataEncoder:
    """Turns normalised metadata into a float vector.

    Base layout: ``[age_z, age_missing, sex_M, sex_F, sex_unknown, view_PA, view_AP, view_unknown]``. Unknown
    values get their own flag instead of an imputed value, so a model can learn to ignore them. An encoder for
    data with extra views (``views``, e.g. ``('PA', 'AP', 'LATERAL')``) appends one flag per extra view, and one
    for extra covariates (``extras``: ``(name, levels)`` pairs) appends ``<name>_<level>`` flags plus
    ``<name>_unknown``. The base features never change meaning (``view_unknown`` is set for every view other than
    PA/AP, a lateral film included), so models reading the base eight columns see each film as before and the
    appended flags tell a lateral film from one of unknown view. With the defaults the layout is the base one, so
    PA/AP data encodes exactly as before. :meth:`for_table` builds it from the data.

    Example:
        >>> MetadataEncoder().encode(70.0, "F", "AP").tolist()
        [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
        >>> MetadataEncoder(views=("PA", "AP", "LATERAL")).encode(70.0, "F", "LATERAL").tolist()[5:]
        [0.0, 0.0, 1.0, 1.0]
    """

    views: tuple[str, ...] = VIEWS
    extras: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        views = tuple(self.views)
        if views[:2] != VIEWS or any(v not in EXTRA_VIEWS for v in views[2:]) or len(set(views)) != len(views):
            msg = f"encoder views={views} must be ('PA', 'AP') followed by distinct views of {list(EXTRA_VIEWS)}"
            raise ValueError(msg)
        bad = [name for name, _ in self.extras if name not in EXTRA_COVARIATES]
        if bad:
            msg = f"encoder extras {bad} are not covariates; choose from {list(EXTRA_COVARIATES)}"
            raise ValueError(msg)
        object.__setattr__(self, "views", views)
        object.__setattr__(self, "extras", tuple((str(n), tuple(str(v) for v in levels)) for n, levels in self.extras))

    @classmethod
    def for_table(cls, frame: pd.DataFrame) -> MetadataEncoder:
        """The encoder of a normalised sample table: its extra views and extra covariates (levels sorted)."""
        extras = tuple(
            (column, tuple(sorted(set(frame[column].astype(str)) - {UNKNOWN}))) for column in extra_covariates(frame)
        )
        return cls(views=view_vocabulary(frame["view"]), extras=extras)

    @property
    def names(self) -> tuple[str, ...]:
        base = ("age_z", "age_missing", "sex_M", "sex_F", "sex_unknown", "view_PA", "view_AP", "view_unknown")
        extra_views = tuple(f"view_{v}" for v in self.views[len(VIEWS) :])
        extra = tuple(f"{name}_{level}" for name, levels in self.extras for level in (*levels, UNKNOWN))
        return (*base, *extra_views, *extra)

    @property
    def dim(self) -> int:
        return len(self.names)

    def encode(self, age: float, sex: str, view: str, *extra_values: object) -> torch.Tensor:
        """Encode one film; ``extra_values`` follow ``extras`` (one value per extra covariate)."""
        if len(extra_values) != len(self.extras):
            msg = f"encode got {len(extra_values)} extra value(s) for extras {[n for n, _ in self.extras]}"
            raise ValueError(msg)
        missing_age = age is None or math.isnan(age)
        age_z = 0.0 if missing_age else (age - AGE_MEAN_YEARS) / AGE_STD_YEARS
        sex_hot = [float(sex == s) for s in SEXES] + [float(sex not in SEXES)]
        # The base flags keep their meaning whatever the encoder (view_unknown: not PA/AP), so a consumer of the
        # base eight features sees every film as before; the appended flags tell the extra views apart.
        view_hot = [float(view == v) for v in VIEWS] + [float(view not in VIEWS)]
        view_hot += [float(view == v) for v in self.views[len(VIEWS) :]]
        extra_hot = []
        for (_, levels), value in zip(self.extras, extra_values, strict=True):
            extra_hot += [float(str(value) == level) for level in levels] + [float(str(value) not in levels)]
        return torch.tensor([age_z, float(missing_age), *sex_hot, *view_hot, *extra_hot], dtype=torch.float32)

    def encode_many(self, rows: Iterable[tuple]) -> torch.Tensor:
        return torch.stack([self.encode(*row) for row in rows])

    def encode_row(self, row: pd.Series) -> torch.Tensor:
        """Encode one row of a sample table (its ``age``, ``sex``, ``view`` and extra covariate columns)."""
        extra = (row[name] for name, _ in self.extras)
        return self.encode(float(row["age"]), str(row["sex"]), str(row["view"]), *extra)


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


def _features(covariate: str, encoder: MetadataEncoder) -> tuple[str, ...]:
    """The encoder features of one covariate (a view covariate includes the encoder's extra view flags)."""
    if covariate != "view":
        return COVARIATE_FEATURES[covariate]
    return (*COVARIATE_FEATURES["view"], *(f"view_{v}" for v in encoder.views[len(VIEWS) :]))


def _levels(covariate: str, encoder: MetadataEncoder) -> tuple[str, ...]:
    return tuple(f"view_{v}" for v in encoder.views) if covariate == "view" else COVARIATE_LEVELS[covariate]


def covariate_columns(covariates: Iterable[str] | None, encoder: MetadataEncoder | None = None) -> list[int]:
    """Columns of ``encoder``'s vector (default: the base :class:`MetadataEncoder`) that hold ``covariates``
    (``None``: all), in encoder order.

    Example:
        >>> covariate_columns(["view"]), covariate_columns(["view"], MetadataEncoder(("PA", "AP", "LATERAL")))
        ([5, 6, 7], [5, 6, 7, 8])
    """
    encoder = encoder or MetadataEncoder()
    wanted = {feature for c in check_covariates(covariates) for feature in _features(c, encoder)}
    return [i for i, name in enumerate(encoder.names) if name in wanted]


def covariate_support(
    metadata: np.ndarray, covariates: Iterable[str] | None, encoder: MetadataEncoder | None = None
) -> dict[str, int]:
    """Reference films behind each covariate: the fewest films of any of its known levels.

    ``metadata`` is encoded by ``encoder`` (all columns, or a wider encoding it is a prefix of; default the base
    :class:`MetadataEncoder`). A view is only
    estimated from the films of that view, so the view covariate is as well supported as its rarest view (of the
    encoder's views); age by the films of known age.
    """
    encoder = encoder or MetadataEncoder()
    names = encoder.names
    x = np.asarray(metadata, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] > len(names):
        # A wider encoding (extra views or covariates) starts with this encoder's layout: its features are a prefix.
        x = x[:, : len(names)]
    x = x.reshape(-1, len(names))
    counts: dict[str, int] = {}
    for covariate in check_covariates(covariates):
        if covariate == "age":
            counts[covariate] = int((x[:, names.index("age_missing")] == 0).sum())
        else:
            levels = _levels(covariate, encoder)
            counts[covariate] = int(min((x[:, names.index(level)] > 0).sum() for level in levels))
    return counts


def supported_covariates(
    metadata: np.ndarray, covariates: Iterable[str] | None, min_films: int, encoder: MetadataEncoder | None = None
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
    counts = covariate_support(metadata, covariates, encoder)
    kept = tuple(c for c, n in counts.items() if n >= min_films)
    return kept, {c: n for c, n in counts.items() if n < min_films}
