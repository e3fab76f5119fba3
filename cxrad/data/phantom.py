"""Deterministic chest X-ray phantom: patient anatomy, metadata effects and film formation.

A film is drawn as a density (attenuation) map, bright = dense, in coordinates normalised to the image width
(x right, y down, both in [0, 1]), then exposed into an 8-bit film. Radiological convention: the patient's
right is on the image left. Every metadata effect lives in :func:`film_geometry` (anatomy),
:func:`_warp_maps` (positioning) and :func:`_expose` (film), so the strength knobs (``ap_effect``,
``age_effect``, ``sex_effect``) can be audited in three short functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Protocol

import cv2
import numpy as np

from cxrad.data.lesions import Lesion, draw_lesion
from cxrad.data.phantom_draw import airways, bones, mediastinum, vessels
from cxrad.data.phantom_realism import (
    FilmVariation,
    collimated,
    draw_variation,
    finish_film,
    sample_patient_anatomy,
    vary_density,
)

VIEWS = ("PA", "AP")
SEXES = ("M", "F")
# Density a lesion adds per unit of ``lesion_contrast``: the step from aerated lung to soft tissue, so that
# contrast 1 makes a nodule as opaque as the heart and ~0.3 gives about a third of the lung/bone contrast.
LESION_UNIT = 0.6
_AIR = 0.78  # share of the body thickness a full-depth lung replaces by air
_AIRWAY = 0.16
_RETRO = 0.18  # share of full lung depth behind the heart
_TEXTURE = 0.014
_SIDES = (-1.0, 1.0)  # patient right (image left), patient left (image right)


class PhantomSettings(Protocol):
    """The config fields the renderer reads (``SyntheticConfig`` provides them)."""

    @property
    def ap_effect(self) -> float: ...
    @property
    def age_effect(self) -> float: ...
    @property
    def sex_effect(self) -> float: ...
    @property
    def lesion_contrast(self) -> float: ...
    @property
    def field_of_view_mm(self) -> float: ...
    @property
    def realism(self) -> str: ...


@dataclass(frozen=True)
class Anatomy:
    """Patient-specific shape, independent of view and film: one draw per patient, shared by their films."""

    thorax_scale: float = 1.0
    lung_height: float = 1.0
    heart_scale: float = 1.0
    dome_jitter: tuple[float, float] = (0.0, 0.0)
    soft_tissue: float = 1.0
    breast_size: float = 1.0
    midline: float = 0.5
    detail_seed: int = 0


@dataclass(frozen=True)
class Geometry:
    """Positions and sizes (normalised units) of one film's anatomy after the metadata effects."""

    ap: float  # effective AP strength: 0 for PA films
    cx: float
    lung_w: float  # lung half-width from the midline
    body_w: float
    lung_top: float
    cp_y: tuple[float, float]  # costophrenic angles (patient right, left)
    dome_y: tuple[float, float]
    heart_c: tuple[float, float]
    heart_axes: tuple[float, float]
    heart_mag: float
    mediastinum_w: float
    knob_c: tuple[float, float]
    knob_r: float
    aorta_wave: float
    clavicle_y: float
    clavicle_rise: float
    scapula_d: float  # medial border of the scapula, distance from the midline
    bone: float
    breast: float
    soft: float


class Film(NamedTuple):
    """A rendered film: uint8 image and union mask (0/255), plus each lesion's own bool mask."""

    image: np.ndarray
    mask: np.ndarray
    lesion_masks: tuple[np.ndarray, ...]


class _FilmDraw(NamedTuple):
    angle: float
    shift: tuple[float, float]
    zoom: float
    exposure: float
    gamma: float
    heel: float
    noise: np.ndarray


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient's anatomy (thorax width, lung height, heart size, ...) from ``rng``."""
    return Anatomy(
        thorax_scale=float(rng.uniform(0.93, 1.05)),
        lung_height=float(rng.uniform(0.94, 1.05)),
        heart_scale=float(np.clip(rng.normal(1.0, 0.05), 0.88, 1.12)),
        dome_jitter=(float(rng.normal(0, 0.012)), float(rng.normal(0, 0.012))),
        soft_tissue=float(rng.uniform(0.85, 1.15)),
        breast_size=float(rng.uniform(0.8, 1.2)),
        midline=float(rng.normal(0.5, 0.006)),
        detail_seed=int(rng.integers(2**62)),
    )


