import pytest
import torch
from anomalib.models.components.stats import MultiVariateGaussian

from cxrad.model.components.gaussian import StreamingGaussian


@pytest.mark.parametrize("batch", [1, 7, 50])
def test_streaming_statistics_equal_anomalibs_batch_fit(batch: int) -> None:
    # Large offset and scale: the shifted sums must not lose the covariance to cancellation.
    embeddings = torch.randn(50, 6, 4, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1000
    reference = MultiVariateGaussian()
    reference.fit(embeddings)
    stats = StreamingGaussian()
    for part in embeddings.split(batch):
        stats.update(part)
    mean, inv_covariance = stats.finalize()
    torch.testing.assert_close(mean, reference.mean, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(inv_covariance, reference.inv_covariance, rtol=1e-4, atol=1e-5)


def test_merged_statistics_equal_one_stream_over_the_union() -> None:
    embeddings = torch.randn(40, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    whole, left, right = StreamingGaussian(), StreamingGaussian(), StreamingGaussian()
    whole.update(embeddings)
    left.update(embeddings[:25])
    right.shift = left.shift  # ranks share rank 0's shift before accumulating
    right.total, right.outer = torch.zeros_like(left.total), torch.zeros_like(left.outer)
    right.update(embeddings[25:])
    left.merge(left.total + right.total, left.outer + right.outer, left.count + right.count)
    for merged, single in zip(left.finalize(), whole.finalize(), strict=True):
        torch.testing.assert_close(merged, single, rtol=1e-5, atol=1e-5)


def test_a_single_film_has_no_covariance() -> None:
    stats = StreamingGaussian()
    stats.update(torch.randn(1, 2, 2, 2))
    with pytest.raises(ValueError, match="at least 2 training films"):
        stats.finalize()
