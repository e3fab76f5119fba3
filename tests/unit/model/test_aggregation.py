import pytest
import torch
from torch import nn

from cxrad.model.components.aggregation import LocalAggregation


class _Maps(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"a": x, "b": x[..., ::2, ::2]}


def test_patch_size_averages_neighbourhoods_and_stride_subsamples() -> None:
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 4] = 9.0
    out = LocalAggregation(_Maps(), patch_size=3, stride=1)(x)
    assert out["a"][0, 0, 4, 4] == pytest.approx(1.0)  # 9 spread over a 3x3 window
    assert out["a"][0, 0, 3, 3] == pytest.approx(1.0) and out["a"][0, 0, 1, 1] == 0.0
    strided = LocalAggregation(_Maps(), patch_size=3, stride=2)(x)
    assert strided["a"].shape[-2:] == (4, 4) and strided["b"].shape[-2:] == (2, 2)


def test_patch_size_one_is_identity() -> None:
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(LocalAggregation(_Maps(), 1, 1)(x)["a"], x)


def test_rejects_non_positive_sizes() -> None:
    with pytest.raises(ValueError, match="patch_size=0"):
        LocalAggregation(_Maps(), 0, 1)
