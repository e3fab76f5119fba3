"""Nodule sizes in mm and nodule AUROCs by size, every value worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrad.metrics.nodules import compute_nodule_metrics, nodule_size_mm, sizes_from_boxes, sizes_from_text


def test_sizes_from_generator_text_keep_only_nodules() -> None:
    assert sizes_from_text("Nodule:7.5;Mass:42.0;Nodule:12.0") == [7.5, 12.0]
    assert sizes_from_text("Effusion:40.0") == []
    assert sizes_from_text(float("nan")) == []


def test_size_from_box_is_mean_side_times_spacing() -> None:
    # (40 + 60) / 2 = 50 px at 0.2 mm/px = 10 mm; the Mass box is ignored
    assert sizes_from_boxes("Nodule:100,200,40,60;Mass:0,0,300,300", 0.2) == [pytest.approx(10.0)]
    assert sizes_from_boxes("Nodule:1,2,3,4", float("nan")) == []


def test_image_size_prefers_generator_sizes_and_takes_the_largest_nodule() -> None:
    frame = pd.DataFrame(
        {
            "lesion_sizes_mm": ["Nodule:6.0;Nodule:14.0", "", "", "Mass:40.0"],
            "boxes": ["Nodule:0,0,99,99", "Nodule:0,0,20,30;Nodule:5,5,10,10", "", "Mass:0,0,50,50"],
            "pixel_spacing_mm": [0.5, 0.4, 0.4, 0.4],
        }
    )
    sizes = nodule_size_mm(frame)
    assert sizes.iloc[0] == 14.0  # text wins over the box, largest of two nodules
    assert sizes.iloc[1] == pytest.approx(25 * 0.4)  # largest box: (20 + 30) / 2 = 25 px
    assert math.isnan(sizes.iloc[2]) and math.isnan(sizes.iloc[3])  # no nodule


def test_nih_box_size_uses_spacing_times_original_width_over_1024(shared_data: Path) -> None:
    from cxrad.data.nih import nih_table

    frame, _ = nih_table(shared_data / "nih_sample")
    row = frame[frame["image_path"].str.endswith("00001836_041.png")].iloc[0]
    # BBox 32.5 x 26.0 px (stored rounded: 33 x 26) in the 1024 frame; spacing 0.168 mm at width 2500
    expected = (33 + 26) / 2 * 0.168 * 2500 / 1024
    assert nodule_size_mm(frame.loc[[row.name]]).iloc[0] == pytest.approx(expected)  # 12.1 mm


@pytest.fixture
def predictions() -> pd.DataFrame:
    """3 normals (0.1, 0.3, 0.5); nodules of 6 mm (0.4), 8 mm (0.6, with an effusion), 15 mm (0.2),
    25 mm (0.9); a nodule of unknown size (0.35) and an effusion alone (0.7)."""
    return pd.DataFrame(
        {
            "label": [0, 0, 0, 1, 1, 1, 1, 1, 1],
            "score": [0.1, 0.3, 0.5, 0.4, 0.6, 0.2, 0.9, 0.35, 0.7],
            "finding_labels": ["No Finding"] * 3
            + ["Nodule", "Effusion|Nodule", "Nodule", "Nodule", "Nodule", "Effusion"],
            "nodule_size_mm": [np.nan] * 3 + [6.0, 8.0, 15.0, 25.0, np.nan, np.nan],
        }
    )


def test_nodule_aurocs_by_hand(predictions: pd.DataFrame) -> None:
    metrics = compute_nodule_metrics(predictions, small_nodule_mm=10.0, size_bands_mm=(10.0, 20.0), min_positives=2)
    # all 5 nodules vs 3 normals: 0.4 > 2, 0.6 > 3, 0.2 > 1, 0.9 > 3, 0.35 > 2 -> 11 of 15 pairs
    assert metrics["nodule_auroc"] == {"auroc": pytest.approx(11 / 15), "n_positive": 5, "n_normal": 3,
                                       "low_confidence": False}  # fmt: skip
    # small (< 10 mm): 0.4 and 0.6 -> (2 + 3) / 6
    small = metrics["small_nodule_auroc"]
    assert small["auroc"] == pytest.approx(5 / 6) and small["n_positive"] == 2 and small["max_mm"] == 10.0
    bands = metrics["nodule_auroc_by_size"]
    assert list(bands) == ["<10 mm", "10-20 mm", ">=20 mm", "n_unknown_size"]
    assert bands["10-20 mm"]["auroc"] == pytest.approx(1 / 3)  # 0.2 beats only 0.1
    assert bands[">=20 mm"]["auroc"] == 1.0
    assert bands[">=20 mm"]["low_confidence"] is True  # 1 positive < min_positives=2
    assert bands["n_unknown_size"] == 1
    # nodule only (excludes the effusion+nodule film): 0.4, 0.2, 0.9, 0.35 -> (2 + 1 + 3 + 2) / 12
    assert metrics["nodule_only_auroc"]["auroc"] == pytest.approx(8 / 12)
    assert metrics["nodule_only_auroc"]["n_positive"] == 4


def test_no_nodules_gives_none_with_zero_counts(predictions: pd.DataFrame) -> None:
    normals = predictions[predictions["label"] == 0]
    metrics = compute_nodule_metrics(normals)
    assert metrics["small_nodule_auroc"]["auroc"] is None
    assert metrics["small_nodule_auroc"]["n_positive"] == 0
    assert metrics["small_nodule_auroc"]["low_confidence"] is True


def test_bad_bands_name_the_fix(predictions: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"size_bands_mm=\[20.0, 10.0\] must be non-empty and increasing"):
        compute_nodule_metrics(predictions, size_bands_mm=(20.0, 10.0))


def test_selection_band_is_the_smallest_band_that_exists_on_nih(shared_data: Path) -> None:
    """NIH's boxed nodules are all >= 10 mm, so a fixed < 10 mm term is never measurable there: the selection's
    nodule term takes the smallest band with enough positives and says which it took."""
    from cxrad.data.nih import read_boxes, read_metadata

    meta = read_metadata(shared_data / "nih_metadata" / "Data_Entry_2017_v2020.csv.gz")
    boxes = read_boxes(shared_data / "nih_metadata" / "BBox_List_2017.csv.gz")
    meta["boxes"] = meta["image_name"].map(boxes).fillna("")
    nodules = meta[meta["boxes"].str.contains("Nodule") & meta["finding_labels"].str.contains("Nodule")]
    normals = meta[meta["label"] == 0].head(200)
    frame = pd.concat([nodules, normals], ignore_index=True)
    frame["score"] = np.random.default_rng(0).normal(size=len(frame)) + frame["label"]
    result = compute_nodule_metrics(frame)
    bands = result["nodule_auroc_by_size"]
    assert bands["<10 mm"]["n_positive"] == 0 and result["small_nodule_auroc"]["auroc"] is None
    chosen = result["selection_nodule_auroc"]
    counts = {name: bands[name]["n_positive"] for name in ("10-20 mm", "20-30 mm", ">=30 mm")}
    smallest = next(name for name, count in counts.items() if count >= 20)
    assert chosen["band"] == smallest and chosen["n_positive"] == counts[smallest]
    assert chosen["auroc"] == bands[smallest]["auroc"] and "smallest nodule size band" in chosen["note"]
    few = compute_nodule_metrics(frame, selection_min_positives=10_000)["selection_nodule_auroc"]
    assert few["auroc"] is None and "no nodule term" in few["note"]  # said, never dropped silently
