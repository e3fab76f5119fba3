"""OpenCV-drawn parts of the chest phantom: bones, pulmonary vessels, mediastinum and airways.

Shapes are polylines and ellipses in normalised coordinates (see :mod:`cxrad.data.phantom`), built for all
ribs (or all vessel branches of a generation) at once with numpy and drawn by one OpenCV call at sub-pixel
precision. Bones are tubes: a faint fill between two brighter cortices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from cxrad.data.phantom import Geometry

_SHIFT = 4  # fixed-point bits: cv2 draws at 1/16 pixel precision
_SIDES = np.array([-1.0, 1.0])  # patient right (image left), patient left (image right)
# Density each part adds at bone strength 1 (soft tissue through the mediastinum is ~1).
_POSTERIOR_RIB, _ANTERIOR_RIB = 0.11, 0.05
_CLAVICLE, _SCAPULA, _SPINE, _HUMERUS = 0.3, 0.14, 0.12, 0.26
_VESSEL = 0.13


def to_fixed(points: np.ndarray | list, size: int) -> np.ndarray:
    """Normalised points -> int32 fixed-point pixel coordinates for cv2's ``shift`` argument."""
    return np.round(np.asarray(points, dtype=np.float64) * size * (1 << _SHIFT)).astype(np.int32)


def _stroke(width: float, value: float, size: int) -> tuple[int, float]:
    """Integer pixel thickness, and the value that keeps the line's density per unit length scale-free."""
    pixels = width * size
    thickness = max(1, round(pixels))
    return thickness, value * pixels / thickness


def polylines(canvas: np.ndarray, paths: np.ndarray | list, width: float, value: float, size: int) -> None:
    """Draw open polylines ``width`` (normalised) thick; ``paths`` is (n, m, 2) or a list of (m, 2)."""
    fixed = list(to_fixed(paths, size)) if isinstance(paths, np.ndarray) else [to_fixed(p, size) for p in paths]
    thickness, value = _stroke(width, value, size)
    cv2.polylines(canvas, fixed, False, value, thickness, cv2.LINE_8, _SHIFT)


def ellipse(
    canvas: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    value: float,
    size: int,
    angle: float = 0.0,
    outline: float | None = None,
) -> None:
    """Draw a filled ellipse, or just its outline ``outline`` (normalised) thick; ``angle`` clockwise, deg."""
    c, a = to_fixed(center, size), to_fixed(axes, size)
    thickness, value = (-1, value) if outline is None else _stroke(outline, value, size)
    cv2.ellipse(canvas, (int(c[0]), int(c[1])), (int(a[0]), int(a[1])), angle, 0, 360, value, thickness,
                cv2.LINE_8, _SHIFT)  # fmt: skip


