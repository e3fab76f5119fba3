import pytest
import torch

from cxrad.backbone import BackboneConfig
from cxrad.data.metadata import MetadataEncoder
from cxrad.metadata_conditioning import MLPFiLM, NormativeFiLM
from cxrad.model import build_padim, build_patchcore

ENCODER = MetadataEncoder()
PA, AP = ENCODER.encode(50.0, "M", "PA"), ENCODER.encode(50.0, "M", "AP")


def _view_confounded(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features whose AP films are shifted (+3) and twice as spread: the metadata explains the difference."""
    gen = torch.Generator().manual_seed(seed)
    ap = torch.rand(n, generator=gen) < 0.4
    metadata = torch.stack([AP if a else PA for a in ap])
    features = torch.randn(n, 4, 3, 3, generator=gen) * (1 + ap[:, None, None, None]) + 3.0 * ap[:, None, None, None]
    return features, metadata, ap


def test_unfitted_normative_film_and_fresh_mlp_film_are_the_identity() -> None:
    x = torch.randn(2, 6, 4, 4)
    metadata = torch.stack([PA, AP])
    assert torch.equal(NormativeFiLM(ENCODER.dim)(x, metadata), x)
    assert torch.allclose(MLPFiLM(ENCODER.dim, channels=6)(x, metadata), x)


def test_metadata_changes_the_output() -> None:
    film = MLPFiLM(ENCODER.dim, channels=3)
    torch.nn.init.normal_(film.net[-1].weight, std=0.5)
    x = torch.ones(1, 3, 2, 2)
    assert not torch.allclose(film(x, PA[None]), film(x, AP[None]))


@pytest.mark.parametrize("per_position", [True, False])
def test_normative_film_removes_what_metadata_explains(per_position: bool) -> None:
    features, metadata, ap = _view_confounded()
    film = NormativeFiLM(ENCODER.dim, prior_count=1.0, per_position=per_position)
    film.fit(features, metadata)
    out = film(features, metadata)
    raw_gap = (features[ap].mean() - features[~ap].mean()).abs()
    gap = (out[ap].mean() - out[~ap].mean()).abs()
    assert raw_gap > 2.5 and gap < 0.1 * raw_gap
    assert out[ap].std() / out[~ap].std() == pytest.approx(1.0, abs=0.15)  # spreads equalised too


def test_normative_film_survives_a_checkpoint_round_trip() -> None:
    features, metadata, _ = _view_confounded()
    film = NormativeFiLM(ENCODER.dim, per_position=True)
    film.fit(features, metadata)
    restored = NormativeFiLM(ENCODER.dim, per_position=True)
    restored.load_state_dict(film.state_dict())
    assert torch.equal(restored(features, metadata), film(features, metadata))


@pytest.mark.parametrize(
    ("name", "timm_name", "layers"),
    [
        ("resnet18", "resnet18", ["layer2", "layer3"]),
        ("efficientnet_b0", "efficientnet_b0", ["blocks.2", "blocks.4"]),
        ("efficientnet_lite0", "tf_efficientnet_lite0", ["blocks.2", "blocks.4"]),
    ],
)
def test_film_conditioned_patchcore_and_padim_fit_and_score(name: str, timm_name: str, layers: list[str]) -> None:
    """Each backbone's embedding gets a FiLM of matching shape; scores depend on the film's own metadata."""
    backbone = BackboneConfig(name, timm_name, pretrained=False, layers={"patchcore": layers, "padim": layers})
    images = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    metadata = torch.stack([PA, AP] * 3)
    for build in (build_patchcore, build_padim):
        model = build(backbone, 64, conditioning={"name": "film", "per_position": True})
        model.train_metadata.append(metadata)
        model.model.train()
        model.model.metadata = metadata
        model.model(images)
        model.fit()
        model.model.eval()
        model.model.metadata = metadata
        scores = model.model(images).pred_score
        model.model.metadata = torch.stack([AP, PA] * 3)
        swapped = model.model(images).pred_score
        assert torch.isfinite(scores).all() and not torch.allclose(scores, swapped)
