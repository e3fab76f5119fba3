"""Normative conditioning of the anomaly map: FiLM on the detector's output instead of its input features.

Each film's anomaly map is pooled to a coarse ``grid x grid`` map and standardised against what normal films
*with the same metadata* show at each position: ``z(p) = (a(p) - mu(m, p)) / sigma(m)``, where ``mu`` and
``sigma`` are ridge regressions on the encoded metadata (the same estimator as :class:`NormativeFiLM`, on a
one-channel map). The film's score is the maximum of ``z``. Unlike per-group score calibration this changes
the ranking inside a group: positions where normal AP films are always anomalous (noisy borders, the larger
heart) stop dominating AP films' scores, so the maximum moves to what is unusual *for this patient's
metadata*.

The regressions are fitted on the normal validation films. Their standardised scores, used for the
threshold, come from two-fold cross-fitting so that the threshold is not set on in-sample (too small) values.
The run saves those films' pooled maps and metadata (:data:`REFERENCE_FILE`), so ``cxrad.predict`` and
``cxrad.heatmap`` refit the same regressions and score new films exactly as the run scored its test films.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback

from cxrad.metadata_conditioning.film import NormativeFiLM
from cxrad.metadata_conditioning.options import conditions_maps

REFERENCE_FILE = "normative_reference.npz"


def pool_maps(anomaly_maps: torch.Tensor, grid: int) -> np.ndarray:
    """``(N, grid, grid)`` average-pooled anomaly maps from maps shaped ``(N, [1,] H, W)``."""
    maps = anomaly_maps.detach().float().reshape(-1, 1, *anomaly_maps.shape[-2:])
    return F.adaptive_avg_pool2d(maps, grid).squeeze(1).cpu().numpy()


class GridMapCollector(Callback):
    """Keeps every predicted film's anomaly map average-pooled to ``grid x grid`` (bounded memory)."""

    def __init__(self, grid: int = 16) -> None:
        self.grid = grid
        self.maps: dict[int, np.ndarray] = {}
        self.metadata: dict[int, np.ndarray] = {}

    def reset(self) -> None:
        self.maps, self.metadata = {}, {}

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        if outputs.anomaly_map is None:
            return
        pooled = pool_maps(outputs.anomaly_map, self.grid)
        for index, grid_map, meta in zip(
            outputs.sample_index.tolist(), pooled, outputs.metadata.cpu().numpy(), strict=True
        ):
            self.maps[int(index)], self.metadata[int(index)] = grid_map, meta


def normative_map_collector(conditioning: Mapping[str, object]) -> GridMapCollector | None:
    """The grid-map callback when ``metadata_conditioning=normative``; other options need no maps kept."""
    if not conditions_maps(conditioning):
        return None
    return GridMapCollector(int(conditioning.get("grid", 16)))


class NormativeMap:
    """Per-position normal mean and per-film normal spread of anomaly maps given metadata."""

    def __init__(self, prior_count: float = 5.0, min_std_ratio: float = 0.2, scale: bool = True) -> None:
        self.film = NormativeFiLM(
            1, prior_count=prior_count, min_std_ratio=min_std_ratio, scale=scale, per_position=True
        )

    def fit(self, maps: np.ndarray, metadata: np.ndarray) -> NormativeMap:
        self.film.fit(torch.from_numpy(maps).float()[:, None], torch.from_numpy(metadata).float())
        return self

    def score(self, maps: np.ndarray, metadata: np.ndarray) -> np.ndarray:
        """Maximum over positions of the standardised map, one score per film."""
        x = torch.from_numpy(maps).float().flatten(1)
        mean, std = self.film.conditional_moments(torch.from_numpy(metadata).float())
        if not self.film.scale:
            std = torch.ones_like(std)
        # float64 like the other scores: float32 values written to CSV read back rounded, off their own cut
        return ((x - mean) / std).amax(1).double().numpy()


MIN_NORMAL_VAL = 4


def require_normal_validation(conditioning: Mapping[str, object], samples: pd.DataFrame) -> None:
    """Fail before any fitting when a map-standardising option cannot be fitted on the validation films."""
    if not conditions_maps(conditioning):
        return
    n_normal = int(((samples["split"] == "val") & (samples["label"] == 0)).sum())
    if n_normal < MIN_NORMAL_VAL:
        msg = (
            f"metadata_conditioning={conditioning.get('name')} needs >= {MIN_NORMAL_VAL} normal validation films, "
            f"got {n_normal}; raise data.split.val_fraction or use metadata_conditioning=none/film/stratified"
        )
        raise ValueError(msg)


