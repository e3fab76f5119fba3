"""The phantom chest X-ray dataset: a deterministic, cached stand-in for a real film collection.

Films are drawn by :mod:`cxrad.data.phantom`; this module decides who is filmed how (labels, views with a
configurable AP share per label - the confound the project studies -, ages, sexes, patients, lesions),
writes ``images/``, ``masks/`` and ``samples.csv``, and caches the result per configuration.

Random streams are separated by purpose and derived from ``seed`` alone, so a film never depends on the
others: the dataset plan (``[seed, 0]``), each patient's anatomy (``[seed, 1, patient]``), each film's
positioning/exposure/noise (``[seed, 2, film]``) and its lesions (``[seed, 3, film]``).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cxrad.console import progress
from cxrad.data.lesions import LESION_KINDS, Lesion, sample_lesions
from cxrad.data.phantom import Film, lung_fields, patient_anatomy, render_film, render_film_detailed
from cxrad.data.phantom_realism import DEFAULT_LESION_CONTRAST, REALISM_LEVELS

__all__ = [
    "GENERATOR_VERSION",
    "Lesion",
    "SyntheticConfig",
    "draw_views",
    "generate",
    "load_or_generate",
    "plan_films",
    "read_samples",
    "render_film",
    "save_example_grid",
]

GENERATOR_VERSION = 2  # 2: data.source.realism (simple films unchanged, their cache key is new)
SAMPLES_FILE = "samples.csv"
COLUMNS = (
    "image_path", "label", "age", "sex", "view", "patient_id", "finding_labels", "mask_path",
    "lesion_sizes_mm", "boxes", "boxes_frame", "pixel_spacing_mm",
)  # fmt: skip
_PLAN, _PATIENT, _FILM, _LESION = 0, 1, 2, 3  # tags that keep the random streams apart
_STRING_COLUMNS = ("image_path", "sex", "view", "patient_id", "finding_labels", "mask_path",
                   "lesion_sizes_mm", "boxes")  # fmt: skip


@dataclass(frozen=True)
class SyntheticConfig:
    """What phantom dataset to generate. Validated on construction; lists are accepted for tuples.

    Attributes:
        n_normal: Normal films (label 0).
        n_abnormal: Films with 1..``max_lesions`` lesions (label 1).
        image_size: Side length in pixels.
        seed: Seeds everything; the same config gives byte-identical files.
        ap_share_normal: Share of AP views among normals (NIH: 0.35).
        ap_share_abnormal: Share of AP views among abnormals (NIH: 0.46): the confound knob.
        ap_effect: Strength of the AP look (magnified heart, ...); 0 makes AP identical to PA.
        age_effect: Strength of ageing (heart, aorta, bone density).
        sex_effect: Strength of the female look (breast shadows, smaller thorax).
        findings: Lesion kinds to draw, a subset of ``('nodule', 'mass', 'effusion', 'consolidation')``.
        finding_weights: Sampling weights of ``findings``; None = uniform.
        max_lesions: Lesions per abnormal film are drawn from 1..max_lesions.
        nodule_size_mm: Range of nodule diameters.
        mass_size_mm: Range of mass diameters.
        lesion_contrast: Peak nodule opacity as a fraction of the aerated-lung-to-soft-tissue step (about the
            lung/bone contrast on the film: 0.3 gives a peak about a third of it); masses x1.4,
            consolidations x1.6, effusions x2.6. None = the realism's default (0.12 realistic, where each
            film also scales it by a log-normal factor, so most findings are faint; 0.3 simple).
        field_of_view_mm: Film width in mm; pixel spacing is ``field_of_view_mm / image_size``.
        images_per_patient: Films per patient (> 1 exercises patient-wise splitting).
        realism: ``'realistic'`` (patient, positioning, exposure, device and marker variability, see
            :mod:`cxrad.data.phantom_realism`) or ``'simple'`` (one narrow anatomy, easy lesions: the
            generator before realism was added, byte for byte).
    """

    n_normal: int = 300
    n_abnormal: int = 120
    image_size: int = 256
    seed: int = 0
    ap_share_normal: float = 0.35
    ap_share_abnormal: float = 0.46
    ap_effect: float = 1.0
    age_effect: float = 1.0
    sex_effect: float = 1.0
    findings: tuple[str, ...] = LESION_KINDS
    finding_weights: tuple[float, ...] | None = None
    max_lesions: int = 2
    nodule_size_mm: tuple[float, float] = (5.0, 30.0)
    mass_size_mm: tuple[float, float] = (30.0, 60.0)
    lesion_contrast: float | None = None
    field_of_view_mm: float = 350.0
    images_per_patient: int = 1
    realism: str = "realistic"

    def __post_init__(self) -> None:
        if self.realism not in REALISM_LEVELS:
            _fail("realism", self.realism, "is unknown", f"set data.source.realism to one of {REALISM_LEVELS}")
        if self.lesion_contrast is None:
            object.__setattr__(self, "lesion_contrast", DEFAULT_LESION_CONTRAST[self.realism])
        for f in fields(self):
            object.__setattr__(self, f.name, _normalise(f.name, getattr(self, f.name)))
        _validate(self)

    @property
    def mm_per_px(self) -> float:
        """Pixel spacing in mm."""
        return self.field_of_view_mm / self.image_size


_INT_MINIMA = {
    "n_normal": 0,
    "n_abnormal": 0,
    "image_size": 32,
    "seed": 0,
    "max_lesions": 1,
    "images_per_patient": 1,
}
_REAL_RANGES = {
    "ap_share_normal": (0.0, 1.0),
    "ap_share_abnormal": (0.0, 1.0),
    "ap_effect": (0.0, 3.0),
    "age_effect": (0.0, 3.0),
    "sex_effect": (0.0, 3.0),
    "lesion_contrast": (0.01, 3.0),
    "field_of_view_mm": (50.0, 2000.0),
}
_REAL_TUPLES = ("nodule_size_mm", "mass_size_mm", "finding_weights")


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _normalise(name: str, value: object) -> object:
    """Lists (from Hydra) become tuples and numbers floats, so equal configs hash equally (4 vs 4.0)."""
    if isinstance(value, Sequence) and not isinstance(value, str | tuple):
        value = tuple(value)
    if name in _REAL_RANGES and _is_real(value):
        return float(value)  # type: ignore[arg-type]
    if name in _REAL_TUPLES and isinstance(value, tuple) and all(_is_real(v) for v in value):
        return tuple(float(v) for v in value)
    return value


def _fail(name: str, value: object, rule: str, fix: str) -> None:
    msg = f"SyntheticConfig.{name}={value!r} {rule}; {fix}"
    raise ValueError(msg)


def _validate(cfg: SyntheticConfig) -> None:
    for name, low in _INT_MINIMA.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            _fail(name, value, f"must be an integer >= {low}", f"set data.source.{name} >= {low}")
    if cfg.n_normal + cfg.n_abnormal == 0:
        _fail("n_normal", 0, "with n_abnormal=0 leaves no films", "set data.source.n_normal > 0")
    for name, (low, high) in _REAL_RANGES.items():
        value = getattr(cfg, name)
        if not (_is_real(value) and low <= value <= high):
            _fail(
                name,
                value,
                f"must be in [{low}, {high}]",
                f"set data.source.{name} between {low} and {high}",
            )
    for name in ("nodule_size_mm", "mass_size_mm"):
        value = getattr(cfg, name)
        if not (isinstance(value, tuple) and len(value) == 2 and 0 < value[0] <= value[1]):
            _fail(
                name,
                value,
                "must be (low, high) with 0 < low <= high",
                f"set data.source.{name}: [low, high]",
            )
    kinds = cfg.findings
    if not kinds or set(kinds) - set(LESION_KINDS) or len(set(kinds)) != len(kinds):
        _fail(
            "findings",
            kinds,
            "must be distinct known kinds",
            f"set data.source.findings from {LESION_KINDS}",
        )
    weights = cfg.finding_weights
    if weights is not None and (len(weights) != len(kinds) or min(weights) < 0 or sum(weights) <= 0):
        rule = f"must be {len(kinds)} non-negative numbers with a positive sum"
        _fail("finding_weights", weights, rule, "set data.source.finding_weights to one per finding, or null")


@dataclass(frozen=True)
class FilmPlan:
    """Who is filmed how: one row of the dataset before rendering."""

    index: int
    image_id: str
    patient: int
    label: int
    age: float
    sex: str
    view: str


def draw_views(rng: np.random.Generator, n: int, ap_share: float) -> np.ndarray:
    """Views for ``n`` films with exactly ``round(ap_share * n)`` AP, in random order.

    Exact counts (not coin flips) keep the confound at its configured value even in small datasets.

    Example:
        >>> int((draw_views(np.random.default_rng(0), 20, 0.35) == "AP").sum())
        7
    """
    views = np.full(n, "PA", dtype=object)
    views[rng.permutation(n)[: math.floor(ap_share * n + 0.5)]] = "AP"
    return views


def plan_films(cfg: SyntheticConfig) -> list[FilmPlan]:
    """Labels, views, patients, ages and sexes of every film (cheap: nothing is rendered)."""
    rng = np.random.default_rng([cfg.seed, _PLAN])
    n = cfg.n_normal + cfg.n_abnormal
    labels = rng.permutation(np.r_[np.zeros(cfg.n_normal, int), np.ones(cfg.n_abnormal, int)])
    views = np.empty(n, dtype=object)
    for label, share in ((0, cfg.ap_share_normal), (1, cfg.ap_share_abnormal)):
        members = np.flatnonzero(labels == label)
        views[members] = draw_views(rng, len(members), share)
    patient_of = rng.permutation(n) // cfg.images_per_patient
    n_patients = math.ceil(n / cfg.images_per_patient)
    ages = 18.0 + 72.0 * rng.beta(1.8, 2.2, n_patients)  # mean ~50 y, sd ~16 y, like NIH adults
    sexes = np.where(rng.random(n_patients) < 0.5, "M", "F")
    return [
        FilmPlan(i, f"{i:06d}", int(p), int(labels[i]), round(float(ages[p]), 1), str(sexes[p]), str(views[i]))
        for i, p in enumerate(patient_of)
    ]


def draw_finding_kinds(rng: np.random.Generator, cfg: SyntheticConfig) -> list[str]:
    """Kinds of the lesions on one abnormal film: 1..max_lesions draws by ``finding_weights``."""
    weights = np.ones(len(cfg.findings)) if cfg.finding_weights is None else np.asarray(cfg.finding_weights)
    count = int(rng.integers(1, cfg.max_lesions + 1))
    return [cfg.findings[i] for i in rng.choice(len(cfg.findings), size=count, p=weights / weights.sum())]


def render_planned(cfg: SyntheticConfig, plan: FilmPlan) -> tuple[Film, list[Lesion]]:
    """Render one planned film and the lesions placed on it."""
    anatomy = patient_anatomy(np.random.default_rng([cfg.seed, _PATIENT, plan.patient]), cfg)
    lesions: list[Lesion] = []
    if plan.label:
        rng = np.random.default_rng([cfg.seed, _LESION, plan.index])
        kinds = draw_finding_kinds(rng, cfg)
        lungs = lung_fields(anatomy, plan.age, plan.sex, plan.view, cfg.image_size, cfg)
        lesions = sample_lesions(rng, lungs, kinds, cfg.mm_per_px, cfg.nodule_size_mm, cfg.mass_size_mm)
    film_rng = np.random.default_rng([cfg.seed, _FILM, plan.index])
    film = render_film_detailed(film_rng, cfg.image_size, plan.age, plan.sex, plan.view, lesions, cfg, anatomy)
    return film, lesions


def _box(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    return f"{xs.min()},{ys.min()},{xs.max() - xs.min() + 1},{ys.max() - ys.min() + 1}"


def _row(cfg: SyntheticConfig, plan: FilmPlan, film: Film, lesions: list[Lesion]) -> dict[str, object]:
    kinds = sorted({lesion.kind.capitalize() for lesion in lesions})
    boxes = [f"{les.kind.capitalize()}:{_box(m)}" for les, m in zip(lesions, film.lesion_masks, strict=True) if m.any()]
    return {
        "image_path": f"images/{plan.image_id}.png",
        "label": plan.label,
        "age": plan.age,
        "sex": plan.sex,
        "view": plan.view,
        "patient_id": f"P{plan.patient:06d}",
        "finding_labels": "|".join(kinds) if kinds else "No Finding",
        "mask_path": f"masks/{plan.image_id}.png" if plan.label else "",
        "lesion_sizes_mm": ";".join(f"{les.kind.capitalize()}:{les.size_mm:.1f}" for les in lesions),
        "boxes": ";".join(boxes),
        "boxes_frame": cfg.image_size if boxes else 0,
        "pixel_spacing_mm": cfg.mm_per_px,
    }


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        msg = f"could not write {path}; check that the directory is writable and has free space"
        raise OSError(msg)


def generate(cfg: SyntheticConfig, out_dir: str | Path) -> pd.DataFrame:
    """Render every film into ``out_dir`` and write ``samples.csv`` (paths relative to ``out_dir``).

    Returns:
        The sample table with absolute ``image_path``/``mask_path`` (columns: see ``COLUMNS``).
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    rows = []
    for plan in progress(plan_films(cfg), "synthetic films"):
        film, lesions = render_planned(cfg, plan)
        row = _row(cfg, plan, film, lesions)
        _write_png(out / str(row["image_path"]), film.image)
        if row["mask_path"]:
            _write_png(out / str(row["mask_path"]), film.mask)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.to_csv(out / SAMPLES_FILE, index=False)
    return _absolute_paths(frame, out)


