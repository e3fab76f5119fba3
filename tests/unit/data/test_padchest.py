"""The PadChest adapter on files written in the official labels CSV format."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from cxrad.data.padchest import METADATA_NAME, padchest_table
from tests.adapter_films import load_pipeline, write_film

COLUMNS = [
    "ImageID",
    "ImageDir",
    "StudyDate_DICOM",
    "PatientID",
    "PatientBirth",
    "PatientSex_DICOM",
    "Projection",
    "Manufacturer_DICOM",
    "Labels",
]
HANDFUL = [
    ("a.png", 0, 20140102, "p1", 1950.0, "M", "PA", "PhilipsMedicalSystems", "['normal']"),
    ("b.png", 0, 20160304, "p1", 1950.0, "M", "AP_horizontal", "Imaging Dynamics", "['pleural effusion', ' nodule']"),
    ("c.png", 1, 20150101, "p2", None, "F", "L", "PhilipsMedicalSystems", "['normal']"),
    ("d.png", 1, 20150101, "p3", 1980.0, "O", "COSTAL", None, "['rib fracture']"),
    ("e.png", 2, 20150101, "p4", 1970.0, "F", "PA", "PhilipsMedicalSystems", "['exclude']"),
    ("f.png", 2, 20150101, "p5", 1990.0, "F", "PA", "PhilipsMedicalSystems", None),
    ("g.png", 2, 20170101, "p6", 1940.0, "F", "AP", "PhilipsMedicalSystems", "['normal', 'suboptimal study']"),
]


def write_padchest(root: Path, rows: list[tuple]) -> Path:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    root.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / METADATA_NAME, index=False)
    for seed, (image, folder) in enumerate(zip(frame.ImageID, frame.ImageDir, strict=True)):
        write_film(root / str(folder) / image, seed)
    return root


def test_harmonised_table_ages_sexes_views_labels_and_patients(tmp_path: Path) -> None:
    views = ["PA", "AP", "AP_SUPINE", "LATERAL", "unknown"]
    frame, report = padchest_table(write_padchest(tmp_path, HANDFUL), views=views)
    films = frame.set_index(frame.image_path.map(lambda p: Path(p).name))
    assert films.loc[["a.png", "b.png", "d.png"], "age"].tolist() == [64, 66, 35]
    assert math.isnan(films.loc["c.png", "age"])  # no PatientBirth
    assert films.loc[["a.png", "b.png", "c.png", "d.png"], "view"].tolist() == ["PA", "AP_SUPINE", "LATERAL", "unknown"]
    assert films.loc[["a.png", "b.png", "d.png", "g.png"], "label"].tolist() == [0, 1, 1, 0]
    assert films.loc["b.png", "finding_labels"] == "pleural effusion|nodule"
    assert films.loc["g.png", "finding_labels"] == "No Finding"  # 'suboptimal study' is no finding
    assert report["excluded_by_labellers"] == 1 and report["unlabelled"] == 1
    assert films.loc[["a.png", "d.png"], "scanner"].tolist() == ["PhilipsMedicalSystems", "unknown"]
    assert films.loc[["a.png", "b.png"], "patient_id"].tolist() == ["p1", "p1"]
    assert films.loc["d.png", "sex"] == "O"  # raw; prepare_samples parses it as unknown


def test_default_views_merge_supine_into_ap_and_drop_lateral_and_costal(tmp_path: Path) -> None:
    frame, report = padchest_table(write_padchest(tmp_path, HANDFUL))
    films = frame.set_index(frame.image_path.map(lambda p: Path(p).name))
    assert films.loc["b.png", "view"] == "AP"
    assert sorted(films.index) == ["a.png", "b.png", "g.png"] and report["dropped_views"] == 2


def test_flat_image_folder_is_found(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    pd.DataFrame(HANDFUL[:2], columns=COLUMNS).to_csv(root / METADATA_NAME, index=False)
    write_film(root / "a.png", 0)
    write_film(root / "b.png", 1)
    frame, report = padchest_table(root)
    assert len(frame) == 2 and report["missing_images"] == 0


def test_other_csv_names_missing_columns(tmp_path: Path) -> None:
    pd.DataFrame({"ImageID": ["a.png"]}).to_csv(tmp_path / METADATA_NAME, index=False)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['ImageDir'"):
        padchest_table(tmp_path)


def test_tiny_pipeline_carries_the_scanner_and_loads_items(tmp_path: Path) -> None:
    rows = []
    for patient in range(16):
        scanner = ("PhilipsMedicalSystems", "Imaging Dynamics")[patient % 2]
        view, sex = ("PA", "AP")[patient % 2], "MF"[patient // 8]
        rows.append((f"n{patient}.png", patient % 3, 20150101, f"p{patient}", 1960.0, sex, view, scanner, "['normal']"))
        rows.append((f"x{patient}.png", patient % 3, 20160101, f"p{patient}", 1960.0, sex, "PA", scanner, "['nodule']"))
    samples, report, test = load_pipeline("padchest", write_padchest(tmp_path, rows), "data.split.val_fraction=0.3")
    assert set(samples.scanner) == {"PhilipsMedicalSystems", "Imaging Dynamics"}
    assert set(samples.age) == {55.0, 56.0} and set(samples.sex) == {"M", "F"}
    assert samples.groupby("patient_id").split.nunique().max() == 1
    assert report["missing_images"] == 0
    names = test.encoder.names
    assert names[:8] == ("age_z", "age_missing", "sex_M", "sex_F", "sex_unknown", "view_PA", "view_AP", "view_unknown")
    item, row = test[0], test.table.iloc[0]
    assert float(item.metadata[names.index(f"scanner_{row.scanner}")]) == 1.0
    assert float(item.metadata[names.index("scanner_unknown")]) == 0.0
