"""Patient and film variability for the ``realistic`` phantom: what real chest films vary in beyond anatomy.

The ``simple`` phantom (:mod:`cxrad.data.phantom` alone) draws every patient from a narrow anatomy range and
every film with careful positioning and one exposure, so an image-only detector ranks its films almost
perfectly. Real films vary by patient (body size, lung shape and inflation, heart size, soft tissue), by
positioning (rotation, shift, magnification, crop and collimation), by exposure (window, gamma, dose noise),
and carry devices (ECG electrodes and leads, lines and tubes) and burned-in text ("PORTABLE", "AP", side
markers), far more often on portable AP films. This module draws and renders those nuisances; the renderer
calls it only when ``realism == 'realistic'``.

Every draw takes a fixed number of values from the film's generator whatever the view or the effects, and
the AP share of devices and markers scales with the effective AP strength, so with ``ap_effect=0`` an AP
film still equals its PA twin byte for byte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from cxrad.data.phantom_draw import ellipse, polylines

if TYPE_CHECKING:
    from cxrad.data.phantom import Anatomy, Geometry

REALISM_LEVELS = ("realistic", "simple")
# Default peak nodule opacity (see ``SyntheticConfig.lesion_contrast``): most real findings are faint.
DEFAULT_LESION_CONTRAST = {"realistic": 0.12, "simple": 0.3}
# Chance of each device or marker on a PA film and on a full-strength AP film (linear in between).
DEVICE_RATES = {
    "ecg_electrode": (0.08, 0.55),  # per electrode, up to four
    "endotracheal_tube": (0.01, 0.3),
    "central_line": (0.03, 0.35),
    "nasogastric_tube": (0.02, 0.25),
}
MARKER_RATES = {"portable_text": (0.02, 0.7), "ap_text": (0.02, 0.5), "side_marker": (0.5, 0.6)}
_ELECTRODES = 4
_DEVICE, _WIRE = 0.55, 0.3  # density of a metal electrode/line and of a wire or plastic tube


class FilmVariation(NamedTuple):
    """The realistic film's own draws (after the simple ones), fixed in number whatever the film."""

    angle: float
    shift: tuple[float, float]
    zoom: float
    exposure: float
    gamma: float
    heel: float
    noise_gain: float
    window: tuple[float, float]  # gain and offset (8-bit units) of the final display window
    blur: float  # unsharpness (focal spot, motion, downsampling), in 1/64 of the film width
    lesion_gain: float
    soft: np.ndarray  # (3, 3) coarse soft-tissue field
    soft_amp: float
    collimation: np.ndarray  # (4,) margins left, right, top, bottom (normalised)
    collimation_level: float
    device_draws: np.ndarray  # (len(DEVICE_RATES) + _ELECTRODES - 1,) uniforms deciding presence
    device_places: np.ndarray  # (8, 4) uniforms placing them
    marker_draws: np.ndarray  # (len(MARKER_RATES),)
    marker_places: np.ndarray  # (len(MARKER_RATES), 2)


def sample_patient_anatomy(rng: np.random.Generator) -> Anatomy:
    """One patient's anatomy over the spread of real adults: body and lung size, inflation, heart, fat."""
    from cxrad.data.phantom import Anatomy

    return Anatomy(
        thorax_scale=float(rng.uniform(0.82, 1.12)),
        lung_height=float(rng.uniform(0.8, 1.12)),  # poor to full inspiration
        heart_scale=float(np.clip(rng.normal(1.0, 0.1), 0.8, 1.35)),
        dome_jitter=(float(rng.normal(0, 0.03)), float(rng.normal(0, 0.03))),
        soft_tissue=float(rng.uniform(0.7, 1.5)),
        breast_size=float(rng.uniform(0.4, 1.8)),
        midline=float(rng.normal(0.5, 0.02)),
        detail_seed=int(rng.integers(2**62)),
    )


def draw_variation(rng: np.random.Generator) -> FilmVariation:
    """Positioning, exposure, soft tissue, collimation, devices and markers of one film."""
    return FilmVariation(
        angle=float(np.clip(rng.normal(0, 3.0), -9, 9)),
        shift=(float(rng.normal(0, 0.03)), float(rng.normal(0, 0.03))),
        zoom=float(rng.uniform(1.0, 1.25)),
        exposure=float(rng.lognormal(0, 0.15)),
        gamma=float(rng.uniform(0.75, 1.35)),
        heel=float(rng.normal(0, 0.1)),
        noise_gain=float(rng.uniform(0.5, 1.5)),
        window=(float(rng.uniform(0.8, 1.05)), float(rng.normal(6, 9))),
        blur=float(rng.uniform(0.2, 0.9)),
        lesion_gain=float(rng.lognormal(0, 0.4)),
        soft=rng.standard_normal((3, 3)).astype(np.float32),
        soft_amp=float(rng.uniform(0.0, 0.12)),
        collimation=np.maximum(rng.normal(-0.02, 0.045, 4), 0.0),
        collimation_level=float(rng.uniform(0, 35) if rng.random() < 0.85 else rng.uniform(190, 250)),
        device_draws=rng.random(len(DEVICE_RATES) + _ELECTRODES - 1),
        device_places=rng.random((8, 4)),
        marker_draws=rng.random(len(MARKER_RATES)),
        marker_places=rng.random((len(MARKER_RATES), 2)),
    )


