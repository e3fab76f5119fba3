from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrad.data.checks import ScanConfig, screen_samples
from cxrad.data.csv import csv_table
from cxrad.data.samples import prepare_samples
from cxrad.data.table import SplitConfig


def _write_films(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((40, 40), i * 5, np.uint8))
        names.append(f"imgs/f{i}.png")
    return names


def test_relative_paths_resolve_and_missing_files_are_reported(tmp_path: Path) -> None:
    names = _write_films(tmp_path / "imgs", 4) + ["imgs/absent.png"]
    pd.DataFrame({"image_path": names, "label": [0, 0, 0, 1, 1], "age": 40, "sex": "F", "view": "PA"}).to_csv(
        tmp_path / "s.csv", index=False
    )
    frame, report = csv_table(tmp_path / "s.csv")
    assert report == {"metadata_rows": 5, "missing_images": 1}
    assert all(Path(p).is_absolute() for p in frame.image_path)
    kept, skipped = screen_samples(frame, ScanConfig(min_side=16))  # the missing file is listed, not lost
    assert len(kept) == 4 and skipped.reason.tolist() == ["file_not_found"]
    assert skipped.image_path.iloc[0].endswith("imgs/absent.png")


def test_no_existing_image_names_the_root_to_set(tmp_path: Path) -> None:
    pd.DataFrame({"image_path": ["a.png", "b.png"], "label": 0, "age": 1, "sex": "F", "view": "PA"}).to_csv(
        tmp_path / "s.csv", index=False
    )
    with pytest.raises(FileNotFoundError, match=rf"none of the 2 image_path entries.*data.source.root={tmp_path}"):
        csv_table(tmp_path / "s.csv")


def test_given_split_column_is_used(tmp_path: Path) -> None:
    names = _write_films(tmp_path / "imgs", 4)
    pd.DataFrame(
        {
            "image_path": names,
            "label": [0, 0, 0, 1],
            "age": ["058Y", 30, 40, 50],
            "sex": "M",
            "view": "AP",
            "split": ["train", "val", "test", "test"],
        }
    ).to_csv(tmp_path / "s.csv", index=False)
    frame, _ = prepare_samples(csv_table(tmp_path / "s.csv"), SplitConfig())
    assert frame.split.tolist() == ["train", "val", "test", "test"]
    assert frame.age.iloc[0] == 58.0


def test_missing_csv_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data.source.csv_path=.* does not exist"):
        csv_table(tmp_path / "nope.csv")