def patient_anatomy(rng: np.random.Generator, cfg: PhantomSettings) -> Anatomy:
    """Draw one patient's anatomy at the config's realism (``realistic`` spans a wider range of adults)."""
    return sample_patient_anatomy(rng) if cfg.realism == "realistic" else sample_anatomy(rng)


def film_geometry(anatomy: Anatomy, age: float, sex: str, view: str, cfg: PhantomSettings) -> Geometry:
    """Apply the metadata effects to a patient's anatomy.

    AP (portable, supine, heart far from the detector): heart magnified ~18% and mediastinum ~12% wider,
    clavicles higher and flatter, scapulae over the lungs, lungs ~7% shorter. Age: older hearts slightly
    larger, aorta unfolded (knob bigger, more lateral, tortuous), bones osteopenic. Female: smaller thorax and
    breast shadows. Each effect scales linearly with its ``*_effect`` strength.
    """
    ap = cfg.ap_effect if view == "AP" else 0.0
    old = cfg.age_effect * float(np.clip((age - 50.0) / 40.0, -1.0, 1.0))
    aged = max(old, 0.0)
    fem = cfg.sex_effect if sex == "F" else 0.0
    cx = anatomy.midline
    lung_w = 0.355 * anatomy.thorax_scale * (1 - 0.05 * fem)
    lung_top = 0.115 + 0.012 * ap
    cp = lung_top + 0.69 * anatomy.lung_height * (1 - 0.07 * ap) * (1 - 0.03 * fem)
    cp_y = (cp + anatomy.dome_jitter[0] * 0.5, cp + 0.012 + anatomy.dome_jitter[1] * 0.5)
    dome_y = (cp - 0.10 + anatomy.dome_jitter[0], cp - 0.08 + anatomy.dome_jitter[1])
    mag = anatomy.heart_scale * (1 + 0.18 * ap) * (1 + 0.05 * old)
    knob_shift = 0.052 * (1 + 0.12 * ap) + 0.014 * aged
    return Geometry(
        ap=ap,
        cx=cx,
        lung_w=lung_w,
        body_w=lung_w + 0.07 * anatomy.soft_tissue,
        lung_top=lung_top,
        cp_y=cp_y,
        dome_y=dome_y,
        heart_c=(cx + 0.058 * mag, (dome_y[0] + dome_y[1]) / 2 - 0.05),
        heart_axes=(0.145 * mag, 0.112 * anatomy.heart_scale * (1 + 0.08 * ap)),
        heart_mag=mag,
        mediastinum_w=0.048 * (1 + 0.12 * ap) * (1 + 0.1 * aged),
        knob_c=(cx + knob_shift, lung_top + 0.17),
        knob_r=0.027 * (1 + 0.1 * ap) * (1 + 0.2 * aged),
        aorta_wave=0.012 * aged,
        clavicle_y=lung_top + 0.07 - 0.05 * ap,
        clavicle_rise=-0.065 * (1 - 0.7 * min(ap, 1.0)),
        scapula_d=lung_w + 0.025 - 0.115 * ap,
        bone=1.0 - 0.22 * old,
        breast=0.22 * fem * anatomy.breast_size,
        soft=anatomy.soft_tissue,
    )


def lung_fields(anatomy: Anatomy, age: float, sex: str, view: str, size: int, cfg: PhantomSettings) -> np.ndarray:
    """Lung label map (0 outside, 1 patient right, 2 patient left) in the canonical frame.

    Used to place lesions: it is the map :func:`render_film_detailed` draws them against.
    """
    return _lung_maps(film_geometry(anatomy, age, sex, view, cfg), size)[0]


