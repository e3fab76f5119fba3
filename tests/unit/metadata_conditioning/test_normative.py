import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from cxrad.data.metadata import MetadataEncoder
from cxrad.metadata_conditioning.normative import (
    FEW_REFERENCE_FILMS,
    NormativeMap,
    map_pool,
    map_settings,
    normative_scores,
    pool_maps,
    require_normal_validation,
)
from cxrad.metrics import auroc

ENCODER = MetadataEncoder()


def _maps(n: int, ap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """8x8 anomaly maps: noise everywhere, and a hot border on every AP film (the view shortcut)."""
    maps = rng.normal(1.0, 0.1, (n, 8, 8))
    maps[ap, 0, :] += 1.0
    return maps


def test_normative_maps_remove_the_view_shortcut_and_keep_lesions() -> None:
    rng = np.random.default_rng(0)
    n = 120
    ap = rng.random(n) < 0.4
    metadata = np.stack([ENCODER.encode(50.0, "M", "AP" if a else "PA").numpy() for a in ap])
    normal_maps = _maps(n, ap, rng)
    test_ap = rng.random(n) < 0.5
    test_meta = np.stack([ENCODER.encode(50.0, "M", "AP" if a else "PA").numpy() for a in test_ap])
    test_maps = _maps(n, test_ap, rng)
    lesion = np.arange(n) % 2 == 1
    test_maps[lesion, 4, 4] += 0.6  # a lesion, weaker than the AP border
    raw = test_maps.reshape(n, -1).max(1)
    model = NormativeMap(prior_count=1.0).fit(normal_maps, metadata)
    conditioned = model.score(test_maps, test_meta)
    normal = ~lesion
    raw_leak = auroc(test_ap[normal].astype(int), raw[normal])
    new_leak = auroc(test_ap[normal].astype(int), conditioned[normal])
    assert raw_leak > 0.95 and abs(new_leak - 0.5) < 0.15
    assert auroc(lesion.astype(int), conditioned) > 0.95 > auroc(lesion.astype(int), raw)


def test_threshold_on_calibration_films_hits_its_nominal_fpr_on_test_films() -> None:
    """Calibration and test normals go through one model fitted on the reference films, so a q95 cut set on the
    calibration films flags about 5% of normal test films. Thresholding the reference films' own (in-sample,
    deflated) scores, as the cross-fitting-free scheme did, overshoots."""
    rng = np.random.default_rng(1)
    n_ref, n_cal, n_test = 30, 400, 4000
    n = n_ref + n_cal + n_test
    views = np.where(rng.uniform(size=n) < 0.35, "AP", "PA")
    meta = {i: ENCODER.encode(float(rng.uniform(20, 80)), "M", str(views[i])).numpy() for i in range(n)}
    maps = {i: rng.normal(1.0 + 0.5 * (views[i] == "AP"), 0.1, (4, 4)) for i in range(n)}
    reference, calibration = list(range(n_ref)), list(range(n_ref, n_ref + n_cal))
    test = list(range(n_ref + n_cal, n))
    scores = normative_scores(maps, meta, reference, calibration + test)
    cut = np.percentile(scores.loc[calibration], 95)
    assert abs(float((scores.loc[test] >= cut).mean()) - 0.05) < 0.02
    in_sample = NormativeMap().fit(*(np.stack([d[i] for i in reference]) for d in (maps, meta)))
    in_sample_cut = np.percentile(in_sample.score(*(np.stack([d[i] for i in reference]) for d in (maps, meta))), 95)
    assert float((scores.loc[test] >= in_sample_cut).mean()) > 0.08
    with pytest.raises(ValueError, match="both reference and scored"):
        normative_scores(maps, meta, reference, [reference[0], *test[:3]])


def test_position_spread_keeps_a_noisy_border_from_deciding_every_score() -> None:
    """Normal films vary ten times more along one border than elsewhere: without the per-position spread the
    border's noise is the maximum of every film and hides a lesion that is unusual for its own position."""
    rng = np.random.default_rng(2)
    n = 200
    metadata = np.stack([ENCODER.encode(50.0, "M", "PA").numpy()] * n)

    def maps() -> np.ndarray:
        out = rng.normal(1.0, 0.05, (n, 8, 8))
        out[:, :, 0] = rng.normal(1.0, 0.5, (n, 8))
        return out

    reference, test = maps(), maps()
    lesion = np.arange(n) % 2 == 1
    test[lesion, 4, 4] += 0.4  # 8 normal SDs at its position, below the border's typical maximum
    with_spread = NormativeMap(position_spread=True).fit(reference, metadata).score(test, metadata)
    without = NormativeMap(position_spread=False).fit(reference, metadata).score(test, metadata)
    detector_units = NormativeMap(units="detector").fit(reference, metadata).score(test, metadata)
    assert auroc(lesion.astype(int), with_spread) > 0.95
    assert auroc(lesion.astype(int), without) < 0.75
    assert auroc(lesion.astype(int), detector_units) < 0.75  # the detector's own weighting: the border decides


def test_detector_units_keep_a_lesion_where_normal_films_vary_most() -> None:
    """The converse of the position spread: a lesion of 3 normal SDs on the noisy border is a large anomaly in
    the detector's units but an ordinary z-score among 64 positions' z-scores. Both units remove the AP shift."""
    rng = np.random.default_rng(0)
    n = 200

    def films() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ap = rng.random(n) < 0.4
        maps = rng.normal(1.0, 0.05, (n, 8, 8))
        maps[:, :, 0] = rng.normal(1.0, 0.3, (n, 8))  # where normal films vary most (the heart border, say)
        maps[ap] += 0.5  # the view shortcut
        return maps, ap, np.stack([ENCODER.encode(50.0, "M", "AP" if a else "PA").numpy() for a in ap])

    (reference, _, reference_meta), (test, test_ap, test_meta) = films(), films()
    lesion = np.arange(n) % 2 == 1
    test[lesion, rng.integers(0, 8, lesion.sum()), 0] += 0.9
    raw = test.reshape(n, -1).max(1)
    scores = {
        units: NormativeMap(units=units).fit(reference, reference_meta).score(test, test_meta)
        for units in ("sd", "detector")
    }
    found = {units: auroc(lesion.astype(int), score) for units, score in scores.items()}
    assert found["detector"] > 0.9 and found["detector"] > found["sd"] + 0.05
    assert auroc(test_ap[~lesion].astype(int), raw[~lesion]) > 0.95
    for score in scores.values():
        assert auroc(test_ap[~lesion].astype(int), score[~lesion]) < 0.8
    with pytest.raises(ValueError, match=r"map_units=z is unknown; choose from \['sd', 'detector'\]"):
        NormativeMap(units="z")


def test_detector_units_move_each_map_to_the_population_average_film() -> None:
    """``y(p) = mu_bar(p) + sigma_bar / sigma(m) * (a(p) - mu(m, p))``, checked by hand: with no ridge prior the
    regressions on a two-valued view are the groups' own means and spreads. A film exactly at its group's mean map
    scores the population's mean map (its spatial profile kept, not zeroed as a z-map would), whatever its view;
    a lesion counts in the population's spread units, so the same lesion weighs more on the quieter PA films."""
    rng = np.random.default_rng(5)
    n, n_ap = 200, 80
    ap = np.arange(n) < n_ap
    metadata = np.stack([ENCODER.encode(50.0, "M", "AP" if a else "PA").numpy() for a in ap])
    profile = np.linspace(0.0, 1.0, 16).reshape(4, 4)
    maps = profile + rng.normal(0.0, 1.0, (n, 4, 4)) * np.where(ap, 0.1, 0.05)[:, None, None]
    maps[ap, 0, 0] += 1.0  # the AP look, at one position
    model = NormativeMap(prior_count=0.0, units="detector").fit(maps, metadata)
    mean_ap, mean_pa = maps[ap].mean(0), maps[~ap].mean(0)
    population = maps.mean(0)
    residual = np.where(ap[:, None, None], maps - mean_ap, maps - mean_pa) ** 2
    sigma_bar, sigma_ap, sigma_pa = (np.sqrt(residual[i].mean()) for i in (slice(None), ap, ~ap))
    films = np.stack([mean_ap, mean_pa, mean_ap, mean_pa])
    films[2:, 3, 3] += 2.0  # the same lesion on an AP and a PA film
    scores = model.score(films, metadata[[0, n_ap, 0, n_ap]])
    expected = [
        population.max(),
        population.max(),
        population[3, 3] + 2.0 * sigma_bar / sigma_ap,
        population[3, 3] + 2.0 * sigma_bar / sigma_pa,
    ]
    np.testing.assert_allclose(scores, expected, rtol=1e-4)
    assert population.max() > 0.9  # the population map's own maximum, not 0


def test_max_pooling_keeps_a_lesion_smaller_than_a_cell() -> None:
    """A 4-pixel lesion in a 64-pixel cell of a smooth anomaly map: the cell's maximum shows it, its mean does not
    (it is 1/16 of the cell, and a smooth map's normal variation does not average out inside a cell)."""
    rng = np.random.default_rng(4)
    n, size, grid = 200, 64, 8

    def smooth_maps() -> torch.Tensor:  # anomaly maps vary smoothly, like the detectors' upsampled, blurred maps
        coarse = torch.from_numpy(rng.normal(1.0, 0.1, (n, 1, grid, grid))).float()
        return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)

    metadata = np.stack([ENCODER.encode(50.0, "M", "PA").numpy()] * n)
    reference, test = smooth_maps(), smooth_maps()
    lesion = np.arange(n) % 2 == 1
    for i in np.flatnonzero(lesion):
        y, x = rng.integers(8, size - 10, 2)
        test[i, 0, y : y + 2, x : x + 2] += 0.6
    scores = {
        pool: NormativeMap()
        .fit(pool_maps(reference, grid, pool), metadata)
        .score(pool_maps(test, grid, pool), metadata)
        for pool in ("max", "mean")
    }
    assert auroc(lesion.astype(int), scores["max"]) > 0.95
    assert auroc(lesion.astype(int), scores["mean"]) < 0.8
    with pytest.raises(ValueError, match=r"pool=median is unknown; choose from \['max', 'mean'\]"):
        pool_maps(test, grid, "median")


