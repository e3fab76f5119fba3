"""The ``realistic`` phantom varies like real films; ``simple`` is the previous generator unchanged."""

from __future__ import annotations

import dataclasses
import hashlib

import cv2
import numpy as np
import pytest

from cxrad.data.lesions import Lesion
from cxrad.data.phantom import lung_fields, patient_anatomy, render_film, render_film_detailed, sample_anatomy
from cxrad.data.phantom_realism import devices_present, draw_variation, finish_film, markers_present
from cxrad.data.synthetic import SyntheticConfig, plan_films, render_planned

# SHA-256 of every image and mask of this config, rendered by the generator before ``realism`` existed.
SIMPLE_REFERENCE = SyntheticConfig(n_normal=4, n_abnormal=4, image_size=64, seed=11, images_per_patient=2,
                                   realism="simple")  # fmt: skip
SIMPLE_REFERENCE_SHA256 = "e6e42d73d2938e32a30d95f9a5297d42fcdd7f92f23c6216e8410a57b85fa4c1"


def _dataset_digest(cfg: SyntheticConfig) -> str:
    digest = hashlib.sha256()
    for plan in plan_films(cfg):
        film, _ = render_planned(cfg, plan)
        digest.update(film.image.tobytes())
        digest.update(film.mask.tobytes())
    return digest.hexdigest()


def test_simple_reproduces_the_previous_generator_byte_for_byte() -> None:
    assert _dataset_digest(SIMPLE_REFERENCE) == SIMPLE_REFERENCE_SHA256


def test_realistic_is_the_default_and_deterministic_per_seed() -> None:
    cfg = dataclasses.replace(SIMPLE_REFERENCE, realism="realistic", lesion_contrast=None)
    assert SyntheticConfig().realism == "realistic"
    assert _dataset_digest(cfg) == _dataset_digest(cfg)
    assert _dataset_digest(cfg) != _dataset_digest(dataclasses.replace(cfg, seed=12))
    assert _dataset_digest(cfg) != SIMPLE_REFERENCE_SHA256


def test_lesion_contrast_defaults_per_realism_and_stays_configurable() -> None:
    realistic, simple = SyntheticConfig(), SyntheticConfig(realism="simple")
    assert realistic.lesion_contrast < simple.lesion_contrast
    assert SyntheticConfig(lesion_contrast=0.5).lesion_contrast == 0.5


def _lung_shape(lungs: np.ndarray) -> tuple[float, float, float]:
    """Lung area (share of the film), centroid column and lowest lung row (normalised)."""
    ys, xs = np.nonzero(lungs)
    return len(xs) / lungs.size, xs.mean() / lungs.shape[1], ys.max() / lungs.shape[0]


def test_realistic_patients_vary_in_lung_outline_and_position() -> None:
    spreads = {}
    for realism in ("simple", "realistic"):
        cfg = SyntheticConfig(image_size=96, realism=realism)
        shapes = [
            _lung_shape(lung_fields(patient_anatomy(np.random.default_rng([p, 1]), cfg), 50.0, "M", "PA", 96, cfg))
            for p in range(40)
        ]
        spreads[realism] = np.std(shapes, axis=0)
    # Lung area, horizontal position and the height of the bases all spread at least twice as much.
    assert (spreads["realistic"] > 2 * spreads["simple"]).all(), spreads


def test_ap_films_carry_more_devices_and_markers_than_pa() -> None:
    variations = [draw_variation(np.random.default_rng([seed, 2])) for seed in range(300)]
    counts = {
        ap: np.mean([len(devices_present(v, ap)) + len(markers_present(v, ap)) for v in variations]) for ap in (0, 1)
    }
    assert counts[1] > 2 * counts[0], counts
    portable = {ap: np.mean(["portable_text" in markers_present(v, ap) for v in variations]) for ap in (0, 1)}
    assert portable[1] > 5 * portable[0], portable


def test_markers_are_burned_into_the_film() -> None:
    cfg = SyntheticConfig(image_size=128)
    variation = next(
        v for v in (draw_variation(np.random.default_rng(s)) for s in range(100)) if markers_present(v, 1.0)
    )
    film = render_film(np.random.default_rng(0), 128, 50.0, "M", "PA", [], cfg)[0]
    marked = finish_film(film, 1.0, variation)
    unmarked = finish_film(film, 1.0, variation._replace(marker_draws=np.ones_like(variation.marker_draws)))
    changed = marked != unmarked
    assert changed.any() and (marked[changed] > unmarked[changed]).mean() > 0.9  # bright text


def test_with_zero_ap_effect_a_realistic_ap_film_equals_its_pa_twin() -> None:
    cfg = SyntheticConfig(image_size=64, ap_effect=0.0)
    pa, ap = (render_film(np.random.default_rng(3), 64, 50.0, "M", view, [], cfg)[0] for view in ("PA", "AP"))
    assert np.array_equal(pa, ap)


def _lesion_contrast(realism: str, seed: int) -> float:
    """Mean absolute change inside a 20 mm nodule's mask at the right lung's centre."""
    cfg = SyntheticConfig(image_size=128, realism=realism)
    anatomy = sample_anatomy(np.random.default_rng([seed, 99]))
    lungs = lung_fields(anatomy, 50.0, "M", "PA", 128, cfg)
    dist = cv2.distanceTransform((lungs == 1).astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    lesion = Lesion("nodule", (x + 0.5, y + 0.5), 20.0, "right", seed=seed)
    film = render_film_detailed(np.random.default_rng(seed), 128, 50.0, "M", "PA", [lesion], cfg, anatomy)
    without, _ = render_film(np.random.default_rng(seed), 128, 50.0, "M", "PA", [], cfg, anatomy)
    inside = film.mask > 0
    return float(np.abs(film.image.astype(float) - without)[inside].mean()) if inside.any() else 0.0


def test_realistic_lesions_are_fainter_than_simple_ones() -> None:
    simple = [_lesion_contrast("simple", seed) for seed in range(12)]
    realistic = [_lesion_contrast("realistic", seed) for seed in range(12)]
    assert np.median(realistic) < 0.7 * np.median(simple), (realistic, simple)


@pytest.mark.parametrize("realism", ["simple", "realistic"])
def test_abnormal_films_keep_a_visible_lesion_mask(realism: str) -> None:
    cfg = SyntheticConfig(n_normal=0, n_abnormal=40, image_size=64, seed=5, realism=realism)
    masks = [render_planned(cfg, plan)[0].mask for plan in plan_films(cfg)]
    assert np.mean([m.any() for m in masks]) > 0.95