def _tubes(canvas: np.ndarray, paths: np.ndarray, width: float, size: int) -> None:
    """Long bones seen side-on: ``paths`` (n, m, 2) drawn as faint marrow between bright cortices."""
    polylines(canvas, paths, width, 0.55, size)
    tangent = np.gradient(paths, axis=1)
    normal = np.stack([-tangent[..., 1], tangent[..., 0]], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    edges = np.concatenate([paths + 0.4 * width * normal, paths - 0.4 * width * normal])
    polylines(canvas, edges, width / 4, 1.0, size)


def bones(geo: Geometry, size: int, rng: np.random.Generator) -> np.ndarray:
    """Density of ribs, clavicles, scapulae, spine and humeri (before the age-dependent bone strength)."""
    posterior, anterior, girdle, spine, scapulae = (np.zeros((size, size), np.float32) for _ in range(5))
    _ribs(posterior, anterior, geo, size, rng)
    _clavicles(girdle, geo, size)
    _spine(spine, geo, size)
    _scapulae(scapulae, geo, size)
    x = (np.arange(size, dtype=np.float32) + 0.5) / size
    # Anterior ribs fade medially where the (uncalcified) costal cartilage takes over.
    anterior *= np.clip((np.abs(x - geo.cx) - 0.1) / 0.14, 0, 1)[None, :]
    total = _POSTERIOR_RIB * posterior + _ANTERIOR_RIB * anterior + _CLAVICLE * girdle + _SPINE * spine
    total += _SCAPULA * scapulae + _HUMERUS * _humeri(geo, size)
    return cv2.GaussianBlur(total, (0, 0), 0.7 * size / 256)


def _ribs(posterior: np.ndarray, anterior: np.ndarray, geo: Geometry, size: int, rng: np.random.Generator) -> None:
    t = np.linspace(0, 1, 24)
    k = np.arange(10)[:, None]
    height = (geo.cp_y[0] + geo.cp_y[1]) / 2 - geo.lung_top
    reach = np.array([0.6, 0.86, 0.96] + [1.0] * 7)[:, None]
    y0 = geo.lung_top - 0.04 + k * 0.1 * height + rng.normal(0, 0.003, (2, 10, 1))
    lateral = (geo.lung_w + 0.04) * reach
    d = 0.02 + t * (lateral - 0.02)
    # Posterior ribs leave the spine rising gently, then arch down along the chest wall.
    y = y0 - 0.03 * np.sin(np.pi * t**0.8) + (0.055 + 0.045 * k / 9) * t**2.6
    _tubes(
        posterior,
        np.stack([geo.cx + _SIDES[:, None, None] * d, y], axis=-1).reshape(-1, len(t), 2),
        0.02,
        size,
    )
    # Anterior ribs turn at the chest wall and run obliquely down towards the sternum.
    da = lateral - t * (lateral - 0.1)
    ya = y[..., -1:] + 0.012 + 0.17 * t**1.25 - 0.03 * np.sin(np.pi * t)
    paths = np.stack([geo.cx + _SIDES[:, None, None] * da, ya], axis=-1)[:, :8].reshape(-1, len(t), 2)
    _tubes(anterior, paths, 0.026, size)


def _clavicles(canvas: np.ndarray, geo: Geometry, size: int) -> None:
    t = np.linspace(0, 1, 20)
    d = 0.035 + 0.31 * t
    y = geo.clavicle_y + geo.clavicle_rise * t**1.3 + 0.012 * np.sin(2 * np.pi * t)
    paths = np.stack([np.broadcast_to(geo.cx + _SIDES[:, None] * d, (2, len(t))), np.tile(y, (2, 1))], axis=-1)
    _tubes(canvas, paths, 0.027, size)
    for s in _SIDES:
        ellipse(canvas, (geo.cx + s * 0.04, geo.clavicle_y + 0.003), (0.016, 0.016), 0.8, size)


def _humeri(geo: Geometry, size: int) -> np.ndarray:
    canvas = np.zeros((size, size), np.float32)
    t = np.linspace(0, 1, 6)[:, None]
    for s in _SIDES:
        head = np.array([geo.cx + s * (geo.lung_w + 0.145), geo.lung_top + 0.02])
        foot = np.array([geo.cx + s * (geo.lung_w + 0.22), geo.lung_top + 0.45])
        _tubes(canvas, (head + t * (foot - head))[None], 0.05, size)
        ellipse(canvas, tuple(head), (0.052, 0.052), 0.7, size)
        ellipse(canvas, tuple(head), (0.052, 0.052), 1.0, size, outline=0.006)
    return canvas


def _scapulae(canvas: np.ndarray, geo: Geometry, size: int) -> None:
    """Scapulae: rotated clear of the lungs in PA, projected over their lateral parts in AP."""
    top, m = geo.lung_top, geo.scapula_d
    glenoid = max(geo.lung_w + 0.11, m + 0.12)
    outline_d = np.array([m + 0.03, glenoid, glenoid - 0.02, m + 0.1, m + 0.06, m + 0.01, m])
    outline_y = np.array([top - 0.01, top + 0.05, top + 0.16, top + 0.3, top + 0.4, top + 0.28, top + 0.12])
    polys = np.stack([geo.cx + _SIDES[:, None] * outline_d, np.tile(outline_y, (2, 1))], axis=-1)
    cv2.fillPoly(canvas, [to_fixed(p, size) for p in polys], 0.7, cv2.LINE_8, _SHIFT)
    polylines(canvas, polys[:, 2:5], 0.014, 1.0, size)  # thick lateral border
    polylines(canvas, polys[:, 4:], 0.006, 0.9, size)  # thin medial border


def _spine(canvas: np.ndarray, geo: Geometry, size: int) -> None:
    """Thoracic vertebrae: bodies with end plates, paired pedicles and the spinous process."""
    spacing = ((geo.cp_y[0] + geo.cp_y[1]) / 2 - geo.lung_top) / 10.5
    k = np.arange(16)[:, None]
    y = geo.lung_top - 0.07 + k * spacing
    w = 0.027 * (1 + 0.3 * k / 15)
    h = 0.4 * spacing
    xs = np.concatenate([geo.cx - w, geo.cx + w, geo.cx + w, geo.cx - w], axis=1)
    ys = np.concatenate([y - h, y - h, y + h, y + h], axis=1)
    bodies = np.stack([xs, ys], axis=-1)
    cv2.fillPoly(canvas, [to_fixed(b, size) for b in bodies], 0.5, cv2.LINE_8, _SHIFT)
    polylines(canvas, np.concatenate([bodies[:, :2], bodies[:, 2:]]), 0.004, 0.9, size)  # end plates
    for yk, wk in zip(y[:, 0], w[:, 0], strict=True):
        for s in _SIDES:
            ellipse(canvas, (geo.cx + s * 0.82 * wk, yk - 0.25 * h), (0.007, 0.011), 1.0, size, outline=0.004)
        ellipse(canvas, (geo.cx, yk + 0.6 * h), (0.005, 0.012), 0.8, size)


def vessels(geo: Geometry, size: int, rng: np.random.Generator) -> np.ndarray:
    """Hila and branching pulmonary vessels, thinning and fading towards the periphery."""
    canvas = np.zeros((size, size), np.float32)
    base = np.deg2rad([-70.0, -25.0, 10.0, 40.0, 75.0])
    hila = np.stack([geo.cx + _SIDES * 0.09 * np.sqrt(geo.heart_mag), np.full(2, geo.lung_top + 0.27)], axis=1)
    for hilum in hila:
        ellipse(canvas, tuple(hilum), (0.026, 0.05), 0.9, size)
    angles = np.concatenate([np.pi - base, base]) + rng.normal(0, 0.12, 2 * len(base))
    starts = np.repeat(hila, len(base), axis=0)
    length, width, value = 0.06, 0.011, 1.0
    for _ in range(6):
        ends = starts + length * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        polylines(canvas, np.stack([starts, ends], axis=1), width, value, size)
        n = len(angles)
        spread = np.tile([-1.0, 1.0], n) * rng.uniform(0.2, 0.5, 2 * n)
        angles = np.repeat(angles, 2) + spread + rng.normal(0, 0.1, 2 * n)
        starts = np.repeat(ends, 2, axis=0)
        length, width, value = length * 0.76, width * 0.72, value * 0.75
    return _VESSEL * cv2.GaussianBlur(canvas, (0, 0), 0.8 * size / 256)


def mediastinum(geo: Geometry, size: int) -> np.ndarray:
    """Heart, great vessels and central band: everything that hides the lungs in the middle."""
    canvas = np.zeros((size, size), np.uint8)
    cx, mag = geo.cx, geo.heart_mag
    band = [
        (cx + 0.004 - geo.mediastinum_w, -0.05),
        (cx + 0.004 + geo.mediastinum_w, -0.05),
        (cx + 0.004 + geo.mediastinum_w, 1.05),
        (cx + 0.004 - geo.mediastinum_w, 1.05),
    ]
    cv2.fillPoly(canvas, [to_fixed(band, size)], 1, cv2.LINE_8, _SHIFT)
    ellipse(canvas, geo.knob_c, (geo.knob_r, geo.knob_r), 1, size)
    trunk_c = (geo.knob_c[0] - 0.004, geo.knob_c[1] + 0.07)  # the pulmonary trunk, below the knob
    ellipse(canvas, trunk_c, (0.02 * mag, 0.035), 1, size)
    ellipse(canvas, geo.heart_c, geo.heart_axes, 1, size, angle=25.0)
    atrium_c = (cx - 0.045 * mag, geo.heart_c[1] + 0.02)
    ellipse(canvas, atrium_c, (0.065 * mag, 0.1 * geo.heart_axes[1] / 0.112), 1, size)
    # The descending aorta's left edge shows through the heart; it unfolds and winds with age.
    t = np.linspace(0, 1, 16)
    ys = geo.knob_c[1] + t * (geo.dome_y[1] - geo.knob_c[1])
    xs = (cx + geo.knob_c[0]) / 2 + 0.012 + geo.aorta_wave * np.sin(t * 7.0)
    polylines(canvas, [np.stack([xs, ys], axis=1)], 0.044, 1, size)
    return canvas.astype(bool)


def airways(geo: Geometry, size: int) -> np.ndarray:
    """Trachea, main bronchi and the gastric air bubble under the left hemidiaphragm."""
    canvas = np.zeros((size, size), np.float32)
    carina = (geo.cx + 0.004, geo.lung_top + 0.19)
    polylines(canvas, [[(geo.cx, -0.02), carina]], 0.036, 1.0, size)
    bronchi = [
        [carina, (geo.cx - 0.075, geo.lung_top + 0.25)],
        [carina, (geo.cx + 0.085, geo.lung_top + 0.27)],
    ]
    polylines(canvas, bronchi, 0.02, 0.7, size)
    ellipse(canvas, (geo.cx + 0.15, geo.dome_y[1] + 0.045), (0.04, 0.022), 1.3, size)
    return cv2.GaussianBlur(canvas, (0, 0), 1.3 * size / 256)
