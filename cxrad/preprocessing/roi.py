"""Region of interest of a chest film by classical image processing: score the chest, not its labels and frame.

On real films the most "anomalous" ones are often decided outside the chest: burned-in ``PORTABLE``/``AP``/``L``
markers, collimation borders and black frames. :func:`find_roi` finds three things on the preprocessed film
(after resize, crop and CLAHE; all sizes are fractions of the film's side, so it works from 64 to 1024 px):

1. **markers**: small, very bright connected components that stand out of their surroundings (white top-hat)
   near the film's edges; they are inpainted (``cv2.inpaint``), so the detector never sees them.
2. **border**: whole rows/columns at the edges that are nearly constant and very dark or very bright (black
   frames, collimation shutters); they are filled with the film's median grey, so they carry no texture.
3. **thorax**: the convex hull of the lung fields (the dark Otsu components inside the body, cut from the air
   around it by an erosion), slightly dilated; when the segmentation is implausible a central ellipse is used and a
   warning logged. The anomaly map is restricted to this mask before the film's score is taken
   (:mod:`cxrad.aggregation`).

Example:
    >>> film = np.full((64, 64), 120, np.uint8)
    >>> roi = find_roi(film)
    >>> roi.image.shape, roi.thorax.dtype
    ((64, 64), dtype('bool'))
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

log = logging.getLogger(__name__)

ROI_METHODS = ("none", "classical")
# Learned lung segmenters need weights that cannot be downloaded here; named so the error can say what is missing.
LEARNED_ROI_WEIGHTS = {
    "torchxrayvision": (
        "torchxrayvision's PSPNet lung segmentation weights pspnet_chestxray_best_model_4.pth "
        "(in ~/.torchxrayvision/models_data/)"
    ),
    "anycxr": "AnyCXR lung segmentation weights (a local checkpoint file)",
}
MARKER_LEVEL = 170  # burned-in text is this bright on the CLAHE'd film (grey "PORTABLE" labels reach ~200)
MARKER_CONTRAST = 90  # ... and this much brighter than the darkest of its 1/28-of-the-side neighbourhood
EDGE_BAND = 0.25  # markers sit within this fraction of the side from an edge
MAX_BORDER = 0.2  # at most this fraction of the side is taken as border on each edge
MIN_SEED = 0.003  # an eroded lung seed covers at least this fraction of the film
HULL_RANGE = (0.15, 0.85)  # a plausible thorax covers this fraction of the film
EDGE_MARGIN = 0.03  # a dark seed this close to the edge or the border is the air around the body


class Roi(NamedTuple):
    """A film with its markers and border neutralised, and the masks found (all ``(H, W)``).

    ``image`` is the cleaned uint8 film; ``thorax``, ``markers`` and ``border`` are bool masks; ``fallback`` says
    the thorax is the central ellipse because the lung fields could not be segmented.
    """

    image: np.ndarray
    thorax: np.ndarray
    markers: np.ndarray
    border: np.ndarray
    fallback: bool


def check_roi_method(method: str) -> str:
    """``method`` if cxrad can compute it here; else a one-line error naming the fix (or the missing weights).

    Example:
        >>> check_roi_method("classical")
        'classical'
    """
    if method in LEARNED_ROI_WEIGHTS:
        msg = (
            f"preprocessing.roi={method} needs {LEARNED_ROI_WEIGHTS[method]}, which are not on this machine and are "
            "never downloaded by cxrad; fetch them on a connected machine, copy them to that path and add the "
            "segmenter, or use preprocessing.roi=classical"
        )
        raise ValueError(msg)
    if method not in ROI_METHODS:
        msg = f"preprocessing.roi={method} is unknown; choose from {list(ROI_METHODS)} (or torchxrayvision/anycxr)"
        raise ValueError(msg)
    return method


def find_roi(film: np.ndarray, source: str | Path = "") -> Roi:
    """Markers, border and thorax of a uint8 grayscale film, and the film with markers and border neutralised.

    Args:
        film: ``(H, W)`` uint8 film, after resize, crop and CLAHE.
        source: the film's path, named in the warning when the thorax falls back to the central ellipse.
    """
    border = find_border(film)
    thorax, fallback = thorax_mask(neutralise(film, np.zeros_like(border), border), border)
    # Lungs are dark and markers bright: the thorax does not depend on them, and a small bright thing inside
    # it (a calcified nodule) is a finding, never a marker.
    markers = find_markers(film, border, None if fallback else thorax)
    image = neutralise(film, markers, border)
    if fallback:
        log.warning("no plausible lung fields found in %s; the thorax mask is the central ellipse", source or "a film")
    return Roi(image, thorax, markers, border, fallback)


def find_border(film: np.ndarray, tolerance: int = 12, coverage: float = 0.9) -> np.ndarray:
    """Rows and columns at the edges that are almost constant and very dark or very bright (frames, shutters).

    Each edge is scanned inward while a line has at least ``coverage`` of its pixels within ``tolerance`` grey
    levels of its median, and that median is below 40 or above 215; at most :data:`MAX_BORDER` of the side.
    """
    border = np.zeros(film.shape, dtype=bool)
    height, width = film.shape
    for axis, size in ((0, height), (1, width)):
        lines = film if axis == 0 else film.T
        flat = _flat_extreme_lines(lines.astype(np.int16), tolerance, coverage)
        limit = int(MAX_BORDER * size)
        start = _run_length(flat[:limit])
        end = _run_length(flat[::-1][:limit])
        view = border if axis == 0 else border.T
        view[:start] = True
        view[size - end :] = True
    return border


def _flat_extreme_lines(lines: np.ndarray, tolerance: int, coverage: float) -> np.ndarray:
    median = np.median(lines, axis=1, keepdims=True)
    flat = (np.abs(lines - median) <= tolerance).mean(axis=1) >= coverage
    return flat & ((median[:, 0] < 40) | (median[:, 0] > 215))


def _run_length(flags: np.ndarray) -> int:
    """Number of leading True values."""
    return int(np.argmin(flags)) if not flags.all() else len(flags)


def find_markers(film: np.ndarray, border: np.ndarray | None = None, thorax: np.ndarray | None = None) -> np.ndarray:
    """Burned-in text and markers: small, very bright, high-contrast components near the film's edges.

    A pixel is a candidate when it is bright (at least :data:`MARKER_LEVEL`) and stands at least
    :data:`MARKER_CONTRAST` grey levels above its neighbourhood (white top-hat with a window of 1/28 of the
    side, so ribs, clavicles and the mediastinum, which are wider, do not qualify). A component is kept when its
    box is under 1/8 of the side and at most three times as long as it is wide (a glyph, not a bone edge), its
    centre lies within :data:`EDGE_BAND` of an edge, and at most half of it lies inside ``thorax`` when given
    (a small bright thing in the lungs is a finding). The mask is dilated by a pixel or two to cover the glyphs'
    anti-aliased rims.
    """
    side = min(film.shape)
    window = _odd(side / 28)
    tophat = cv2.morphologyEx(film, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (window, window)))
    candidate = ((film >= MARKER_LEVEL) & (tophat >= MARKER_CONTRAST)).astype(np.uint8)
    if border is not None:
        candidate[border] = 0
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    keep = np.zeros(count, dtype=bool)
    height, width = film.shape
    for label in range(1, count):
        x, y, w, h, _ = stats[label]
        cx, cy = centroids[label]
        small = max(w, h) <= side / 8 and max(w, h) <= 3 * min(w, h) + 2  # glyphs, not bone edges
        near_edge = min(cx, width - 1 - cx) < EDGE_BAND * width or min(cy, height - 1 - cy) < EDGE_BAND * height
        in_thorax = thorax is not None and thorax[labels == label].mean() > 0.5
        keep[label] = small and near_edge and not in_thorax
    markers = keep[labels]
    grow = max(1, round(side / 128))
    return cv2.dilate(markers.astype(np.uint8), np.ones((2 * grow + 1,) * 2, np.uint8)).astype(bool)


def neutralise(film: np.ndarray, markers: np.ndarray, border: np.ndarray) -> np.ndarray:
    """The film with markers inpainted from their surroundings and the border filled with the median grey."""
    image = film.copy()
    if border.any() and (~border).any():
        image[border] = np.uint8(np.median(film[~border]))
    if markers.any():
        radius = max(2, round(min(film.shape) / 64))
        image = cv2.inpaint(image, markers.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return image


def thorax_mask(film: np.ndarray, border: np.ndarray) -> tuple[np.ndarray, bool]:
    """Convex hull of the lung fields, dilated by 1/32 of the side; ``(central ellipse, True)`` when implausible.

    Lungs are the dark side of an Otsu split of the blurred film inside its border (:func:`lung_fields`). The hull
    is implausible when it covers less or more of the film than :data:`HULL_RANGE`.
    """
    side = min(film.shape)
    inside = ~border
    if inside.sum() < film.size * HULL_RANGE[0]:  # (almost) all border: nothing better than the ellipse
        return central_ellipse(film.shape), True
    blurred = cv2.GaussianBlur(film, (0, 0), sigmaX=side / 64)
    level, _ = cv2.threshold(blurred[inside].reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    lungs = lung_fields(((blurred <= level) & inside).astype(np.uint8), border)
    if lungs is None:
        return central_ellipse(film.shape) & inside, True  # never over the border
    hull = np.zeros(film.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(cv2.findNonZero(lungs)), 1)
    grow = _odd(side / 16)
    hull = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow))).astype(bool) & inside
    if not HULL_RANGE[0] <= hull.mean() <= HULL_RANGE[1]:
        return central_ellipse(film.shape) & inside, True  # never over the border
    return hull, False


def lung_fields(dark: np.ndarray, border: np.ndarray) -> np.ndarray | None:
    """The lung fields in a dark mask: one seed per half of the film, grown back; None when there is none.

    The dark mask also holds the air around the body, often joined to a lung through the axilla or above the
    shoulder. Eroding by 1/20 of the side cuts such thin bridges; in each half of the film the largest eroded
    component clear of the edges and the border, centred in the chest's band, is that side's lung seed; seeds are
    dilated back by the same amount within the dark mask. A film with one lung found gets its mirror image too
    (the other lung is hidden by the heart or an effusion, but the thorax is symmetric).
    """
    height, width = dark.shape
    side = min(height, width)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_odd(side / 20),) * 2)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(cv2.erode(dark, kernel), connectivity=4)
    margin = max(1, int(EDGE_MARGIN * side))
    edge = np.ones(dark.shape, dtype=bool)
    edge[margin : height - margin, margin : width - margin] = False
    edge |= cv2.dilate(border.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8)).astype(bool)
    touching = set(np.unique(labels[edge]).tolist())
    seeds = []
    for left in (True, False):
        candidates = [
            (stats[label, cv2.CC_STAT_AREA], label)
            for label in range(1, count)
            if label not in touching
            and (centroids[label][0] < width / 2) == left
            and 0.1 * width < centroids[label][0] < 0.9 * width
            and 0.15 * height < centroids[label][1] < 0.8 * height
            and stats[label, cv2.CC_STAT_AREA] >= MIN_SEED * dark.size
        ]
        seeds += [max(candidates)[1]] if candidates else []
    if not seeds:
        return None
    lungs = cv2.dilate(np.isin(labels, seeds).astype(np.uint8), kernel) & dark
    return lungs | lungs[:, ::-1] if len(seeds) == 1 else lungs


def central_ellipse(shape: tuple[int, int]) -> np.ndarray:
    """A central ellipse over 80% of the width and 85% of the height: where the thorax is on most films."""
    height, width = shape
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, (width // 2, height // 2), (int(0.4 * width), int(0.425 * height)), 0, 0, 360, 1, -1)
    return mask.astype(bool)


def _odd(value: float) -> int:
    return max(3, int(value) // 2 * 2 + 1)