def normative_scores(
    val_maps: dict[int, np.ndarray],
    test_maps: dict[int, np.ndarray],
    metadata: dict[int, np.ndarray],
    normal_val: list[int],
    prior_count: float = 5.0,
    scale: bool = True,
    seed: int = 0,
) -> tuple[pd.Series, pd.Series]:
    """Normative scores of validation films (cross-fitted over two folds) and test films (fitted on all)."""
    if len(normal_val) < MIN_NORMAL_VAL:
        msg = (
            f"normative conditioning needs >= {MIN_NORMAL_VAL} normal validation films, got {len(normal_val)}; "
            "raise data.split.val_fraction"
        )
        raise ValueError(msg)

    def stack(indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        return np.stack([val_maps.get(i, test_maps.get(i)) for i in indices]), np.stack([metadata[i] for i in indices])

    order = np.random.default_rng(seed).permutation(normal_val)
    folds = [sorted(order[::2].tolist()), sorted(order[1::2].tolist())]
    val_scores: dict[int, float] = {}
    for fit_fold, score_fold in ((folds[0], folds[1]), (folds[1], folds[0])):
        model = NormativeMap(prior_count, scale=scale).fit(*stack(fit_fold))
        val_scores.update(zip(score_fold, model.score(*stack(score_fold)).tolist(), strict=True))
    model = NormativeMap(prior_count, scale=scale).fit(*stack(sorted(normal_val)))
    test_index = sorted(test_maps)
    test = pd.Series(model.score(*stack(test_index)), index=test_index, name="score")
    return pd.Series(val_scores, name="score").sort_index(), test


def normal_films(index: pd.Index, samples: pd.DataFrame) -> list[int]:
    """The films of ``index`` (sample indices) that are normal: the ones the normative regressions are fitted on."""
    return [int(i) for i in index if samples.at[i, "label"] == 0]


def save_reference(path: Path, grid_maps: GridMapCollector, normal_val: list[int]) -> None:
    """Write the normal validation films' pooled maps and encoded metadata the test scores were fitted on."""
    order = sorted(normal_val)
    maps = np.stack([grid_maps.maps[i] for i in order])
    metadata = np.stack([grid_maps.metadata[i] for i in order])
    np.savez_compressed(path, maps=maps, metadata=metadata, grid=np.array(grid_maps.grid))


def reference_scores(
    run_dir: Path, conditioning: Mapping[str, object], anomaly_maps: torch.Tensor, metadata: np.ndarray
) -> np.ndarray:
    """Normative scores of new films: the run's regressions refitted from :data:`REFERENCE_FILE`.

    Args:
        run_dir: The run directory holding the reference.
        conditioning: The run's ``metadata_conditioning`` config (``prior_count``, ``scale``).
        anomaly_maps: The films' full anomaly maps ``(N, [1,] H, W)``.
        metadata: Their encoded metadata ``(N, M)`` (the batch's ``metadata``).

    Raises:
        FileNotFoundError: when the run has no reference (it predates it): rerun it.
    """
    path = Path(run_dir) / REFERENCE_FILE
    if not path.is_file():
        msg = f"{path} does not exist: the run predates {REFERENCE_FILE}; rerun it to score new films"
        raise FileNotFoundError(msg)
    prior, scale = float(conditioning.get("prior_count", 5.0)), bool(conditioning.get("scale", True))
    model, grid = _reference_model(str(path.resolve()), path.stat().st_mtime_ns, prior, scale)
    return model.score(pool_maps(anomaly_maps, grid), np.asarray(metadata, dtype=np.float32))


@functools.lru_cache(maxsize=8)
def _reference_model(path: str, mtime_ns: int, prior_count: float, scale: bool) -> tuple[NormativeMap, int]:
    """The regressions fitted on a run's reference, once per file version (predict calls this for every batch)."""
    del mtime_ns  # part of the cache key only: a rewritten reference is refitted
    with np.load(path) as reference:
        model = NormativeMap(prior_count, scale=scale).fit(reference["maps"], reference["metadata"])
        return model, int(reference["grid"])
