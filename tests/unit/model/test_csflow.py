"""CS-Flow on the run's backbone: the flow fits the chosen layer, the backbone's weights are its encoder, films too
small for its three scales are refused, and a flow fitted on normal films scores a lesion film above them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib.models.image.csflow.torch_model import CrossScaleFlow
from hydra import compose, initialize_config_dir

from cxrad.backbone import BackboneConfig
from cxrad.backbone.weights import lite0_state_dict
from cxrad.model.csflow import LayerCrossScaleFlow, build_csflow, validate_csflow
from tests.backbones import backbone_config
from tests.lesion_films import loader, normal_films, paste_blob, predict, trainer

CONF = Path(__file__).resolve().parents[3] / "conf"


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["model=csflow", *overrides])


def _lite0(pretrained: bool, layer: str | None = None) -> BackboneConfig:
    """The real ``conf/backbone/efficientnet_lite0.yaml``, optionally on another CS-Flow layer."""
    layers = {"csflow": [layer]} if layer is not None else {}
    return backbone_config("efficientnet_lite0", pretrained=pretrained, **layers)


def _input_dims(model) -> list[tuple[int, ...]]:
    nodes = model.model.graph.graph.in_nodes
    return [tuple(node.output_dims[0]) for node in nodes]


def test_films_too_small_for_the_quarter_scale_are_refused_with_a_size_that_works() -> None:
    with pytest.raises(ValueError, match=r"stride 32\) needs .* multiple of 128 and at least 256 .* got 128; set pre"):
        validate_csflow(_cfg("preprocessing.image_size=128"))
    with pytest.raises(ValueError, match=r"got 320; set preprocessing.image_size=256"):
        validate_csflow(_cfg("preprocessing.image_size=320"))
    validate_csflow(_cfg("preprocessing.image_size=256"))
    validate_csflow(_cfg("preprocessing.image_size=128", "backbone.layers.csflow=[blocks.4]"))  # stride 16


def test_one_layer_only() -> None:
    with pytest.raises(ValueError, match=r"backbone.layers.csflow=\['blocks.4', 'blocks.6'\] must name one layer"):
        validate_csflow(_cfg("preprocessing.image_size=256", "backbone.layers.csflow=[blocks.4,blocks.6]"))


@pytest.mark.parametrize(("size", "layer", "channels"), [(256, None, 320), (128, "blocks.4", 112)])
def test_the_flow_is_built_for_the_layers_channels_and_three_halving_maps(size, layer, channels) -> None:
    model = build_csflow(_lite0(False, layer), size, cross_conv_hidden_channels=8, n_coupling_blocks=1)
    assert _input_dims(model) == [(channels, 8, 8), (channels, 4, 4), (channels, 2, 2)]
    model.model.eval()
    with torch.no_grad():
        out = model.model(torch.rand(2, 3, size, size))
    assert out.anomaly_map.shape == (2, 1, size, size)
    assert torch.isfinite(out.pred_score).all()


def test_the_rebuilt_flow_is_anomalibs_flow_on_b5s_dims() -> None:
    """On EfficientNet-B5's 304-channel stride-32 maps the rebuilt graph is anomalib's: same tensors, same outputs."""
    torch.manual_seed(0)
    ours = LayerCrossScaleFlow((3, 256, 256), [(304, 8, 8), (304, 4, 4), (304, 2, 2)], 2, 3, 8)
    theirs = CrossScaleFlow((3, 256, 256), 2, 3, 8)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    with torch.no_grad():
        for parameter in ours.parameters():  # anomalib zero-initialises the last convolutions: make them count
            parameter.add_(0.01 * torch.randn_like(parameter))
    theirs.load_state_dict(ours.state_dict(), strict=True)
    features = [torch.randn(2, 304, side, side) for side in (8, 4, 2)]
    (z_ours, jacobian_ours), (z_theirs, jacobian_theirs) = ours(features), theirs(features)
    assert all(torch.allclose(a, b) for a, b in zip(z_ours, z_theirs, strict=True))
    assert torch.allclose(jacobian_ours, jacobian_theirs)


def test_a_rebuilt_model_takes_a_fitted_ones_weights_strictly() -> None:
    """How cxrad.predict reloads a run: the same build, then the checkpoint's state dict, strictly."""
    fitted = build_csflow(_lite0(True), 256, cross_conv_hidden_channels=8, n_coupling_blocks=1, seed=0)
    with torch.no_grad():
        for parameter in fitted.model.graph.parameters():
            parameter.add_(0.01)
    rebuilt = build_csflow(_lite0(False), 256, cross_conv_hidden_channels=8, n_coupling_blocks=1, seed=1)
    rebuilt.load_state_dict(fitted.state_dict(), strict=True)
    films = torch.rand(2, 3, 256, 256)
    fitted.model.eval()
    rebuilt.model.eval()
    with torch.no_grad():
        assert torch.allclose(fitted.model(films).anomaly_map, rebuilt.model(films).anomaly_map)


def test_the_backbones_imagenet_weights_are_the_encoder() -> None:
    model = build_csflow(_lite0(True), 256, cross_conv_hidden_channels=8, n_coupling_blocks=1)
    encoder = model.model.feature_extractor.feature_extractor.feature_extractor.state_dict()
    shipped = lite0_state_dict()
    assert all(torch.equal(encoder[key], shipped[key]) for key in encoder)
    fresh = build_csflow(_lite0(False), 256, cross_conv_hidden_channels=8, n_coupling_blocks=1)
    key = next(iter(encoder))
    assert not torch.equal(
        fresh.model.feature_extractor.feature_extractor.feature_extractor.state_dict()[key], shipped[key]
    )


def test_a_flow_fitted_on_normal_films_scores_a_lesion_film_above_them() -> None:
    size = 128
    films = normal_films(24, size, seed=0)
    model = build_csflow(_lite0(True, "blocks.4"), size, cross_conv_hidden_channels=32, n_coupling_blocks=2)
    trainer(max_epochs=8).fit(model, loader(films))
    held_out = normal_films(8, size, seed=1)
    clean = normal_films(1, size, seed=2)
    lesion, mask = paste_blob(clean, (48, 40), radius=12)
    normal_scores, _ = predict(model, held_out)
    lesion_score, lesion_map = predict(model, lesion)
    assert lesion_score.item() > normal_scores.max().item()
    # The map multiplies the scales' likelihood maps, so the lesion multiplies it: the film's map over its clean
    # copy's rises most at the lesion (one stride-16 cell of slack: the map is upsampled from 8 x 8).
    _, clean_map = predict(model, clean)
    rise = (lesion_map.log() - clean_map.log())[0]
    peak = divmod(int(rise.argmax()), size)
    near = torch.nn.functional.max_pool2d(mask[None, None].float(), 33, stride=1, padding=16)[0, 0].bool()
    assert near[peak]
