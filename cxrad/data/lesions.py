"""Lesions for the chest X-ray phantom: where they go in the lung fields and how they look.

A lesion is drawn as an *opacity* map (added density: it replaces air by fluid or tissue) plus a binary mask,
both in the canonical (un-warped) film frame. ``lungs`` everywhere is the phantom's lung label map: 0 outside
the lungs, 1 for the patient's right lung (image left), 2 for the patient's left lung (image right).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

LESION_KINDS = ("nodule", "mass", "effusion", "consolidation")
SIDES = ("right", "left")
SIDE_CODES = {"right": 1, "left": 2}
# Sizes for the kinds the config does not expose: consolidation extent, effusion fluid height at the wall.
CONSOLIDATION_SIZE_MM = (35.0, 70.0)
EFFUSION_HEIGHT_MM = (25.0, 70.0)
# Peak opacity per kind relative to a nodule: fluid fills the whole lung depth, so effusions look denser.
KIND_GAIN = {"nodule": 1.0, "mass": 1.4, "effusion": 2.6, "consolidation": 1.6}
_MASK_LEVEL = 0.3  # effusion mask: opacity above this fraction of the peak
_FUZZY_MASK_LEVEL = 0.15  # consolidation: its fuzzy edges need a lower cut to stay inside the mask


@dataclass(frozen=True)
class Lesion:
    """One finding drawn on a film.

    Attributes:
        kind: One of ``LESION_KINDS``.
        center_xy: Centre in pixels of the canonical film frame. The film's small rotation and deformation
            move it by a few pixels, so evaluate against the rendered mask and boxes, not this point.
        size_mm: Diameter (nodule, mass), extent (consolidation) or fluid height at the chest wall (effusion).
        side: Patient side of the lung holding it: ``'right'`` (image left) or ``'left'`` (image right).
        seed: Seeds the irregular outline and texture, so the same lesion always renders the same.
    """

    kind: str
    center_xy: tuple[float, float]
    size_mm: float
    side: str
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in LESION_KINDS:
            msg = f"Lesion.kind={self.kind!r} is unknown; use one of {LESION_KINDS}"
            raise ValueError(msg)
        if self.side not in SIDES:
            msg = f"Lesion.side={self.side!r} is unknown; use 'right' (image left) or 'left' (image right)"
            raise ValueError(msg)
        if not self.size_mm > 0:
            msg = f"Lesion.size_mm={self.size_mm} must be > 0"
            raise ValueError(msg)


def draw_lesion(lesion: Lesion, lungs: np.ndarray, mm_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Render one lesion's opacity and mask in the canonical frame.

    Args:
        lesion: What to draw.
        lungs: Lung label map (0 outside, 1 right lung, 2 left lung) of the film, shape (H, W).
        mm_per_px: Pixel spacing, to turn ``size_mm`` into pixels.

    Returns:
        ``(opacity, mask)``: float32 opacity peaking near ``KIND_GAIN[kind]`` and a bool mask, both (H, W).
    """
    rng = np.random.default_rng(lesion.seed)
    radius = lesion.size_mm / 2.0 / mm_per_px
    if lesion.kind == "effusion":
        return _effusion(lungs == SIDE_CODES[lesion.side], lesion.size_mm / mm_per_px, lesion.side)
    if lesion.kind == "consolidation":
        return _consolidation(rng, lesion.center_xy, radius, lungs == SIDE_CODES[lesion.side])
    lobulation = 0.03 if lesion.kind == "nodule" else 0.12
    return _blob(rng, lesion.center_xy, radius, lungs.shape, lobulation, KIND_GAIN[lesion.kind])


