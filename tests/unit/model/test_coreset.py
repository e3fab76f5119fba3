import pytest
import torch

from cxrad.model.components.coreset import StreamingCoreset, k_center_greedy, streaming_k_center_greedy


def _naive_k_center(points: torch.Tensor, n: int, first: int) -> list[int]:
    chosen = [first]
    for _ in range(n - 1):
        dist = torch.cdist(points, points[chosen]).min(1).values
        chosen.append(int(dist.argmax()))
    return chosen


def test_matches_the_textbook_greedy_rule() -> None:
    points = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    fast = k_center_greedy(points, 20, projection_dim=None, seed=3).tolist()
    assert fast == _naive_k_center(points, 20, first=fast[0])


def test_coreset_covers_every_cluster() -> None:
    gen = torch.Generator().manual_seed(1)
    centers = torch.randn(10, 16, generator=gen) * 50
    points = (centers[:, None, :] + torch.randn(10, 200, 16, generator=gen)).reshape(-1, 16)
    chosen = k_center_greedy(points, 10, projection_dim=None, seed=0)
    assert len(set((chosen // 200).tolist())) == 10  # one selection per well-separated cluster
    radius = torch.cdist(points, points[chosen]).min(1).values.max()
    assert radius < 10  # every point lies near its cluster's selected member


def test_projection_keeps_indices_distinct_and_deterministic() -> None:
    points = torch.randn(2000, 256, generator=torch.Generator().manual_seed(2))
    a = k_center_greedy(points, 50, projection_dim=64, seed=5)
    assert len(set(a.tolist())) == 50
    assert torch.equal(a, k_center_greedy(points, 50, projection_dim=64, seed=5))


def test_one_chunk_streaming_is_the_global_greedy() -> None:
    points = torch.randn(500, 32, generator=torch.Generator().manual_seed(4))
    streamed = streaming_k_center_greedy(points, 0.1, chunk_size=1000, projection_dim=16, seed=7)
    chosen = k_center_greedy(points, 50, projection_dim=16, seed=7)
    assert torch.equal(streamed, points[chosen])


def test_stream_keeps_its_ratio_and_only_rows_it_saw() -> None:
    points = torch.randn(1037, 8, generator=torch.Generator().manual_seed(5))
    stream = StreamingCoreset(0.1, chunk_size=100, projection_dim=None)
    for part in points.split(37):  # batches that do not align with chunks
        stream.add(part)
    bank = stream.finalize()
    assert len(bank) == 103  # floor(0.1 * 1037)
    assert len(torch.unique(bank, dim=0)) == 103
    assert (bank[:, None, :] == points[None]).all(-1).any(1).all()  # every kept row is a training row


def test_a_repeated_chunk_adds_new_centres_instead_of_repeating_old_ones() -> None:
    """Independent per-chunk greedy would pick the same rows again; the stream starts from what it holds."""
    points = torch.randn(200, 8, generator=torch.Generator().manual_seed(6))
    stream = StreamingCoreset(0.05, chunk_size=200, projection_dim=None)
    stream.add(points)
    first_radius = torch.cdist(points, stream.finalize()).min(1).values.max()
    stream.add(points)  # the same films again
    bank = stream.finalize()
    assert len(torch.unique(bank, dim=0)) == 20
    assert torch.cdist(points, bank).min(1).values.max() < first_radius


def test_coreset_covers_clusters_that_arrive_in_different_chunks() -> None:
    gen = torch.Generator().manual_seed(8)
    centers = torch.randn(8, 16, generator=gen) * 50
    points = (centers[:, None, :] + torch.randn(8, 250, 16, generator=gen)).reshape(-1, 16)  # cluster i = chunk i
    bank = streaming_k_center_greedy(points, 0.02, chunk_size=250, projection_dim=None)
    radius = torch.cdist(points, bank).min(1).values.max()
    assert radius < 10 and len(bank) == 40


def test_stream_rejects_a_bad_ratio_and_an_empty_stream() -> None:
    with pytest.raises(ValueError, match="coreset_sampling_ratio"):
        StreamingCoreset(0.0)
    with pytest.raises(ValueError, match="no rows"):
        StreamingCoreset(0.1).finalize()
