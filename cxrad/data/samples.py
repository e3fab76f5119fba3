"""From a data source to the split, checked sample table every run uses."""

from __future__ import annotations

import logging
from dataclasses import replace
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
    drop_excluded_findings,
    enforce_split_rules,
    patients_with_findings,
)

log = logging.getLogger(__name__)
MIN_VAL_FOR_THRESHOLD = 20


def synthetic_table(cache_dir: str | Path, **generator: object) -> tuple[pd.DataFrame, dict[str, int]]:
    """The phantom dataset (generated once per configuration, then read from the cache)."""
    from cxrad.data.synthetic import SyntheticConfig, load_or_generate

    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in generator.items()}
    frame, _ = load_or_generate(SyntheticConfig(**fields), cache_dir)
    return frame, {"metadata_rows": len(frame), "missing_images": 0}


def split_table(frame: pd.DataFrame, split: SplitConfig) -> tuple[pd.DataFrame, dict[str, int]]:
    """Use the source's split where it has one; otherwise split by patient (``split.strategy``).

    A source may mark films ``trainval`` and ``test`` (NIH's official lists): the test films stay test, and
    the trainval patients are divided into train and val by ``split.val_fraction`` (of the trainval patients).
    Under ``normal_patients`` trainval patients with any finding are dropped first, so that train and val hold
    all-normal patients only. Abnormal training films are dropped later by ``enforce_split_rules``.

    Returns:
        The table with ``split`` set, and a report of the films dropped here.

    Raises:
        ValueError: when the source puts a patient in both ``trainval`` and ``test``.
    """
    if (frame["split"] == "").all():
        return assign_patient_splits(frame, split), {}
    trainval = frame["split"] == "trainval"
    if not trainval.any():
        return frame, {}
    both = set(frame.loc[trainval, "patient_id"]) & set(frame.loc[frame["split"] == "test", "patient_id"])
    if both:
        msg = (
            f"{len(both)} patient(s) have films in both the official train/val list and the test list (e.g. "
            f"{sorted(both)[0]}); put all films of a patient in one list, or set "
            "data.source.use_official_split=false so cxrad splits by patient"
        )
        raise ValueError(msg)
    report = {}
    pool = frame[trainval]
    if split.strategy == "normal_patients":
        sick = pool["patient_id"].isin(patients_with_findings(pool))
        report["dropped_trainval_patients_with_findings"] = int(pool.loc[sick, "patient_id"].nunique())
        report["dropped_trainval_films_with_findings"] = int(sick.sum())
        if sick.any():
            log.info(
                "data.split.strategy=normal_patients: dropping %d films of %d train/val-list patients with a "
                "finding (they may not train or validate, and the test list is fixed)",
                report["dropped_trainval_films_with_findings"],
                report["dropped_trainval_patients_with_findings"],
            )
        pool = pool[~sick]
    val_only = replace(split, test_fraction=0.0)
    return pd.concat([assign_patient_splits(pool, val_only), frame[~trainval]]).sort_index(), report


