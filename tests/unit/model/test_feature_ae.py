"""feature_ae: the autoencoder learns normal features; a lesion film reconstructs worse, where the lesion is."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from omegaconf import OmegaConf

from cxrad.backbone import BackboneConfig
from cxrad.model.components.feature_ae import ConvAutoencoder, FeatureAEModel, reconstruction_error
from cxrad.model.feature_ae import CxrFeatureAE, build_feature_ae
from tests.lesion_films import loader, normal_films, paste_blob, predict, trainer

CONF = Path(__file__).resolve().parents[3] / "conf"
SIZE = 64
STRIDE = 4  # the error map's grid: resnet18's layer1, the shallowest configured layer


def _resnet18() -> BackboneConfig:
    """The real ``conf/backbone/resnet18.yaml`` (``layers.feature_ae: [layer1, layer2, layer3]``), random weights."""
    fields = OmegaConf.to_container(OmegaConf.load(CONF / "backbone" / "resnet18.yaml"))
    return BackboneConfig(**{**fields, "pretrained": False})


class EpochLosses(Callback):
    """Each training epoch's mean loss."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del pl_module
        self.losses.append(float(trainer.callback_metrics["train_loss_epoch"]))


class Fitted(NamedTuple):
    model: CxrFeatureAE
    losses: list[float]


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    model = build_feature_ae(_resnet18(), SIZE, lr=1e-3, seed=0)
    losses = EpochLosses()
    fit = trainer(max_epochs=20)
    fit.callbacks.append(losses)
    fit.fit(model, loader(normal_films(48, SIZE, seed=0)))
    return Fitted(model, losses.losses)


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


@pytest.mark.slow
def test_training_loss_decreases_on_normal_films(fitted: Fitted) -> None:
    assert len(fitted.losses) == 20
    assert fitted.losses[-1] < fitted.losses[0]
    assert min(fitted.losses[-5:]) < min(fitted.losses[:5])  # still improving after the first epochs


@pytest.mark.slow
@pytest.mark.parametrize("score", ["mean", "max"])
def test_a_lesion_film_scores_above_its_normal_self_and_its_map_peaks_at_the_lesion(fitted: Fitted, score: str) -> None:
    fitted.model.model.score = score
    normal = normal_films(8, SIZE, seed=1)
    center, radius = (int(0.45 * SIZE), int(0.3 * SIZE)), SIZE / 10  # in the right lung field
    lesion, _ = paste_blob(normal, center, radius)
    normal_scores, _ = predict(fitted.model, normal)
    lesion_scores, lesion_maps = predict(fitted.model, lesion)
    assert (lesion_scores > normal_scores).all()
    peaks = [np.unravel_index(int(amap.argmax()), amap.shape) for amap in lesion_maps]
    at_lesion = [np.hypot(y - center[0], x - center[1]) <= radius + STRIDE for y, x in peaks]
    assert np.mean(at_lesion) >= 0.75  # most films; the rest peak at the film border the backbone pads


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
