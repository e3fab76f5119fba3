import torch

from cxrad.model.components.coreset import k_center_greedy


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
