"""cxrad's PaDiM embedding (channels picked before upsampling) is anomalib's, value for value."""

import pytest
import torch
from anomalib.models.image.padim.torch_model import PadimModel

from cxrad.model.padim import ConditionedPadimModel


@pytest.mark.parametrize("layers", [("layer1", "layer2", "layer3"), ("layer2", "layer3")])
def test_embedding_equals_anomalibs(layers: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    stock = PadimModel(backbone="resnet18", layers=list(layers), pre_trained=False, n_features=100)
    ours = PadimModel(backbone="resnet18", layers=list(layers), pre_trained=False, n_features=100)
    ours.__class__ = ConditionedPadimModel
    ours.idx = stock.idx  # anomalib draws the kept channels at random
    sizes = {"layer1": (64, 16), "layer2": (128, 8), "layer3": (256, 4)}
    features = {name: torch.randn(3, sizes[name][0], sizes[name][1], sizes[name][1]) for name in layers}
    expected = stock.generate_embedding(features)
    assert torch.equal(ours.generate_embedding(features), expected)
    assert expected.shape == (3, 100, *features[layers[0]].shape[-2:])
    # the kept channels come from every layer, so the deeper layers' upsampling is exercised
    assert (ours.idx >= sizes[layers[0]][0]).any()