def sample_lesions(
    rng: np.random.Generator,
    lungs: np.ndarray,
    kinds: Sequence[str],
    mm_per_px: float,
    nodule_size_mm: tuple[float, float],
    mass_size_mm: tuple[float, float],
) -> list[Lesion]:
    """Place one lesion of each requested kind inside the lung fields (effusions at the base).

    A second effusion goes to the other side; a third has no side left and is skipped. Focal lesions avoid
    overlapping each other while the lung has room.

    Raises:
        ValueError: if the lung map has no lung pixels on a side (image far too small).
    """
    sizes = {"nodule": nodule_size_mm, "mass": mass_size_mm, "consolidation": CONSOLIDATION_SIZE_MM}
    lesions: list[Lesion] = []
    for kind in kinds:
        taken = {les.side for les in lesions if les.kind == "effusion"}
        free = [side for side in SIDES if not (kind == "effusion" and side in taken)]
        if not free:
            continue
        side = free[int(rng.integers(len(free)))]
        side_mask = lungs == SIDE_CODES[side]
        if kind == "effusion":
            size = round(float(rng.uniform(*EFFUSION_HEIGHT_MM)), 1)
            _, mask = _effusion(side_mask, size / mm_per_px, side)
            center = _centroid(mask if mask.any() else side_mask)
        else:
            size = round(float(rng.uniform(*sizes[kind])), 1)
            radius = size / 2.0 / mm_per_px
            need = radius + 1.5 if kind == "nodule" else radius * (0.7 if kind == "mass" else 0.4)
            center = _pick_center(rng, side_mask, need, lesions, mm_per_px)
        lesions.append(Lesion(kind, center, size, side, seed=int(rng.integers(2**31))))
    return lesions


def _pick_center(
    rng: np.random.Generator, side_mask: np.ndarray, need_px: float, others: list[Lesion], mm_per_px: float
) -> tuple[float, float]:
    dist = cv2.distanceTransform(side_mask.astype(np.uint8), cv2.DIST_L2, 5)
    if dist.max() <= 0:
        msg = "the lung field is empty at this image size; use data.synthetic.image_size >= 32"
        raise ValueError(msg)
    ok = dist >= min(need_px, 0.8 * float(dist.max()))
    ys, xs = np.nonzero(ok)
    free = np.ones(len(ys), dtype=bool)
    for other in others:
        if other.kind != "effusion":
            gap = need_px + other.size_mm / 2.0 / mm_per_px
            free &= np.hypot(xs - other.center_xy[0], ys - other.center_xy[1]) >= gap
    if free.any():  # a crowded small lung may have to accept touching lesions
        ys, xs = ys[free], xs[free]
    pick = int(rng.integers(len(ys)))
    return float(xs[pick]) + 0.5, float(ys[pick]) + 0.5


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return round(float(xs.mean()) + 0.5, 2), round(float(ys.mean()) + 0.5, 2)


def _window(center: tuple[float, float], half: float, shape: tuple[int, ...]) -> tuple[slice, slice]:
    cx, cy = center
    x0, x1 = max(0, math.floor(cx - half)), min(shape[1], math.ceil(cx + half) + 1)
    y0, y1 = max(0, math.floor(cy - half)), min(shape[0], math.ceil(cy + half) + 1)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _polar(center: tuple[float, float], rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    ys = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] + 0.5 - center[1]
    xs = np.arange(cols.start, cols.stop, dtype=np.float32)[None, :] + 0.5 - center[0]
    return np.hypot(xs, ys), np.arctan2(ys, xs)


def _smooth_noise(rng: np.random.Generator, grid: int, shape: tuple[int, int]) -> np.ndarray:
    coarse = rng.standard_normal((grid, grid)).astype(np.float32)
    return cv2.resize(coarse, (max(shape[1], 1), max(shape[0], 1)), interpolation=cv2.INTER_CUBIC)


