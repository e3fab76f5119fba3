"""global_gaussian: streaming Ledoit-Wolf Gaussians equal sklearn's; a lesion film scores high and is localised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf

from cxrad.backbone import BackboneConfig
from cxrad.model.checkpoint import load_weights, read_checkpoint
from cxrad.model.components.global_gaussian import GlobalGaussianModel, pool_mean_max
from cxrad.model.components.ledoit_wolf import StreamingLedoitWolf, mahalanobis, precision
from cxrad.model.global_gaussian import CxrGlobalGaussian, build_global_gaussian
from tests.backbones import backbone_config
from tests.lesion_films import loader, normal_films, paste_blob, predict, trainer

SIZE = 128
STRIDE = 32  # resnet18's layer4, the configured (deepest) layer


def _resnet18() -> BackboneConfig:
    """The real ``conf/backbone/resnet18.yaml`` (``layers.global_gaussian: [layer4]``) with random weights."""
    return backbone_config("resnet18")


def _vectors(seed: int = 0) -> np.ndarray:
    """(40 films, 3 positions, 12 channels) with unequal channel scales and an offset, so shrinkage matters."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(40, 3, 12)) * rng.uniform(0.5, 3.0, size=12) + 5.0


def test_streamed_ledoit_wolf_is_sklearns_estimate_and_distance() -> None:
    vectors = _vectors()
    stats = StreamingLedoitWolf()
    for chunk in np.array_split(vectors, 5):  # unequal batches, as the last batch of an epoch
        stats.update(torch.from_numpy(chunk))
    gaussian = stats.finalize()
    distance = mahalanobis(torch.from_numpy(vectors).float(), gaussian.mean, precision(gaussian.covariance))
    for position in range(vectors.shape[1]):
        reference = LedoitWolf().fit(vectors[:, position])
        assert 0 < reference.shrinkage_ < 1
        np.testing.assert_allclose(gaussian.shrinkage[position], reference.shrinkage_, rtol=1e-10)
        np.testing.assert_allclose(gaussian.covariance[position], reference.covariance_, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gaussian.mean[position], reference.location_, rtol=1e-10)
        expected = np.sqrt(reference.mahalanobis(vectors[:, position]))  # sklearn returns squared distances
        np.testing.assert_allclose(distance[:, position], expected, rtol=1e-4)


def test_fewer_than_two_training_films_is_an_error_naming_the_count() -> None:
    stats = StreamingLedoitWolf()
    stats.update(torch.zeros(1, 1, 3))
    with pytest.raises(ValueError, match="at least 2 training films, got 1"):
        stats.finalize()


def test_pooled_vector_is_each_channels_mean_then_maximum() -> None:
    maps = torch.tensor([[[[1.0, 3.0], [2.0, 6.0]], [[0.0, 0.0], [0.0, -4.0]]]])  # (1, 2, 2, 2)
    assert pool_mean_max(maps).tolist() == [[3.0, -1.0, 6.0, 0.0]]


def test_an_unfitted_model_refuses_to_score() -> None:
    model = GlobalGaussianModel("resnet18", ["layer4"]).eval()
    with pytest.raises(RuntimeError, match="not fitted"):
        model(torch.rand(1, 3, 64, 64))


@pytest.fixture(scope="module")
def fitted() -> CxrGlobalGaussian:
    model = build_global_gaussian(_resnet18(), SIZE)
    assert model.model.features.layers == ["layer4"]  # the deepest stage
    trainer().fit(model, loader(normal_films(48, SIZE, seed=0)))
    return model


def test_lesion_films_score_above_normal_films_and_their_maps_peak_at_the_lesion(fitted: CxrGlobalGaussian) -> None:
    normal = normal_films(8, SIZE, seed=1)
    center, radius = (int(0.45 * SIZE), int(0.3 * SIZE)), SIZE / 10  # in the right lung field
    lesion, _ = paste_blob(normal, center, radius)
    normal_scores, normal_maps = predict(fitted, normal)
    lesion_scores, lesion_maps = predict(fitted, lesion)
    assert lesion_scores.min() > normal_scores.max()
    assert lesion_maps.shape[-2:] == (SIZE, SIZE)
    for amap in lesion_maps:
        peak = np.unravel_index(int(amap.argmax()), amap.shape)
        # the map's resolution is one feature cell: the peak lies in the lesion's cell or its neighbour
        assert np.hypot(peak[0] - center[0], peak[1] - center[1]) <= radius + STRIDE


def test_fitted_gaussians_round_trip_through_a_weights_only_checkpoint(
    fitted: CxrGlobalGaussian, tmp_path: Path
) -> None:
    films = normal_films(4, SIZE, seed=2)
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": fitted.state_dict()}, path)
    fresh = build_global_gaussian(_resnet18(), SIZE)
    load_weights(fresh, read_checkpoint(path))
    for ours, theirs in zip(predict(fresh, films), predict(fitted, films), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_feature_film_standardises_by_metadata_before_the_gaussians() -> None:
    films = normal_films(24, 64, seed=3)
    model = build_global_gaussian(_resnet18(), 64, conditioning={"name": "film", "fit_films": 16})
    trainer().fit(model, loader(films))
    assert model.model.film.is_fitted
    scores, _ = predict(model, films)
    assert torch.isfinite(scores).all()
    swapped = films._replace(metadata=films.metadata.flip(0))  # other films' age and sex
    assert not torch.allclose(predict(model, swapped)[0], scores)
