"""Heat-map overlays for a radiologist: the film under a semi-transparent anomaly map, ground truth outlined.

Drawn with OpenCV on uint8 RGB arrays; no matplotlib state involved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

MASK_RGB = (0, 255, 0)
CONTOUR_RGB = (255, 255, 255)
BOX_RGB = (0, 255, 255)
ROI_RGB = (255, 0, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX

Box = tuple[str, int, int, int, int]


def panel_caption(score: float, label: int, finding_labels: str, age: float, sex: str, view: str) -> str:
    """Caption of one film for a radiologist.

    Example:
        >>> panel_caption(1.2345, 1, "Effusion|Nodule", 63.0, "F", "AP")
        'score 1.234 | abnormal: Effusion|Nodule\\n63 y, F, AP'
    """
    truth = "normal" if label == 0 else f"abnormal: {finding_labels}"
    age_text = "age unknown" if age is None or math.isnan(age) else f"{age:.0f} y"
    return f"score {score:.4g} | {truth}\n{age_text}, {sex}, {view}"


def overlay_heatmap(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    boxes: Sequence[Box] | None = None,
    caption: str = "",
    alpha: float = 0.4,
    colormap: int = cv2.COLORMAP_JET,
    value_range: tuple[float, float] | None = None,
    fade: bool = False,
    contour_level: float | None = None,
    roi_mask: np.ndarray | None = None,
) -> np.ndarray:
    """The film with its anomaly map blended on top, ground truth outlined, and a caption band below.

    The map is resized to the film and min-max normalised per image for display (its raw range is printed
    in the caption, so two panels' colours are not comparable scores). The ground-truth mask is outlined in
    green; boxes are drawn in cyan with their finding name.

    Args:
        image: uint8 film, (H, W) grayscale or (H, W, 3) RGB.
        anomaly_map: (h, w) float map, higher = more anomalous.
        mask: Optional ground-truth mask of any size (nonzero = lesion); resized to (H, W) by nearest
            neighbour.
        boxes: Optional ``(finding, x, y, w, h)`` boxes in the pixel coordinates of ``image``.
        caption: Text under the film; ``'\\n'`` starts a new line, long lines wrap.
        alpha: Weight of the map in the blend (0 = film only).
        colormap: An OpenCV colormap constant.
        value_range: Map values shown as the lowest and highest colour (clipped outside); None = the map's own
            min and max.
        fade: Make the map's weight grow with its value (0 at the low end, ``alpha`` at the top), so the film
            stays clean where the map is low.
        contour_level: Outline, in white, where the map reaches this value (e.g. the run's threshold in map
            units); None draws nothing.
        roi_mask: Optional thorax mask the film was scored inside (``preprocessing.roi``), of any size; outlined
            in magenta and named in the caption.

    Returns:
        RGB uint8 array of shape (H + caption band, W, 3); rows ``[:H]`` are the annotated film.

    Raises:
        ValueError: On a non-uint8 or wrongly shaped film, a non-2-D or non-finite map, or ``alpha`` outside
            [0, 1].
    """
    film = to_rgb_uint8(image)
    height, width = film.shape[:2]
    heat, low, high = colorize_map(anomaly_map, (width, height), colormap, value_range)
    if not 0.0 <= alpha <= 1.0:
        msg = f"alpha={alpha} must lie in [0, 1]; 0.4 keeps the film readable"
        raise ValueError(msg)
    values = cv2.resize(np.squeeze(np.asarray(anomaly_map, dtype=np.float32)), (width, height))
    if fade:
        weight = alpha * np.clip((values - low) / (high - low) if high > low else 0.0 * values, 0, 1)[..., None]
        panel = (film * (1 - weight) + heat * weight).round().astype(np.uint8)
    else:
        panel = cv2.addWeighted(film, 1.0 - alpha, heat, alpha, 0.0)
    thickness = max(1, round(min(height, width) / 256))
    if contour_level is not None:
        outline_mask(panel, values >= contour_level, thickness, CONTOUR_RGB)
    if roi_mask is not None:
        outline_mask(panel, roi_mask, thickness, ROI_RGB)
    if mask is not None:
        outline_mask(panel, mask, thickness)
    for box in boxes or ():
        draw_box(panel, box, thickness)
    scale = "colours normalised per image" if value_range is None else "fixed colour scale"
    lines = [*caption.split("\n"), f"map range [{low:.4g}, {high:.4g}] ({scale})"]
    if roi_mask is not None:
        lines.append("magenta: thorax mask the film was scored inside")
    return np.vstack([panel, caption_band(lines, width)])


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """A contiguous (H, W, 3) uint8 copy of a grayscale or RGB film; raises naming the bad dtype/shape."""
    film = np.asarray(image)
    if film.dtype != np.uint8:
        msg = f"image dtype {film.dtype} is not uint8; rescale to 0-255 and cast with .astype(np.uint8)"
        raise ValueError(msg)
    if film.ndim == 3 and film.shape[2] == 1:
        film = film[:, :, 0]
    if film.ndim == 2:
        return cv2.cvtColor(film, cv2.COLOR_GRAY2RGB)
    if film.ndim == 3 and film.shape[2] == 3:
        return np.ascontiguousarray(film).copy()
    msg = f"image shape {film.shape} is neither (H, W) nor (H, W, 3); pass one grayscale or RGB film"
    raise ValueError(msg)


def colorize_map(
    anomaly_map: np.ndarray, size: tuple[int, int], colormap: int, value_range: tuple[float, float] | None = None
) -> tuple[np.ndarray, float, float]:
    """Resize a map to ``size`` (width, height), scale ``value_range`` (default: min-max) to the colormap and
    colour it; return RGB and the range used."""
    values = np.squeeze(np.asarray(anomaly_map, dtype=np.float32))
    if values.ndim != 2:
        msg = f"anomaly_map shape {np.shape(anomaly_map)} is not 2-D; pass one (h, w) map per film"
        raise ValueError(msg)
    if not np.isfinite(values).all():
        msg = "anomaly_map holds NaN/inf values; check the model's anomaly-map output"
        raise ValueError(msg)
    low, high = (float(values.min()), float(values.max())) if value_range is None else map(float, value_range)
    scaled = np.clip((values - low) / (high - low), 0, 1) if high > low else np.zeros_like(values)
    resized = cv2.resize(scaled, size, interpolation=cv2.INTER_LINEAR)
    levels = np.clip(resized * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, colormap), cv2.COLOR_BGR2RGB), low, high


def outline_mask(panel: np.ndarray, mask: np.ndarray, thickness: int, color: tuple[int, int, int] = MASK_RGB) -> None:
    """Draw the outer contours of ``mask`` (resized to the panel) in ``color`` (green), in place."""
    height, width = panel.shape[:2]
    binary = (np.squeeze(np.asarray(mask)) > 0).astype(np.uint8)
    if binary.ndim != 2:
        msg = f"mask shape {np.shape(mask)} is not 2-D; pass one (H, W) mask per film"
        raise ValueError(msg)
    if binary.shape != (height, width):
        binary = cv2.resize(binary, (width, height), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(panel, contours, -1, color, thickness)


def draw_box(panel: np.ndarray, box: Box, thickness: int) -> None:
    """Draw one ``(finding, x, y, w, h)`` box in cyan with its finding name above it, in place."""
    name, x, y, w, h = box
    x, y, w, h = (round(v) for v in (x, y, w, h))
    cv2.rectangle(panel, (x, y), (x + w, y + h), BOX_RGB, thickness)
    scale = font_scale(panel.shape[1])
    (_, text_height), _ = cv2.getTextSize(name, FONT, scale, 1)
    origin = (x, y - 4 if y - 4 - text_height >= 0 else y + h + text_height + 4)
    cv2.putText(panel, name, origin, FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)  # dark halo
    cv2.putText(panel, name, origin, FONT, scale, BOX_RGB, thickness, cv2.LINE_AA)


def font_scale(width: int) -> float:
    """OpenCV font scale that stays legible from 128- to 1024-pixel-wide films."""
    return max(0.35, width / 900)


def caption_band(lines: Sequence[str], width: int) -> np.ndarray:
    """A black RGB band holding ``lines`` in white, wrapped at word boundaries to fit ``width``."""
    scale = font_scale(width)
    (_, line_height), baseline = cv2.getTextSize("Ag", FONT, scale, 1)
    step = line_height + baseline + 4
    thickness = max(1, round(scale * 1.6))
    wrapped = [part for line in lines for part in wrap_text(line, width - 8, scale, thickness)]
    band = np.zeros((step * len(wrapped) + 6, width, 3), dtype=np.uint8)
    for row, text in enumerate(wrapped):
        cv2.putText(band, text, (4, step * (row + 1)), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return band


def wrap_text(line: str, max_width: int, scale: float, thickness: int = 1) -> list[str]:
    """Split ``line`` into pieces no wider than ``max_width`` pixels drawn at ``thickness`` (a single long word
    stays whole)."""
    pieces: list[str] = []
    current = ""
    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and cv2.getTextSize(candidate, FONT, scale, thickness)[0][0] > max_width:
            pieces.append(current)
            candidate = word
        current = candidate
    return [*pieces, current]