def _blob(
    rng: np.random.Generator,
    center: tuple[float, float],
    radius: float,
    shape: tuple[int, ...],
    lobulation: float,
    gain: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Round (nodule) or lobulated (mass) opacity: a sphere-like profile inside a wavy outline."""
    harmonics = np.arange(2, 6)
    amps = rng.uniform(0.3, 1.0, 4) * lobulation / np.sqrt(harmonics - 1)
    phases = rng.uniform(0, 2 * np.pi, 4)
    rows, cols = _window(center, radius * (1 + amps.sum()) + 3, shape)
    rho, theta = _polar(center, rows, cols)
    outline = radius * (
        1 + np.sum(amps[:, None, None] * np.cos(harmonics[:, None, None] * theta + phases[:, None, None]), axis=0)
    )
    q = rho / np.maximum(outline, 1e-3)
    # Softened sphere profile: dense middle, edge fading over the outer ~20% of the radius.
    local = np.clip(1 - q * q, 0, 1) ** 0.6
    if lobulation > 0.05:
        local *= 0.85 + 0.15 * np.tanh(_smooth_noise(rng, 4, local.shape))
    opacity = np.zeros(shape[:2], np.float32)
    mask = np.zeros(shape[:2], bool)
    opacity[rows, cols] = gain * local
    mask[rows, cols] = q <= 1
    return opacity, mask


def _consolidation(
    rng: np.random.Generator, center: tuple[float, float], radius: float, side_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Patchy airspace opacity: coarse patches, fine acinar texture, air bronchograms, lung-bounded."""
    rows, cols = _window(center, radius * 1.3 + 3, side_mask.shape)
    rho, _ = _polar(center, rows, cols)
    shape = rho.shape
    patches = 1 - (rho / radius) ** 2 + 0.45 * _smooth_noise(rng, 5, shape)
    texture = 0.75 + 0.25 * np.tanh(_smooth_noise(rng, max(6, int(radius / 2)), shape))
    local = np.clip((patches - 0.1) / 0.4, 0, 1) * texture
    local *= 1 - 0.6 * _bronchograms(rng, shape, (center[0] - cols.start, center[1] - rows.start), radius)
    local *= side_mask[rows, cols]
    local = cv2.GaussianBlur(local.astype(np.float32), (0, 0), max(0.7, 0.06 * radius))
    opacity = np.zeros(side_mask.shape, np.float32)
    mask = np.zeros(side_mask.shape, bool)
    opacity[rows, cols] = KIND_GAIN["consolidation"] * local
    mask[rows, cols] = local >= _FUZZY_MASK_LEVEL
    return opacity, mask


def _bronchograms(
    rng: np.random.Generator, shape: tuple[int, int], center: tuple[float, float], radius: float
) -> np.ndarray:
    """Branching air-filled bronchi made visible by the opaque alveoli around them."""
    canvas = np.zeros(shape, np.float32)
    thickness = max(1, round(radius / 9))
    for _ in range(int(rng.integers(2, 4))):
        angle = rng.uniform(0, 2 * np.pi)
        steps = np.cumsum(rng.normal(0, 0.25, 6)) + angle
        start = np.array(center) + rng.normal(0, radius * 0.2, 2)
        pts = start + np.cumsum(np.c_[np.cos(steps), np.sin(steps)] * radius * 0.16, axis=0)
        pts = np.vstack([start, pts])
        cv2.polylines(canvas, [np.round(pts * 16).astype(np.int32)], False, 1.0, thickness, cv2.LINE_AA, 4)
    return np.clip(canvas, 0, 1)


def _effusion(side_mask: np.ndarray, height_px: float, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Fluid in the costophrenic angle under a meniscus that climbs the lateral chest wall."""
    opacity = np.zeros(side_mask.shape, np.float32)
    ys, xs = np.nonzero(side_mask)
    if len(ys) == 0:
        return opacity, np.zeros(side_mask.shape, bool)
    bottom = float(ys.max()) + 1
    lateral, medial = (float(xs.min()), float(xs.max()) + 1) if side == "right" else (xs.max() + 1.0, xs.min())
    col = np.arange(side_mask.shape[1], dtype=np.float32)[None, :] + 0.5
    row = np.arange(side_mask.shape[0], dtype=np.float32)[:, None] + 0.5
    t = np.clip(np.abs(col - lateral) / max(abs(medial - lateral), 1.0), 0, 1)
    # Concave upper border: highest at the chest wall, sloping down medially (the classic meniscus sign).
    meniscus = bottom - height_px + 0.35 * height_px * np.sqrt(t)
    local = np.sqrt(np.clip((row - meniscus) / (0.15 * height_px + 1), 0, 1)) * side_mask
    opacity[:] = KIND_GAIN["effusion"] * local
    return opacity, local >= _MASK_LEVEL