def read_samples(directory: str | Path) -> pd.DataFrame:
    """Read a generated ``samples.csv`` with its paths made absolute relative to ``directory``."""
    root = Path(directory)
    dtypes = dict.fromkeys(_STRING_COLUMNS, str)
    frame = pd.read_csv(root / SAMPLES_FILE, keep_default_na=False, dtype=dtypes)  # keep '' as ''
    return _absolute_paths(frame, root)


def _absolute_paths(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    base = root.resolve()
    return frame.assign(
        image_path=[str(base / p) for p in frame["image_path"]],
        mask_path=[str(base / p) if p else "" for p in frame["mask_path"]],
    )


def config_hash(cfg: SyntheticConfig) -> str:
    """First 12 hex digits of the SHA-1 of the config (as JSON) and ``GENERATOR_VERSION``."""
    payload = json.dumps(asdict(cfg), sort_keys=True) + f"|generator_version={GENERATOR_VERSION}"
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def load_or_generate(cfg: SyntheticConfig, cache_root: str | Path) -> tuple[pd.DataFrame, Path]:
    """Return the dataset for ``cfg`` from ``cache_root/synthetic-<hash>``, generating it on first use.

    Generation goes to a temporary sibling directory renamed into place at the end, so an interrupted run
    never leaves a half-written cache that looks complete.

    Raises:
        FileExistsError: if the cache directory exists without ``samples.csv`` (a foreign or broken folder).
    """
    root = Path(cache_root)
    target = root / f"synthetic-{config_hash(cfg)}"
    if (target / SAMPLES_FILE).is_file():
        return read_samples(target), target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        generate(cfg, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / SAMPLES_FILE).is_file():  # else a concurrent run finished first: use its copy
            msg = f"{target} exists but has no {SAMPLES_FILE}; delete that directory and run again"
            raise FileExistsError(msg) from None
    return read_samples(target), target


# (age, sex, view, findings, patient seed): PA/AP pairs of one patient first, then each lesion kind.
_EXAMPLES = (
    (28, "M", "PA", (), 1), (28, "M", "AP", (), 1), (74, "F", "PA", (), 2), (74, "F", "AP", (), 2),
    (45, "M", "PA", ("nodule",), 3), (61, "F", "PA", ("mass",), 4),
    (77, "M", "PA", ("effusion",), 5), (36, "F", "PA", ("consolidation",), 6),
    (55, "F", "AP", ("nodule",), 7), (68, "M", "AP", ("mass",), 8),
    (83, "F", "AP", ("effusion",), 9), (31, "M", "AP", ("consolidation",), 10),
    (22, "F", "PA", (), 11), (88, "M", "AP", (), 12),
    (50, "M", "PA", ("nodule", "effusion"), 13), (42, "F", "AP", ("mass", "consolidation"), 14),
)  # fmt: skip


def _example(
    cfg: SyntheticConfig, age: float, sex: str, view: str, kinds: tuple[str, ...], seed: int
) -> tuple[Film, str]:
    anatomy = patient_anatomy(np.random.default_rng([seed, _PATIENT]), cfg)
    lungs = lung_fields(anatomy, age, sex, view, cfg.image_size, cfg)
    rng = np.random.default_rng([seed, _LESION])
    lesions = sample_lesions(rng, lungs, kinds, cfg.mm_per_px, cfg.nodule_size_mm, cfg.mass_size_mm)
    film_rng = np.random.default_rng([seed, _FILM])
    film = render_film_detailed(film_rng, cfg.image_size, age, sex, view, lesions, cfg, anatomy)
    found = " + ".join(f"{les.kind} {les.size_mm:.0f} mm" for les in lesions) or "normal"
    return film, f"{view} · {sex} · {age} y\n{found}"


def save_example_grid(path: str | Path, cfg: SyntheticConfig | None = None) -> Path:
    """Render a 4x4 grid of example films (PA/AP pairs, both sexes, young/old, every lesion kind).

    Lesion masks are outlined in red. Uses matplotlib's Agg canvas directly, so no global backend changes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cfg = cfg or SyntheticConfig()
    fig = Figure(figsize=(10.0, 11.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 4)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=0.965, wspace=0.02, hspace=0.13)
    for ax, (age, sex, view, kinds, seed) in zip(axes.flat, _EXAMPLES, strict=True):
        film, caption = _example(cfg, age, sex, view, kinds, seed)
        ax.imshow(film.image, cmap="gray", vmin=0, vmax=255)
        if film.mask.any():
            ax.contour(film.mask > 0, levels=[0.5], colors=["#ff3030"], linewidths=0.7)
        ax.set_title(caption, fontsize=7.5, pad=2, linespacing=1.1)
        ax.set_axis_off()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