def render_film(
    rng: np.random.Generator,
    size: int,
    age: float,
    sex: str,
    view: str,
    lesions: list[Lesion],
    cfg: PhantomSettings,
    anatomy: Anatomy | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one film; see :func:`render_film_detailed`. Returns ``(image, mask)``, both uint8 (H, W)."""
    film = render_film_detailed(rng, size, age, sex, view, lesions, cfg, anatomy)
    return film.image, film.mask


def render_film_detailed(
    rng: np.random.Generator,
    size: int,
    age: float,
    sex: str,
    view: str,
    lesions: list[Lesion],
    cfg: PhantomSettings,
    anatomy: Anatomy | None = None,
) -> Film:
    """Render one film with per-lesion masks.

    ``rng`` is consumed in a fixed order whatever the view, sex, age or lesions (anatomy when not given, then
    positioning, exposure and noise), so two calls with equally seeded generators differ only by the metadata
    and lesions passed in: with ``ap_effect=0`` an AP film equals its PA twin byte for byte.

    Args:
        rng: Source of the patient's anatomy (when ``anatomy`` is None) and the film's own variation.
        size: Output side length in pixels.
        age: Years; effects saturate outside 10-90.
        sex: ``'M'`` or ``'F'``.
        view: ``'PA'`` or ``'AP'``.
        lesions: Findings to draw, positioned in the canonical frame (see :class:`Lesion`).
        cfg: Effect strengths, lesion contrast and field of view (a ``SyntheticConfig``).
        anatomy: The patient's anatomy, to render several films of one patient; drawn from ``rng`` if None.

    Raises:
        ValueError: for an unknown sex or view or a size below 32.
    """
    _check_inputs(size, sex, view)
    anatomy = patient_anatomy(rng, cfg) if anatomy is None else anatomy
    draw = _draw_film(rng, size)
    # Realistic films draw their extra variation after the simple draws, so ``simple`` stays as it was.
    variation = draw_variation(rng) if cfg.realism == "realistic" else None
    draw = draw if variation is None else _vary_draw(draw, variation)
    geo = film_geometry(anatomy, age, sex, view, cfg)
    density, lungs = _density(geo, anatomy, size)
    contrast = cfg.lesion_contrast
    if variation is not None:
        density = vary_density(density, geo, variation)
        contrast *= variation.lesion_gain
    layers = [draw_lesion(lesion, lungs, cfg.field_of_view_mm / size) for lesion in lesions]
    for opacity, _ in layers:
        density += (contrast * LESION_UNIT) * opacity
    maps = _warp_maps(size, draw, geo.ap, anatomy.detail_seed)
    image = _expose(cv2.remap(density, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), draw, geo.ap)
    image = image if variation is None else finish_film(image, geo.ap, variation)
    lesion_masks = tuple(_warp_mask(mask, maps) for _, mask in layers)
    if variation is not None:
        blank = collimated(variation, size)
        lesion_masks = tuple(mask & ~blank for mask in lesion_masks)
    union = np.zeros((size, size), np.uint8)
    for mask in lesion_masks:
        union[mask] = 255
    return Film(image, union, lesion_masks)


def _check_inputs(size: int, sex: str, view: str) -> None:
    if sex not in SEXES:
        msg = f"sex={sex!r} cannot be rendered; the phantom draws sex in {SEXES}"
        raise ValueError(msg)
    if view not in VIEWS:
        msg = f"view={view!r} cannot be rendered; the phantom draws view in {VIEWS}"
        raise ValueError(msg)
    if size < 32:
        msg = f"size={size} is too small to draw a chest; use an image size >= 32"
        raise ValueError(msg)


@lru_cache(maxsize=8)
def _axes(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pixel-centre coordinates as a row vector (x) and a column vector (y), for broadcasting."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    coords.setflags(write=False)  # shared by every film of this size
    return coords[None, :], coords[:, None]


def _density(geo: Geometry, anatomy: Anatomy, size: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _axes(size)
    scale = size / 256
    lungs, hidden = _lung_maps(geo, size)
    inside = (lungs > 0).astype(np.uint8)
    lung_soft = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 0.9 * scale)
    # Lung behind the heart lets the heart read grey rather than white and the spine show through it.
    retro = cv2.GaussianBlur(hidden.astype(np.float32), (0, 0), 3.0 * scale)
    # The air column thins towards the lung edges, so the margins look less black than the middle.
    depth = np.minimum(cv2.distanceTransform(inside, cv2.DIST_L2, 3) / (0.07 * size), 1.0)
    depth = cv2.GaussianBlur(0.45 + 0.55 * np.sqrt(depth), (0, 0), 2.0 * scale)
    detail = [np.random.default_rng([anatomy.detail_seed, k]) for k in (1, 2, 4)]
    texture = _TEXTURE * _smooth_noise(detail[2], max(4, size // 5), size)
    # Lungs replace part of the thorax thickness by air, so thin lateral lung looks about as dark as thick;
    # breasts lie outside the thorax and simply add.
    air = _AIR * (lung_soft * depth + _RETRO * retro)
    density = _soft_tissue(geo, x, y) * (1 - air) + _breasts(geo, x, y)
    density += lung_soft * (texture + vessels(geo, size, detail[1]))
    density -= _AIRWAY * airways(geo, size)
    density += geo.bone * bones(geo, size, detail[0])
    return density.astype(np.float32), lungs


def _smooth_noise(rng: np.random.Generator, grid: int, size: int) -> np.ndarray:
    coarse = rng.standard_normal((grid, grid)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _lung_maps(geo: Geometry, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Lung labels (1 right, 2 left) and the lung hidden behind the heart and mediastinum (bool)."""
    x, y = _axes(size)
    central = mediastinum(geo, size)
    labels = np.zeros((size, size), np.uint8)
    hidden = np.zeros((size, size), bool)
    for code, side in ((1, 0), (2, 1)):
        envelope = _lung_envelope(geo, side, x, y)
        labels[envelope & ~central] = code
        hidden |= envelope & central
    return labels, hidden


def _quarter(t: np.ndarray) -> np.ndarray:
    """Quarter-circle ramp 0 -> 1: gives the lungs their rounded apices."""
    t = np.clip(t, 0, 1)
    return np.sqrt(1 - (1 - t) ** 2)


def _lung_envelope(geo: Geometry, side: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = _SIDES[side] * (x - geo.cx)
    top, cp, dome = geo.lung_top, geo.cp_y[side], geo.dome_y[side]
    t = np.clip((y - top) / (cp - top), 0, 1)
    apex_d, medial_d = 0.52 * geo.lung_w, 0.015
    lateral = apex_d + (geo.lung_w - apex_d) * _quarter(t / 0.7)
    medial = apex_d - (apex_d - medial_d) * _quarter(t / 0.14)
    peak = 0.45 * geo.lung_w
    outer = np.clip((d - peak) / (geo.lung_w - peak), 0, 1)
    inner = np.clip((peak - d) / (peak - medial_d), 0, 1)
    # Dome: steep into the sharp lateral costophrenic angle, nearly flat towards the heart.
    floor = dome + (cp - dome) * outer**1.7 + 0.03 * inner**2
    return (y >= top) & (d >= medial) & (d <= lateral) & (y <= floor)


def _soft_tissue(geo: Geometry, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Body thickness: elliptic cross-section, neck -> shoulders -> chest wall, plus the arms."""
    rows = np.array([0.0, 0.04, 0.09, geo.lung_top + 0.02, geo.lung_top + 0.16, 0.6, 1.0])
    widths = np.array([0.09, 0.10, 0.33, 0.58, geo.body_w, geo.body_w + 0.01, geo.body_w - 0.015])
    half = np.interp(y[:, 0], rows, widths).astype(np.float32)[:, None]
    # The thorax is thinnest front-to-back at the root of the neck, which lets the clavicles stand out.
    thickness = np.interp(y[:, 0], [0.0, geo.lung_top, geo.lung_top + 0.2, 1.0], [0.8, 0.72, 1.0, 1.0])
    body = thickness.astype(np.float32)[:, None] * np.sqrt(np.clip(1 - ((x - geo.cx) / half) ** 2, 0, 1))
    reach = np.clip((y - geo.lung_top + 0.05) / 0.05, 0, 1) * np.clip((geo.lung_top + 0.62 - y) / 0.1, 0, 1)
    arm_d = geo.lung_w + 0.165
    arms = sum(np.sqrt(np.clip(1 - ((s * (x - geo.cx) - arm_d) / 0.065) ** 2, 0, 1)) for s in _SIDES)
    return geo.soft * np.maximum(body, 0.75 * arms * reach)


def _breasts(geo: Geometry, x: np.ndarray, y: np.ndarray) -> np.ndarray | float:
    """Soft-tissue shadows over the lower zones, densest at their sharp inferior border."""
    if geo.breast <= 0:
        return 0.0
    cy = (geo.cp_y[0] + geo.cp_y[1]) / 2 - 0.14
    total = 0.0
    for s in _SIDES:
        u = (x - geo.cx - s * 0.68 * geo.lung_w) / 0.14
        v = (y - cy) / 0.11
        inside = np.clip(1 - u * u - v * v, 0, 1)
        # Sharp, curved inferior border; the upper part fades into the chest wall.
        total = total + np.where(v > 0, inside**0.3, inside) * np.clip(0.5 + 0.5 * v, 0, 1)
    return geo.breast * total


def _draw_film(rng: np.random.Generator, size: int) -> _FilmDraw:
    """Film-level variation: positioning, exposure and noise (a fixed number of draws, whatever the film)."""
    return _FilmDraw(
        angle=float(np.clip(rng.normal(0, 1.5), -4, 4)),
        shift=(float(rng.normal(0, 0.01)), float(rng.normal(0, 0.01))),
        zoom=float(rng.uniform(0.97, 1.03)),
        exposure=float(rng.lognormal(0, 0.08)),
        gamma=float(rng.uniform(0.9, 1.1)),
        heel=float(rng.normal(0, 0.04)),
        noise=rng.standard_normal((size, size), dtype=np.float32),
    )


def _vary_draw(draw: _FilmDraw, v: FilmVariation) -> _FilmDraw:
    """Realistic positioning and exposure: wider rotation, shift, magnification, dose and window."""
    return _FilmDraw(v.angle, v.shift, v.zoom, v.exposure, v.gamma, v.heel, draw.noise * v.noise_gain)


def _warp_maps(size: int, draw: _FilmDraw, ap: float, detail_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse maps for rotation, shift, zoom and a smooth patient-specific deformation.

    Rotation grows with the AP strength: portable films are positioned less carefully.
    """
    angle = np.deg2rad(draw.angle * (1 + 0.5 * ap))
    centred = np.arange(size, dtype=np.float32) + 0.5 - size / 2
    px = centred[None, :] - draw.shift[0] * size
    py = centred[:, None] - draw.shift[1] * size
    cos, sin = np.cos(angle) / draw.zoom, np.sin(angle) / draw.zoom
    coarse = np.random.default_rng([detail_seed, 3]).normal(0, 0.008 * size, (2, 4, 4)).astype(np.float32)
    dx, dy = (cv2.resize(c, (size, size), interpolation=cv2.INTER_CUBIC) for c in coarse)
    map_x = cos * px + sin * py + size / 2 - 0.5 + dx
    map_y = cos * py - sin * px + size / 2 - 0.5 + dy
    return map_x.astype(np.float32), map_y.astype(np.float32)


def _warp_mask(mask: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    warped = cv2.remap(mask.astype(np.float32), *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    out = warped >= 0.5
    if not out.any() and warped.max() > 0:  # a sub-pixel lesion keeps at least its strongest pixel
        out.flat[int(np.argmax(warped))] = True
    return out


def _expose(density: np.ndarray, draw: _FilmDraw, ap: float) -> np.ndarray:
    """Detector response, window, fog, blur and noise.

    Portable AP films get softer contrast, scatter fog (no grid) and, at their lower dose, more quantum noise.
    """
    size = density.shape[0]
    gain = 1.45 * draw.exposure * (1 - 0.1 * ap)
    film = 1 - np.exp(-gain * density)
    film = np.clip((film - 0.02) / 0.88, 0, 1) ** draw.gamma
    fog = 0.06 * ap
    film = fog + (1 - fog) * film
    film *= 1 + draw.heel * (_axes(size)[1] - 0.5)
    film = cv2.GaussianBlur(film.astype(np.float32), (0, 0), 0.5 * size / 256)
    # Per-pixel noise grows with resolution as each pixel collects fewer photons.
    film += (0.012 * (1 + 1.0 * ap) * (size / 256) ** 0.5) * draw.noise
    return (np.clip(film, 0, 1) * 255 + 0.5).astype(np.uint8)
