"""feature_ae: the autoencoder learns normal features; a lesion film reconstructs worse, where the lesion is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from cxrad.backbone import BackboneConfig
from cxrad.model.components.feature_ae import ConvAutoencoder, FeatureAEModel, reconstruction_error
from cxrad.model.feature_ae import CxrFeatureAE, build_feature_ae
from cxrad.validate import validate
from tests.backbones import backbone_config
from tests.integration.conftest import compose_config
from tests.lesion_films import loader, normal_films, paste_blob, predict, trainer

SIZE = 64
STRIDE = 4  # the error map's grid: resnet18's layer1, the shallowest configured layer


def _resnet18() -> BackboneConfig:
    """The real ``conf/backbone/resnet18.yaml`` (``layers.feature_ae: [layer1, layer2, layer3]``), random weights."""
    return backbone_config("resnet18")


class EpochLosses(Callback):
    """Each training epoch's mean loss."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del pl_module
        self.losses.append(float(trainer.callback_metrics["train_loss_epoch"]))


def _fit(films: int, epochs: int) -> tuple[CxrFeatureAE, list[float]]:
    model = build_feature_ae(_resnet18(), SIZE, lr=1e-3, seed=0)
    losses = EpochLosses()
    fit = trainer(max_epochs=epochs)
    fit.callbacks.append(losses)
    fit.fit(model, loader(normal_films(films, SIZE, seed=0)))
    return model, losses.losses


@pytest.fixture(scope="module")
def fitted() -> CxrFeatureAE:
    return _fit(films=48, epochs=20)[0]


def test_autoencoder_keeps_the_feature_grid_even_when_it_does_not_halve_evenly() -> None:
    autoencoder = ConvAutoencoder(channels=6, hidden=[8, 16], bottleneck=4)
    for side in (16, 13):
        assert autoencoder(torch.rand(2, 6, side, side)).shape == (2, 6, side, side)


def test_reconstruction_error_is_each_positions_mean_squared_difference() -> None:
    features = torch.zeros(1, 2, 1, 2)
    reconstruction = torch.tensor([[[[1.0, 0.0]], [[3.0, 2.0]]]])
    assert reconstruction_error(features, reconstruction).tolist() == [[[[5.0, 2.0]]]]


def test_an_unknown_film_score_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"score='median' is unknown; use one of \('max', 'mean'\)"):
        FeatureAEModel("resnet18", ["layer1"], hidden=[8], bottleneck=4, score="median")


def test_training_loss_decreases_on_normal_films() -> None:
    _, losses = _fit(films=16, epochs=4)
    assert len(losses) == 4
    assert losses[-1] < losses[0]


@pytest.mark.slow
@pytest.mark.parametrize("score", ["mean", "max"])
def test_a_lesion_film_scores_above_its_normal_self_and_its_map_peaks_at_the_lesion(
    fitted: CxrFeatureAE, score: str
) -> None:
    fitted.model.score = score
    normal = normal_films(8, SIZE, seed=1)
    center, radius = (int(0.45 * SIZE), int(0.3 * SIZE)), SIZE / 10  # in the right lung field
    lesion, _ = paste_blob(normal, center, radius)
    normal_scores, normal_maps = predict(fitted, normal)
    lesion_scores, lesion_maps = predict(fitted, lesion)
    assert (lesion_scores > normal_scores).all()

    def at_lesion(amap: torch.Tensor) -> bool:
        y, x = np.unravel_index(int(amap.argmax()), amap.shape)
        return bool(np.hypot(y - center[0], x - center[1]) <= radius + STRIDE)  # within one feature cell

    # the lesion raises every film's map most where it is; an unusual film's own peak may stay elsewhere
    assert all(at_lesion(after - before) for after, before in zip(lesion_maps, normal_maps, strict=True))
    assert sum(at_lesion(amap) for amap in lesion_maps) > len(lesion_maps) / 2


def test_film_conditioning_trains_the_bottleneck_film_and_scores_depend_on_metadata() -> None:
    films = normal_films(16, SIZE, seed=3)
    model = build_feature_ae(_resnet18(), SIZE, hidden=[32], bottleneck=8, lr=1e-2, conditioning={"name": "film"})
    film = model.model.autoencoder.film
    assert film is not None
    before = [p.detach().clone() for p in film.parameters()]
    trainer(max_epochs=2).fit(model, loader(films))
    assert any(not torch.equal(b, p) for b, p in zip(before, film.parameters(), strict=True))
    scores, _ = predict(model, films)
    swapped = films._replace(metadata=films.metadata.flip(0))
    assert not torch.allclose(predict(model, swapped)[0], scores)


@pytest.mark.parametrize(
    ("override", "message"),
    [("model.detector.score=median", "score=median is unknown"), ("model.detector.hidden=[]", "hidden=")],
)
def test_validate_names_a_bad_setting_and_the_fix(tmp_path: Path, override: str, message: str) -> None:
    cfg = compose_config(["model=feature_ae", override], tmp_path / "run", tmp_path / "cache")
    with pytest.raises(ValueError, match=message):
        validate(cfg)
