"""Steps every report-mined dataset adapter (CheXpert, MIMIC-CXR, PadChest) shares: views and image files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cxrad.data.metadata import KNOWN_VIEWS, UNKNOWN

log = logging.getLogger(__name__)


def check_views(views: Sequence[str]) -> tuple[str, ...]:
    """The kept views without ``unknown`` (the ones a parser maps into), or ``ValueError`` naming a bad one."""
    allowed = (*KNOWN_VIEWS, UNKNOWN)
    bad = [v for v in views if v not in allowed]
    if bad:
        msg = f"data.source.views has {bad}; choose from {list(allowed)}"
        raise ValueError(msg)
    return tuple(v for v in views if v != UNKNOWN)


def keep_views(frame: pd.DataFrame, views: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """Keep films whose harmonised ``view`` is in ``views``; return them and the number dropped.

    Raises:
        ValueError: naming a value of ``views`` outside :data:`KNOWN_VIEWS` and ``unknown``.
    """
    check_views(views)
    keep = frame["view"].isin(list(views))
    if not keep.all():
        log.info("data.source.views=%s drops %d films of other views", list(views), int((~keep).sum()))
    return frame[keep].reset_index(drop=True), int((~keep).sum())


def finish(frame: pd.DataFrame, report: dict[str, int], root: Path, dataset: str) -> tuple[pd.DataFrame, dict]:
    """Drop films whose image file is absent (counted in ``missing_images``); fail when none is present."""
    exists = frame["image_path"].map(lambda p: Path(p).is_file())
    missing = int((~exists).sum())
    if missing:
        log.warning("%d of %d %s films have no image below %s; they are skipped", missing, len(frame), dataset, root)
    if len(frame) and not exists.any():
        msg = (
            f"no images found under data.source.root={root}: none of the {len(frame)} selected {dataset} films "
            f"exists (e.g. {frame['image_path'].iloc[0]}); point data.source.root at the folder the metadata "
            "paths are relative to"
        )
        raise FileNotFoundError(msg)
    report = {**report, "missing_images": missing, "selected_films": int((~frame["excluded_finding"]).sum())}
    return frame[exists].reset_index(drop=True), report