def test_map_settings_of_runs_saved_before_the_map_keys_reproduce_them() -> None:
    old = {"name": "film_normative", "prior_count": 5.0, "scale": True}
    every = {"covariates": ("view", "sex", "age"), "min_reference_films": 0}
    assert map_settings(old) == {"prior_count": 5.0, "scale": True, "position_spread": False, "units": "sd", **every}
    new = {**old, "map_prior_count": 1.0, "position_spread": True, "map_units": "detector", "covariates": ["view"]}
    assert map_settings(new) == {
        "prior_count": 1.0,
        "scale": True,
        "position_spread": True,
        "units": "detector",
        "covariates": ("view",),
        "min_reference_films": 0,
    }
    assert map_pool(old) == "mean" and map_pool({**new, "pool": "max"}) == "max"


def test_a_view_with_few_normal_validation_films_is_named_before_fitting(caplog: pytest.LogCaptureFixture) -> None:
    def samples(n_ap: int) -> pd.DataFrame:
        views = ["PA"] * 30 + ["AP"] * n_ap + ["unknown"] * 3  # unknown views are not a group of their own
        return pd.DataFrame({"split": "val", "label": 0, "view": views})

    conditioning = {"name": "film_normative"}
    with caplog.at_level(logging.WARNING):
        require_normal_validation(conditioning, samples(5))
    assert "view AP: 5" in caplog.text and "data.split.val_fraction" in caplog.text and "PA" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        require_normal_validation(conditioning, samples(FEW_REFERENCE_FILMS))
        require_normal_validation({"name": "none"}, samples(5))  # options without a map reference: silent
    assert caplog.text == ""


