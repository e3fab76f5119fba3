"""Any dataset as one CSV: ``image_path``, ``label``, ``age``, ``sex``, ``view`` and optional columns.

Optional: ``patient_id``, ``finding_labels`` ('|'-separated), ``split`` (train/val/test; a patient-wise split
is made when absent), ``mask_path``. Relative paths are resolved against ``root`` (default: the CSV's folder).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


def _resolve(paths: pd.Series, root: Path) -> pd.Series:
    return paths.fillna("").astype(str).map(lambda p: "" if not p else str((root / p).resolve()))


def csv_table(csv_path: str | Path, root: str | Path | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Load a generic CSV as a sample table plus a report of skipped rows."""
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        msg = f"data.source.csv_path={csv_path} does not exist; pass the CSV: data.source.csv_path=/path/to/samples.csv"
        raise FileNotFoundError(msg)
    frame = pd.read_csv(csv_path)
    if "image_path" not in frame.columns:
        msg = f"{csv_path} has no 'image_path' column (columns: {list(frame.columns)})"
        raise ValueError(msg)
    base = Path(root).expanduser() if root else csv_path.parent
    frame["image_path"] = _resolve(frame["image_path"], base)
    if "mask_path" in frame.columns:
        frame["mask_path"] = _resolve(frame["mask_path"], base)
    if "split" in frame.columns and frame["split"].isna().all():
        frame = frame.drop(columns=["split"])
    exists = frame["image_path"].map(lambda p: bool(p) and Path(p).is_file())
    missing = int((~exists).sum())
    if len(frame) and not exists.any():
        msg = (
            f"no images found: none of the {len(frame)} image_path entries of {csv_path} exists (e.g. "
            f"{frame['image_path'].iloc[0]!r}); relative paths resolve against data.source.root={base}: set it to "
            "the folder they are relative to"
        )
        raise FileNotFoundError(msg)
    if missing:
        log.warning("%d of %d rows in %s point to missing images; they are skipped", missing, len(frame), csv_path)
    # Rows with missing files stay: the pre-flight scan lists each in skipped.csv (reason file_not_found).
    return frame.reset_index(drop=True), {"metadata_rows": len(frame), "missing_images": missing}
