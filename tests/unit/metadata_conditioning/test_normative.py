import numpy as np

from cxrad.data.metadata import MetadataEncoder
from cxrad.metadata_conditioning.normative import NormativeMap, normative_scores
from cxrad.metrics import auroc

ENCODER = MetadataEncoder()


def _maps(n: int, ap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """8x8 anomaly maps: noise everywhere, and a hot border on every AP film (the view shortcut)."""
    maps = rng.normal(1.0, 0.1, (n, 8, 8))
    maps[ap, 0, :] += 1.0
    return maps


def test_normative_maps_remove_the_view_shortcut_and_keep_lesions() -> None:
    rng = np.random.default_rng(0)
    n = 120
    ap = rng.random(n) < 0.4
    metadata = np.stack([ENCODER.encode(50.0, "M", "AP" if a else "PA").numpy() for a in ap])
    normal_maps = _maps(n, ap, rng)
    test_ap = rng.random(n) < 0.5
    test_meta = np.stack([ENCODER.encode(50.0, "M", "AP" if a else "PA").numpy() for a in test_ap])
    test_maps = _maps(n, test_ap, rng)
    lesion = np.arange(n) % 2 == 1
    test_maps[lesion, 4, 4] += 0.6  # a lesion, weaker than the AP border
    raw = test_maps.reshape(n, -1).max(1)
    model = NormativeMap(prior_count=1.0).fit(normal_maps, metadata)
    conditioned = model.score(test_maps, test_meta)
    normal = ~lesion
    raw_leak = auroc(test_ap[normal].astype(int), raw[normal])
    new_leak = auroc(test_ap[normal].astype(int), conditioned[normal])
    assert raw_leak > 0.95 and abs(new_leak - 0.5) < 0.15
    assert auroc(lesion.astype(int), conditioned) > 0.95 > auroc(lesion.astype(int), raw)


def test_validation_scores_are_cross_fitted() -> None:
    rng = np.random.default_rng(1)
    maps = {i: rng.normal(1.0, 0.1, (4, 4)) for i in range(20)}
    meta = {i: ENCODER.encode(50.0, "M", "PA").numpy() for i in range(20)}
    val, test = normative_scores(
        {i: maps[i] for i in range(10)}, {i: maps[i] for i in range(10, 20)}, meta, list(range(10))
    )
    in_sample = NormativeMap().fit(np.stack([maps[i] for i in range(10)]), np.stack([meta[i] for i in range(10)]))
    assert list(val.index) == list(range(10)) and list(test.index) == list(range(10, 20))
    # Out-of-fold scores of normal films are not deflated the way in-sample scores are.
    assert (
        val.mean()
        > in_sample.score(np.stack([maps[i] for i in range(10)]), np.stack([meta[i] for i in range(10)])).mean()
    )
