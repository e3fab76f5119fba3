"""The NIH loader on the real file formats in ../shared/data."""

from pathlib import Path

import pandas as pd
import pytest

from cxrad.data.nih import nih_table
from cxrad.data.samples import prepare_samples
from cxrad.data.table import SplitConfig


def test_full_metadata_without_images_is_an_error_naming_root_and_rows(shared_data: Path) -> None:
    root = shared_data / "nih_metadata"
    with pytest.raises(
        FileNotFoundError, match=rf"no images found under data.root={root}: no PNG.*112120 metadata rows"
    ):
        nih_table(root)


def test_views_keep_unknown_films_unless_excluded(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "nih64_sample"
    meta = pd.read_csv(src / "Data_Entry_2017_v2020.csv")
    meta.loc[:2, "View Position"] = ["LL", "", "AP Supine"]
    meta.to_csv(tmp_path / "Data_Entry_2017.csv", index=False)
    (tmp_path / "images").symlink_to(src / "images")
    frame, _ = nih_table(tmp_path)
    assert len(frame) == len(meta)  # lateral and blank views are kept (as unknown), never silently dropped
    assert len(nih_table(tmp_path, views=["PA", "AP"])[0]) == len(meta) - 2
    with pytest.raises(ValueError, match=r"data.source.views has \['LL'\]"):
        nih_table(tmp_path, views=["PA", "LL"])


def test_full_metadata_patient_split_never_crosses(shared_data: Path, tmp_path: Path) -> None:
    """At NIH scale (30,805 patients), no patient may land in two splits."""
    from cxrad.data.nih import read_metadata

    raw = read_metadata(shared_data / "nih_metadata" / "Data_Entry_2017_v2020.csv.gz")
    raw["image_path"] = "/nowhere/" + raw["image_name"]
    (tmp_path / "x.png").write_bytes(b"")
    split = SplitConfig(0.1, 0.2, seed=0, strategy="normal_patients")
    frame, _ = prepare_samples((raw.drop(columns="image_name"), {}), split)
    assert frame.groupby("patient_id")["split"].nunique().max() == 1
    assert (frame.loc[frame.split != "test", "label"] == 0).all()
    # 36,565 No Finding films belong to patients with a finding elsewhere: all of them must be in test.
    sick = frame.loc[frame.label == 1, "patient_id"].unique()
    assert set(frame.loc[frame.patient_id.isin(sick), "split"]) == {"test"}


def test_nih_sample_official_layout_with_boxes(shared_data: Path) -> None:
    frame, report = nih_table(shared_data / "nih_sample")
    assert report["missing_images"] == 0 and len(frame) == 17
    assert all(Path(p).is_file() for p in frame.image_path)
    boxed = frame[frame.boxes != ""]
    assert len(boxed) > 0 and (boxed.boxes_frame == 1024).all()
    assert frame["pixel_spacing_mm"].between(0.1, 0.5).all()


def test_nih64_sample_prepares_patient_wise_splits(shared_data: Path) -> None:
    source = nih_table(shared_data / "nih64_sample")
    # One of its 11 patients holds 19 of the 20 abnormal films: only normal_patients is sure to test him.
    frame, report = prepare_samples(source, SplitConfig(0.15, 0.25, seed=0, strategy="normal_patients"))
    assert report["n_train"] > 0 and report["n_val"] > 0
    assert frame.groupby("patient_id")["split"].nunique().max() == 1
    assert set(frame.view) <= {"PA", "AP"}


def test_test_findings_filter_keeps_normals_and_selected(shared_data: Path) -> None:
    frame, report = nih_table(shared_data / "nih_sample", test_findings=["Nodule"])
    kept = frame[~frame.excluded_finding]  # excluded films stay for the split, then prepare_samples drops them
    abnormal = kept[kept.label == 1]
    assert len(abnormal) > 0 and report["selected_films"] == len(kept)
    assert abnormal.finding_labels.str.contains("Nodule").all()
    assert (kept.label == 0).sum() == 4
    excluded = frame[frame.excluded_finding]
    assert len(excluded) > 0 and (excluded.label == 1).all()
    assert not excluded.finding_labels.str.contains("Nodule").any()


def test_missing_metadata_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="point data.root at the NIH folder"):
        nih_table(tmp_path)


def test_official_lists_mark_test_films(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "nih64_sample"
    meta = pd.read_csv(src / "Data_Entry_2017_v2020.csv")
    (tmp_path / "images").symlink_to(src / "images")
    meta.to_csv(tmp_path / "Data_Entry_2017.csv", index=False)
    names = meta["Image Index"].tolist()
    (tmp_path / "test_list.txt").write_text("\n".join(names[:5]))
    (tmp_path / "train_val_list.txt").write_text("\n".join(names[5:]))
    frame, _ = nih_table(tmp_path)
    assert set(frame.loc[frame.split == "test"].image_path.map(lambda p: Path(p).name)) == set(names[:5])
