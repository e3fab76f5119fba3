"""cxrad's FastFlow: anomalib's flow on any timm CNN, conditional on metadata inside its coupling blocks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib.models.image.fastflow.torch_model import FastflowModel
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from cxrad.backbone import BackboneConfig
from cxrad.data.items import CxrBatch
from cxrad.data.metadata import MetadataEncoder
from cxrad.model.checkpoint import WeightsOnlyCheckpoint, load_weights, read_checkpoint
from cxrad.model.components.conditional_flow import ConditionalFastflowModel
from cxrad.model.conditioning import metadata_of
from cxrad.model.fastflow import CxrFastflow, build_fastflow
from tests.backbones import backbone_config

SIZE = 64
FILM = {"name": "film"}
META_DIM = MetadataEncoder().dim


def _backbone(name: str) -> BackboneConfig:
    """The real ``conf/backbone/<name>.yaml`` with random weights."""
    return backbone_config(name)


def _batch(view: str = "AP", seed: int = 0) -> CxrBatch:
    image = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    rows = [(60.0, "F", view), (30.0, "M", view), (45.0, "F", view), (70.0, "M", view)]
    return CxrBatch(
        image=image, gt_label=torch.zeros(4, dtype=torch.bool), metadata=MetadataEncoder().encode_many(rows)
    )


def _conditional(backbone: str = "resnet18", seed: int = 0) -> CxrFastflow:
    return build_fastflow(_backbone(backbone), image_size=SIZE, flow_steps=2, seed=seed, conditioning=FILM)


def _as_if_trained(model: CxrFastflow) -> None:
    """Give the couplings' condition weights values (they start at zero, i.e. an unconditional flow)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for conv in model.model.condition_convs():
            conv.weight[:, -META_DIM:] = 0.5 * torch.randn(conv.weight[:, -META_DIM:].shape, generator=generator)


def _anomaly_map(model: CxrFastflow, batch: CxrBatch) -> torch.Tensor:
    model.eval()
    with torch.no_grad(), metadata_of(model.model, batch):
        return model.model(batch.image).anomaly_map


def test_unconditional_resnet18_is_anomalibs_fastflow() -> None:
    torch.manual_seed(0)
    ours = ConditionalFastflowModel((SIZE, SIZE), "resnet18", ["layer1", "layer2", "layer3"], flow_steps=2)
    torch.manual_seed(0)
    theirs = FastflowModel((SIZE, SIZE), "resnet18", pre_trained=False, flow_steps=2)
    assert len(ours.fast_flow_blocks) == len(theirs.fast_flow_blocks) == 3
    assert [len(flow) for flow in ours.fast_flow_blocks] == [2, 2, 2]
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)  # anomalib checkpoints load into it
    assert all(torch.equal(ours_state[name], theirs_state[name]) for name in ours_state)
    image = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        ours_out, theirs_out = ours.eval()(image), theirs.eval()(image)
    assert torch.equal(ours_out.anomaly_map, theirs_out.anomaly_map)
    assert torch.equal(ours_out.pred_score, theirs_out.pred_score)


@pytest.mark.parametrize("conditioning", [FILM, None], ids=["film", "none"])
@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_b0", "efficientnet_lite0"])
def test_every_cnn_backbone_builds_and_scores(backbone: str, conditioning: dict | None) -> None:
    model = build_fastflow(_backbone(backbone), image_size=SIZE, flow_steps=2, conditioning=conditioning)
    assert model.model.feature_extractor.feature_info.reduction() == [4, 8, 16]
    assert [flow[0].conditional for flow in model.model.fast_flow_blocks] == [conditioning is not None] * 3
    model.eval()
    with torch.no_grad(), metadata_of(model.model, _batch()):
        output = model.model(_batch().image)
    assert output.anomaly_map.shape == (4, 1, SIZE, SIZE)
    assert output.pred_score.shape == (4, 1)
    assert torch.isfinite(output.anomaly_map).all()


def test_metadata_changes_the_anomaly_map_only_once_trained() -> None:
    model = _conditional()
    untrained = [_anomaly_map(model, _batch(view)) for view in ("AP", "PA")]
    torch.testing.assert_close(*untrained, rtol=0, atol=0)  # zero condition weights: an unconditional flow
    _as_if_trained(model)
    trained = [_anomaly_map(model, _batch(view)) for view in ("AP", "PA")]
    assert (trained[0] - trained[1]).abs().max() > 1e-3  # same films, other view: another density


def test_likelihood_gradients_reach_the_couplings_condition_weights() -> None:
    model = _conditional()
    optimised = {id(p) for group in model.configure_optimizers().param_groups for p in group["params"]}
    convs = model.model.condition_convs()
    assert len(convs) == 3 * 2 and all(id(conv.weight) in optimised for conv in convs)
    assert not any(p.requires_grad for p in model.model.feature_extractor.parameters())
    model.train()
    model.training_step(_batch(), 0)["loss"].backward()
    for conv in convs:
        assert conv.in_channels == conv.weight.shape[1] and conv.weight.grad[:, -META_DIM:].abs().sum() > 0


def test_missing_or_misshaped_metadata_is_an_error() -> None:
    model = _conditional()
    model.eval()
    with pytest.raises(ValueError, match="without metadata"):
        model.model(torch.rand(2, 3, SIZE, SIZE))
    model.model.metadata = torch.zeros(2, META_DIM - 1)
    with pytest.raises(
        ValueError, match=rf"reads metadata columns \[0, .*, {META_DIM - 1}\], got .* \(2, {META_DIM - 1}\)"
    ):
        model.model(torch.rand(2, 3, SIZE, SIZE))
    model.model.metadata = torch.zeros(3, META_DIM)
    with pytest.raises(ValueError, match=rf"shape \(batch, {META_DIM}\), got \(3, {META_DIM}\)"):
        model.model(torch.rand(2, 3, SIZE, SIZE))


def test_flags_appended_for_extra_views_leave_the_base_columns_read() -> None:
    """A table with a LATERAL view appends a flag; the flows read the base columns, so PA/AP films score alike."""
    model = _conditional()
    _as_if_trained(model)
    model.eval()
    wide = MetadataEncoder(views=("PA", "AP", "LATERAL"))
    rows = [(40.0, "M", "PA"), (70.0, "F", "AP")]
    image = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    model.model.metadata = MetadataEncoder().encode_many(rows)
    base = model.model(image).pred_score
    model.model.metadata = wide.encode_many(rows)
    assert torch.allclose(model.model(image).pred_score, base)


def test_an_input_size_off_the_strides_is_refused() -> None:
    with pytest.raises(ValueError, match=r"divisible by 8, got \(68, 68\)"):
        ConditionalFastflowModel((68, 68), "resnet18", ["layer1", "layer2", "layer3"], flow_steps=1)


def test_a_fitted_conditional_fastflow_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    model = _conditional("efficientnet_lite0")
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[WeightsOnlyCheckpoint()],
    )
    trainer.fit(model, DataLoader([_batch("AP", seed=1), _batch("PA", seed=2)], batch_size=None))
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    checkpoint = read_checkpoint(tmp_path / "model.ckpt")  # torch.load(weights_only=True)
    assert checkpoint["hyper_parameters"]["metadata_dim"] == META_DIM
    fresh = _conditional("efficientnet_lite0", seed=1)
    load_weights(fresh, checkpoint)
    for view in ("AP", "PA"):
        torch.testing.assert_close(_anomaly_map(fresh, _batch(view)), _anomaly_map(model, _batch(view)))
