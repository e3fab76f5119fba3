"""From a data source to the split, checked sample table every run uses."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cxrad.data.checks import ScanConfig, screen_samples
from cxrad.data.metadata import metadata_counts, normalise_metadata
from cxrad.data.table import (
    SplitConfig,
    assign_patient_splits,
    cap_split,
    check_splits,
    complete_columns,
    enforce_split_rules,
)

log = logging.getLogger(__name__)
MIN_VAL_FOR_THRESHOLD = 20


def synthetic_table(cache_dir: str | Path, **generator: object) -> tuple[pd.DataFrame, dict[str, int]]:
    """The phantom dataset (generated once per configuration, then read from the cache)."""
    from cxrad.data.synthetic import SyntheticConfig, load_or_generate

    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in generator.items()}
    frame, _ = load_or_generate(SyntheticConfig(**fields), cache_dir)
    return frame, {"metadata_rows": len(frame), "missing_images": 0}


def split_table(frame: pd.DataFrame, split: SplitConfig) -> pd.DataFrame:
    """Use the source's split where it has one; otherwise split by patient.

    A source may mark films ``trainval`` (NIH's official list): those patients are divided into train and
    val, and their abnormal films are dropped because training is normal-only.
    """
    if (frame["split"] == "").all():
        return assign_patient_splits(frame, split)
    trainval = frame["split"] == "trainval"
    if not trainval.any():
        return frame
    normals = frame[trainval & (frame["label"] == 0)]
    val_only = SplitConfig(val_fraction=split.val_fraction, test_fraction=0.0, seed=split.seed)
    return pd.concat([assign_patient_splits(normals, val_only), frame[~trainval]]).sort_index()


def prepare_samples(
    source: tuple[pd.DataFrame, dict[str, int]],
    split: SplitConfig,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Normalise, split, cap and check the table; return it with a report of counts.

    Raises:
        ValueError: before any training, when a split has no usable films (the message names the fix).
    """
    frame, report = source
    if frame.empty:
        msg = "the data source has no films with an existing image file; check data.root / data.csv_path"
        raise ValueError(msg)
    frame = normalise_metadata(complete_columns(frame, "the data source"))
    frame = enforce_split_rules(split_table(frame, split))
    for name, limit in (("train", max_train), ("val", max_val), ("test", max_test)):
        frame = cap_split(frame, name, limit, split.seed)
    check_splits(frame)
    counts = {f"n_{name}": int((frame["split"] == name).sum()) for name in ("train", "val", "test")}
    log.info("samples: %s", counts)
    return frame, {**report, **counts, **metadata_counts(frame)}


def load_samples(data: DictConfig, seed: int, image_size: int) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """The configured source (``data.source``, a Hydra ``_target_``), screened, split, capped and checked.

    Bad rows and files are removed by the pre-flight scan (``data.checks``) before splitting.

    Returns:
        The sample table, a report of counts (for ``metrics.json``) and the skip table (``skipped.csv``).
    """
    frame, source_report = instantiate(data.source, _convert_="all")
    checks = data.get("checks")
    config = ScanConfig.from_config(OmegaConf.to_container(checks) if checks else None, image_size)
    frame, skipped = screen_samples(frame, config, source=f"data={data.name}")
    split = SplitConfig(**data.split, seed=seed)
    frame, report = prepare_samples((frame, source_report), split, data.max_train, data.max_val, data.max_test)
    if report["n_val"] < MIN_VAL_FOR_THRESHOLD:
        log.warning(
            "only %d normal validation films: the threshold will be noisy; raise data.split.val_fraction",
            report["n_val"],
        )
    return frame, report, skipped
