"""Trained conditioning: DRAEM's FiLM and FastFlow's conditional couplings learn from the detector's loss and
scores use metadata."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from cxrad.backbone import BackboneConfig
from cxrad.data.metadata import MetadataEncoder
from cxrad.model.conditioning import metadata_of
from cxrad.model.draem import CxrDraem, build_draem
from cxrad.model.fastflow import CxrFastflow, build_fastflow

FILM = {"name": "film", "hidden": 16}
SIZE = 64


@dataclass
class TinyBatch:
    image: torch.Tensor
    metadata: torch.Tensor


def _batch(view: str = "AP") -> TinyBatch:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(4, 3, SIZE, SIZE, generator=generator)
    encoder = MetadataEncoder()
    metadata = encoder.encode_many([(60.0, "F", view), (30.0, "M", view), (45.0, "F", view), (70.0, "M", view)])
    return TinyBatch(image=image, metadata=metadata)


def _resnet18() -> BackboneConfig:
    layers = {"fastflow": ["layer1", "layer2", "layer3"]}
    return BackboneConfig(name="resnet18", timm_name="resnet18", pretrained=False, layers=layers)


def _draem(tmp_path) -> CxrDraem:  # noqa: ANN001
    model = build_draem(image_size=SIZE, texture_dir=tmp_path / "textures", conditioning=FILM)
    assert isinstance(model, CxrDraem)
    return model


def _fastflow() -> CxrFastflow:
    model = build_fastflow(_resnet18(), image_size=SIZE, flow_steps=2, conditioning=FILM)
    assert isinstance(model, CxrFastflow)
    return model


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    configured = model.configure_optimizers()
    return configured[0][0] if isinstance(configured, tuple | list) else configured


def _conditioning_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """DRAEM: its FiLM's parameters; FastFlow: the coupling subnets' first convs, which read the metadata."""
    if isinstance(model, CxrDraem):
        return list(model.model.film.parameters())
    return [conv.weight for conv in model.model.condition_convs()]


def _metadata_weights(model: torch.nn.Module, grads: bool = False) -> list[torch.Tensor | None]:
    """The weights (or their gradients) that turn metadata into modulation, zero at initialisation in both
    models: DRAEM's FiLM's last layer; the metadata columns of FastFlow's coupling subnets' first convs."""
    if isinstance(model, CxrDraem):
        weights, columns = [model.model.film.net[-1].weight], slice(None)
    else:
        weights = [conv.weight for conv in model.model.condition_convs()]
        columns = slice(-MetadataEncoder().dim, None)
    if grads:
        return [None if weight.grad is None else weight.grad[:, columns] for weight in weights]
    return [weight[:, columns] for weight in weights]


@pytest.fixture(params=["draem", "fastflow"])
def conditioned(request, tmp_path):  # noqa: ANN001, ANN201
    torch.manual_seed(0)
    return _draem(tmp_path) if request.param == "draem" else _fastflow()


def test_one_step_trains_the_film(conditioned) -> None:  # noqa: ANN001
    film_parameters = _conditioning_parameters(conditioned)
    optimised = {id(p) for group in _optimizer(conditioned).param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in film_parameters)  # anomalib's optimiser covers the FiLM

    optimizer = _optimizer(conditioned)
    before = [p.detach().clone() for p in film_parameters]
    conditioned.train()
    loss = conditioned.training_step(_batch(), 0)["loss"]
    optimizer.zero_grad()
    loss.backward()
    grads = _metadata_weights(conditioned, grads=True)
    assert all(grad is not None and grad.abs().sum() > 0 for grad in grads)
    optimizer.step()
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, film_parameters, strict=True))


def _as_if_trained(model: torch.nn.Module) -> None:
    """Perturb the metadata weights (trained ones are no longer zero) and set BatchNorm statistics.

    At initialisation DRAEM's BatchNorm layers hold unit running statistics, which makes the untrained
    discriminator's softmax ~0.5 everywhere whatever its input; one training-mode pass gives them the
    statistics training would.
    """
    with torch.no_grad():
        for weights in _metadata_weights(model):
            weights.normal_(std=0.5)
    for module in model.model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    batch = _batch()
    with torch.no_grad(), metadata_of(model.model, batch):
        model.model(batch.image)


def test_scores_depend_on_metadata(conditioned) -> None:  # noqa: ANN001
    _as_if_trained(conditioned)
    conditioned.eval()
    scores = {}
    for view in ("AP", "PA"):
        batch = _batch(view)
        with torch.no_grad(), metadata_of(conditioned.model, batch):
            scores[view] = conditioned.model(batch.image).pred_score.flatten()
    assert scores["AP"].shape == (4,)
    assert (scores["AP"] - scores["PA"]).abs().max() > 1e-3


def test_conditioning_is_neutral_before_training(tmp_path) -> None:  # noqa: ANN001
    model = _fastflow()
    model.eval()
    scores = {}
    for view in ("AP", "PA"):
        batch = _batch(view)
        with torch.no_grad(), metadata_of(model.model, batch):
            scores[view] = model.model(batch.image).pred_score.flatten()
    torch.testing.assert_close(scores["AP"], scores["PA"])


def test_missing_metadata_is_an_error() -> None:
    model = _fastflow()
    model.eval()
    with pytest.raises(ValueError, match="without metadata"):
        model.model(torch.rand(2, 3, SIZE, SIZE))


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=draem"],
        ["model=fastflow", "backbone=resnet18"],
        ["model=fastflow", "backbone=efficientnet_b0"],
        ["model=fastflow", "backbone=efficientnet_lite0"],
    ],
)
def test_film_is_accepted_by_validate(overrides: list[str]) -> None:
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from cxrad.validate import validate

    conf = Path(__file__).resolve().parents[3] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "metadata_conditioning=film", "preprocessing.image_size=64"])
    validate(cfg)