def filter_age(
    frame: pd.DataFrame, min_age: float | None = None, max_age: float | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep the films whose ``age`` (years) lies in ``[min_age, max_age]``; a None bound is open.

    With either bound set, films of unknown age are dropped too (they may be children's films, the main reason to
    set ``min_age``). The report counts each reason, for ``metrics.json``.

    Example:
        >>> frame = pd.DataFrame({"age": [5.0, 30.0, float("nan")]})
        >>> filter_age(frame, min_age=18)[1]
        {'dropped_below_min_age': 1, 'dropped_above_max_age': 0, 'dropped_age_unknown': 1}
    """
    if min_age is None and max_age is None:
        return frame, {}
    if min_age is not None and max_age is not None and min_age > max_age:
        msg = f"data.min_age={min_age} is above data.max_age={max_age}; swap them or clear one (null)"
        raise ValueError(msg)
    age = pd.to_numeric(frame["age"], errors="coerce")
    below = age < min_age if min_age is not None else pd.Series(False, index=frame.index)
    above = age > max_age if max_age is not None else pd.Series(False, index=frame.index)
    unknown = age.isna()
    report = {
        "dropped_below_min_age": int(below.sum()),
        "dropped_above_max_age": int(above.sum()),
        "dropped_age_unknown": int(unknown.sum()),
    }
    log.info("data.min_age=%s, data.max_age=%s: dropping films %s", min_age, max_age, report)
    return frame[~(below | above | unknown)], report


def prepare_samples(
    source: tuple[pd.DataFrame, dict[str, int]],
    split: SplitConfig,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
    age_range: tuple[float | None, float | None] = (None, None),
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Normalise, filter by age, split, cap and check the table; return it with a report of counts.

    Films outside ``age_range`` (``data.min_age``, ``data.max_age``; :func:`filter_age`) are dropped before the
    split. Films marked ``excluded_finding`` take part in the patient split and are dropped right after it;
    abnormal films of training patients are dropped next (``dropped_train_abnormal``).

    Raises:
        ValueError: before any training, when a split has no usable films (the message names the fix).
    """
    frame, report = source
    if frame.empty:
        msg = "the data source has no films with an existing image file; check data.source.root / data.source.csv_path"
        raise ValueError(msg)
    frame = normalise_metadata(complete_columns(frame, "the data source"))
    frame, age_report = filter_age(frame, *age_range)
    if frame.empty:
        msg = f"no film is left after the age filter data.min_age/max_age={age_range} ({age_report}); widen it"
        raise ValueError(msg)
    frame, split_report = split_table(frame, split)
    frame, split_report["dropped_other_findings"] = drop_excluded_findings(frame)
    split_report["dropped_train_abnormal"] = int(((frame["split"] == "train") & (frame["label"] == 1)).sum())
    frame = enforce_split_rules(frame)
    for name, limit in (("train", max_train), ("val", max_val), ("test", max_test)):
        frame = cap_split(frame, name, limit, split.seed)
    check_splits(frame)
    counts = {f"n_{name}": int((frame["split"] == name).sum()) for name in ("train", "val", "test")}
    counts["n_val_normal"] = int(((frame["split"] == "val") & (frame["label"] == 0)).sum())
    log.info("samples (%s split): %s", split.strategy, counts)
    return frame, {**report, **age_report, **split_report, **counts, **metadata_counts(frame)}


def load_samples(data: DictConfig, seed: int, image_size: int) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """The configured source (``data.source``, a Hydra ``_target_``), screened, split, capped and checked.

    Bad rows and files are removed by the pre-flight scan (``data.checks``) before splitting; films marked
    ``excluded_finding`` are not scanned (they only tell the split about their patient, then are dropped).

    Returns:
        The sample table, a report of counts (for ``metrics.json``) and the skip table (``skipped.csv``).
    """
    frame, source_report = instantiate(data.source, _convert_="all")
    checks = data.get("checks")
    config = ScanConfig.from_config(OmegaConf.to_container(checks) if checks else None, image_size)
    excluded = frame["excluded_finding"].astype(bool) if "excluded_finding" in frame.columns else None
    if excluded is None or not excluded.any():
        frame, skipped = screen_samples(frame, config, source=f"data={data.name}")
    else:
        kept, skipped = screen_samples(frame[~excluded], config, source=f"data={data.name}")
        frame = pd.concat([kept, frame[excluded]], ignore_index=True)
    split = SplitConfig(**data.split, seed=seed)
    ages = (data.get("min_age"), data.get("max_age"))
    frame, report = prepare_samples((frame, source_report), split, data.max_train, data.max_val, data.max_test, ages)
    if report["n_val_normal"] < MIN_VAL_FOR_THRESHOLD:
        log.warning(
            "only %d normal validation films: the threshold will be noisy; raise data.split.val_fraction",
            report["n_val_normal"],
        )
    return frame, report, skipped
