"""A folder of films as a source: labels from sub-folders, findings from the folder below abnormal/."""

from pathlib import Path

import pytest

from cxrad.data.checks import ScanConfig, screen_samples
from cxrad.data.folder import folder_table, list_films
from tests.films import gradient, write_dicom, write_png


def test_labels_findings_and_dicom_tags(tmp_path: Path) -> None:
    write_png(tmp_path / "normal" / "a.png", gradient())
    write_dicom(tmp_path / "normal" / "site2" / "IM0001", gradient(64, 4095), tags={"PatientAge": "044Y"})
    write_png(tmp_path / "abnormal" / "Nodule" / "b.png", gradient())
    write_png(tmp_path / "abnormal" / "c.png", gradient())
    (tmp_path / "normal" / "notes.txt").write_text("not a film")
    frame, report = folder_table(tmp_path)
    assert report == {"metadata_rows": 4, "missing_images": 0}
    assert frame.label.tolist() == [0, 0, 1, 1]
    assert frame.finding_labels.tolist() == ["No Finding", "No Finding", "Nodule", "Abnormal"]
    kept, _ = screen_samples(frame, ScanConfig(min_side=16))
    assert kept.loc[kept.image_path.str.endswith("IM0001"), "age"].item() == "044Y"


def test_a_missing_class_folder_names_the_options(tmp_path: Path) -> None:
    write_png(tmp_path / "normal" / "a.png", gradient())
    with pytest.raises(FileNotFoundError, match="data.source.normal_dir/abnormal_dir"):
        folder_table(tmp_path)


def test_empty_folders_are_no_images_found(tmp_path: Path) -> None:
    (tmp_path / "normal").mkdir()
    (tmp_path / "abnormal").mkdir()
    with pytest.raises(FileNotFoundError, match=f"no images found under data.root={tmp_path}"):
        folder_table(tmp_path)
    assert list_films(tmp_path) == []