def test_the_shipped_map_prior_recovers_most_of_a_small_groups_offset() -> None:
    """10 AP films among 45 normal validation films: the map regressions must not shrink the AP look away."""
    conf = Path(__file__).resolve().parents[3] / "conf" / "metadata_conditioning"
    rng = np.random.default_rng(0)
    ap = np.arange(45) < 10
    metadata = np.stack(
        [ENCODER.encode(float(rng.uniform(20, 80)), "MF"[i % 2], "AP" if a else "PA").numpy() for i, a in enumerate(ap)]
    )
    maps = np.zeros((45, 2, 2)) + ap[:, None, None]  # normal AP films' maps sit 1.0 above PA films'

    def recovered(prior_count: float) -> float:
        model = NormativeMap(prior_count).fit(maps, metadata)
        mean, _ = model.film.conditional_moments(torch.from_numpy(metadata).float())
        return float(mean[ap].mean() - mean[~ap].mean())

    for name in ("normative", "film_normative"):
        with initialize_config_dir(config_dir=str(conf.parent), version_base=None):  # as Hydra composes it
            composed = compose("config", overrides=[f"metadata_conditioning={name}"]).metadata_conditioning
        shipped = float(composed.map_prior_count)
        assert recovered(shipped) > 0.9
    assert recovered(5.0) < 0.8  # the old shared prior_count


def test_shift_only_maps_ignore_the_position_spread() -> None:
    """``scale: false`` subtracts the conditional mean and divides by nothing, per position or otherwise."""
    rng = np.random.default_rng(3)
    maps = rng.normal(1.0, 0.1, (30, 4, 4))
    maps[:, 0, :] *= 5.0
    metadata = np.stack([ENCODER.encode(50.0, "F", "PA").numpy()] * 30)
    model = NormativeMap(scale=False, position_spread=True).fit(maps, metadata)
    expected = (maps.reshape(30, -1) - maps.reshape(30, -1).mean(0)).max(1)
    assert model.score(maps, metadata) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("units", ["sd", "detector"])
def test_maps_of_any_magnitude_get_the_same_scores(units: str) -> None:
    """A flow's maps can reach 1e24 (CS-Flow multiplies three scales' likelihoods): squaring them in float32
    overflows. The scores must be those of the same maps at unit scale (times the scale, in detector units)."""
    rng = np.random.default_rng(3)
    n = 80
    ap = rng.random(n) < 0.4
    metadata = np.stack(
        [ENCODER.encode(40.0 + i % 30, "F" if i % 2 else "M", "AP" if a else "PA").numpy() for i, a in enumerate(ap)]
    )
    maps = _maps(n, ap, rng)
    test_maps = _maps(n, ap, rng)
    scale = 1e22 if units == "sd" else 1.0
    unit = NormativeMap(units=units).fit(maps, metadata).score(test_maps, metadata)
    huge = NormativeMap(units=units).fit(maps * 1e22, metadata).score(test_maps * 1e22, metadata)
    assert np.isfinite(huge).all()
    np.testing.assert_allclose(huge / (1e22 / scale), unit, rtol=1e-4)
