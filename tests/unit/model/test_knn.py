import pytest
import torch

from cxrad.model.components.knn import BankSearch, exact_knn


def _reference(queries: torch.Tensor, bank: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cdist(queries.double(), bank.double()).topk(k, dim=1, largest=False)


@pytest.mark.parametrize("k", [1, 9])
def test_blocked_exact_search_equals_brute_force(k: int) -> None:
    gen = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(1000, 16, generator=gen), torch.randn(300, 16, generator=gen)
    distances, indices = exact_knn(queries, bank, k, query_block=64, bank_block=128)  # many blocks of each
    ref_d, ref_i = _reference(queries, bank, k)
    torch.testing.assert_close(distances.double(), ref_d, rtol=1e-4, atol=1e-4)
    assert (indices == ref_i).float().mean() > 0.99  # ties aside, the same neighbours


def test_ivf_search_finds_the_true_neighbour_of_clustered_data() -> None:
    gen = torch.Generator().manual_seed(1)
    centers = torch.randn(50, 32, generator=gen) * 10
    bank = (centers[:, None] + torch.randn(50, 200, 32, generator=gen)).reshape(-1, 32)
    queries = bank[torch.randperm(len(bank), generator=gen)[:500]] + 0.01 * torch.randn(500, 32, generator=gen)
    distances, indices = BankSearch(bank, "ivf", nprobe=8).search(queries, 1)
    _, ref_i = _reference(queries, bank, 1)
    assert (indices == ref_i).float().mean() > 0.95
    assert distances.shape == (500, 1) and distances.dtype == queries.dtype


def test_unknown_search_method_names_the_choices() -> None:
    with pytest.raises(ValueError, match="exact"):
        BankSearch(torch.zeros(4, 2), "annoy")
