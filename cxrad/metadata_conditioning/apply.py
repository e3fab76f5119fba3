"""Applying an option's score conditioner in a run and to new films, through its interface only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrad.metadata_conditioning.normative import GridMapCollector, stack_films
from cxrad.metadata_conditioning.options import Films, ScoreConditioner, scorer_class
from cxrad.metadata_conditioning.reference import REFERENCE, films_with_role


def films_of(
    indices: list[int], raw: pd.Series, samples: pd.DataFrame, grid_maps: GridMapCollector | None = None
) -> Films:
    """The :class:`Films` of sample ``indices`` (sorted): raw scores, metadata rows and, if kept, pooled maps."""
    order = sorted(int(i) for i in indices)
    maps = metadata = None
    if grid_maps is not None and grid_maps.maps and order:
        maps, metadata = stack_films(grid_maps.maps, grid_maps.metadata, order)
    return Films(order, raw.loc[order], samples.loc[order], maps, metadata)


def fitted_conditioner(
    conditioning: Mapping[str, object],
    raw: pd.Series,
    samples: pd.DataFrame,
    grid_maps: GridMapCollector | None = None,
) -> ScoreConditioner | None:
    """The option's conditioner fitted on the validation films whose role is ``reference``; None without one."""
    scorer = scorer_class(conditioning)
    if scorer is None:
        return None
    if scorer.needs_maps and (grid_maps is None or not grid_maps.maps):
        msg = (
            f"metadata_conditioning={conditioning.get('name')} needs the films' anomaly maps (run it through cxrad.run)"
        )
        raise ValueError(msg)
    reference = films_with_role(samples, REFERENCE, raw.index)
    return scorer.from_config(conditioning).fit(films_of(reference, raw, samples, grid_maps))


def calibrate_scores(
    conditioning: Mapping[str, object],
    val: pd.Series,
    test: pd.Series,
    samples: pd.DataFrame,
    grid_maps: GridMapCollector | None = None,
) -> tuple[pd.Series, pd.Series]:
    """Re-score films with the option's conditioner; options without one pass through.

    The conditioner is fitted on the validation films whose role is ``reference`` (see
    :mod:`cxrad.metadata_conditioning.reference`) and applied alike to every other validation film and every test
    film.

    Returns:
        The scores of the validation films that are not reference films (reference films have no out-of-sample
        score) and of the test films, in the units the threshold is fitted in.
    """
    raw = pd.concat([val, test])
    conditioner = fitted_conditioner(conditioning, raw, samples, grid_maps)
    if conditioner is None:
        return val, test
    reference = set(films_with_role(samples, REFERENCE, val.index))
    scored_val = [int(i) for i in val.index if i not in reference]
    return (
        conditioner.score(films_of(scored_val, raw, samples, grid_maps)).loc[scored_val],
        conditioner.score(films_of(list(test.index), raw, samples, grid_maps)).loc[test.index],
    )


def load_conditioner(run_dir: Path, conditioning: Mapping[str, object]) -> ScoreConditioner | None:
    """A run's fitted conditioner rebuilt from what it saved (None for options without one)."""
    scorer = scorer_class(conditioning)
    return None if scorer is None else scorer.load(Path(run_dir), conditioning)


def rescore_new_films(
    run_dir: Path,
    conditioning: Mapping[str, object],
    raw: pd.Series,
    frame: pd.DataFrame,
    anomaly_maps: torch.Tensor | None = None,
    metadata: np.ndarray | None = None,
) -> pd.Series:
    """Raw scores of new films in the run's threshold units (identity for options without a conditioner)."""
    scorer = scorer_class(conditioning)
    if scorer is None:
        return raw
    if scorer.needs_maps and (anomaly_maps is None or metadata is None):
        msg = (
            f"metadata_conditioning={conditioning.get('name')} scores films from their anomaly maps; "
            "pass anomaly_maps and metadata"
        )
        raise ValueError(msg)
    conditioner = scorer.load(Path(run_dir), conditioning)
    maps = None if anomaly_maps is None else anomaly_maps.detach().float().reshape(-1, *anomaly_maps.shape[-2:])
    films = Films(
        list(range(len(raw))),
        pd.Series(raw.to_numpy(), index=range(len(raw))),
        frame.loc[raw.index].reset_index(drop=True),
        None if maps is None else maps.cpu().numpy(),
        None if metadata is None else np.asarray(metadata, dtype=np.float32),
    )
    return pd.Series(conditioner.score(films).to_numpy(), index=raw.index, name="score")