def _rate(rates: tuple[float, float], ap: float) -> float:
    return rates[0] + (rates[1] - rates[0]) * min(ap, 1.0)


def devices_present(variation: FilmVariation, ap: float) -> list[str]:
    """Names of the devices on the film (an ECG electrode once per electrode), given the AP strength."""
    names = ["ecg_electrode"] * _ELECTRODES + list(DEVICE_RATES)[1:]
    present = variation.device_draws < np.array([_rate(DEVICE_RATES[n], ap) for n in names])
    return [n for n, p in zip(names, present, strict=True) if p]


def markers_present(variation: FilmVariation, ap: float) -> list[str]:
    """Names of the burned-in text markers on the film, given the AP strength."""
    rates = np.array([_rate(r, ap) for r in MARKER_RATES.values()])
    return [n for n, p in zip(MARKER_RATES, variation.marker_draws < rates, strict=True) if p]


def vary_density(density: np.ndarray, geo: Geometry, variation: FilmVariation) -> np.ndarray:
    """Add the patient's uneven soft tissue and the film's devices to the density map (canonical frame)."""
    size = density.shape[0]
    soft = cv2.resize(variation.soft, (size, size), interpolation=cv2.INTER_CUBIC)
    body = np.clip(density / 0.3, 0, 1)  # soft tissue only where there is a body
    out = density + variation.soft_amp * soft * body
    return out + _devices(geo, variation, size)


def _devices(geo: Geometry, variation: FilmVariation, size: int) -> np.ndarray:
    canvas = np.zeros((size, size), np.float32)
    present = devices_present(variation, geo.ap)
    places = variation.device_places
    for k in range(present.count("ecg_electrode")):
        u, v, w, z = places[k]
        side = -1 if k % 2 else 1
        centre = (geo.cx + side * (0.1 + 0.25 * u), geo.lung_top + 0.05 + 0.55 * v)
        ellipse(canvas, centre, (0.016, 0.016), _WIRE, size)
        ellipse(canvas, centre, (0.006, 0.006), _DEVICE, size)
        exit_x = geo.cx + side * (0.5 + 0.1 * w)  # the lead runs off the side of the film
        mid = ((centre[0] + exit_x) / 2, centre[1] + 0.15 * (z - 0.5))
        polylines(canvas, [np.array([centre, mid, (exit_x, centre[1] + 0.2 * (w - 0.5))])], 0.004, _WIRE, size)
    if "endotracheal_tube" in present:
        tip = geo.lung_top + 0.1 + 0.08 * places[4, 0]
        polylines(canvas, [np.array([(geo.cx + 0.004, -0.05), (geo.cx + 0.004, tip)])], 0.012, _WIRE, size)
    if "central_line" in present:
        side = -1 if places[5, 0] < 0.7 else 1  # mostly the right internal jugular
        entry = (geo.cx + side * (0.1 + 0.05 * places[5, 1]), geo.lung_top - 0.05)
        bend = (geo.cx + side * 0.06, geo.lung_top + 0.08)
        tip = (geo.cx - 0.03 + 0.02 * places[5, 2], geo.lung_top + 0.2 + 0.08 * places[5, 3])
        polylines(canvas, [np.array([entry, bend, tip])], 0.005, _DEVICE, size)
    if "nasogastric_tube" in present:
        path = np.array([(geo.cx - 0.01, -0.05), (geo.cx - 0.005, 0.5), (geo.cx + 0.1, geo.dome_y[1] + 0.06)])
        polylines(canvas, [path], 0.006, _WIRE + 0.1 * places[6, 0], size)
    return cv2.GaussianBlur(canvas, (0, 0), 0.5 * size / 256)


def finish_film(image: np.ndarray, ap: float, variation: FilmVariation) -> np.ndarray:
    """Display window, collimation and burned-in text markers (given the AP strength) on the 8-bit film."""
    size = image.shape[0]
    gain, offset = variation.window
    film = cv2.GaussianBlur(image.astype(np.float32), (0, 0), variation.blur * size / 64)
    film = np.clip(film * gain + offset, 0, 255)
    film[collimated(variation, size)] = variation.collimation_level
    out = (film + 0.5).astype(np.uint8)
    for name in markers_present(variation, ap):
        _marker(out, name, variation.marker_places[list(MARKER_RATES).index(name)])
    return out


def collimated(variation: FilmVariation, size: int) -> np.ndarray:
    """Bool map of the film outside the collimated field (blank on the film, so no lesion shows there)."""
    left, right, top, bottom = np.round(variation.collimation * size).astype(int)
    outside = np.ones((size, size), bool)
    outside[top : size - bottom, left : size - right] = False
    return outside


def _marker(image: np.ndarray, name: str, place: np.ndarray) -> None:
    """Burn one text marker into a corner band of the film (markers are not rotated with the patient)."""
    size = image.shape[0]
    text = {"portable_text": "PORTABLE", "ap_text": "AP", "side_marker": "L" if place[1] < 0.8 else "R"}[name]
    scale = size / 256 * (0.35 if name == "portable_text" else 0.5)
    thickness = max(1, round(size / 160))
    (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x = int(0.02 * size + place[0] * size * 0.15)
    y = height + 2 + int(0.03 * size)
    if name == "portable_text":
        x = int(place[0] * max(1, size - width - 2))
    elif name == "side_marker":  # upper outer corner, on the marked side
        x = size - width - x if place[1] < 0.8 else x
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
