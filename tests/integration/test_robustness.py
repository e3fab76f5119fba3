"""Messy real-world inputs end to end: a CSV of real NIH films mixed with bad files and DICOMs, resume, seeds."""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from tests.films import (
    dicom_from_png,
    gradient,
    write_png,
    write_png_header,
    write_truncated_png,
    write_undecodable_png,
)
from tests.integration.conftest import read_predictions

RANDOM = "backbone.pretrained=false"
TAGS = {"PatientAge": "063Y", "PatientSex": "F", "ViewPosition": "AP", "PatientID": "dicom-1"}


def _good_films(shared_data: Path, folder: Path) -> pd.DataFrame:
    """The 40 real nih64 films, with splits (abnormal -> test) and some test films re-encoded in odd formats."""
    src = shared_data / "nih64_sample"
    meta = pd.read_csv(src / "Data_Entry_2017_v2020.csv")
    table = pd.DataFrame(
        {
            "image_path": [str(src / "images" / name) for name in meta["Image Index"]],
            "label": (meta["Finding Labels"] != "No Finding").astype(int),
            "age": meta["Patient Age"].astype(str),
            "sex": meta["Patient Gender"],
            "view": meta["View Position"],
            "finding_labels": meta["Finding Labels"],
        }
    )
    normal_rank = table.groupby("label").cumcount()
    table["split"] = np.where(
        table.label == 1, "test", np.select([normal_rank < 10, normal_rank < 15], ["train", "val"], "test")
    )
    test = table.index[table.split == "test"]
    gray = {i: cv2.imread(table.image_path[i], cv2.IMREAD_GRAYSCALE) for i in test[:4]}
    for i, mode in zip(test[:3], ("gray16", "rgba", "palette"), strict=True):
        table.loc[i, "image_path"] = str(write_png(folder / f"{mode}.png", gray[i], mode))
    table.loc[test[3], "image_path"] = str(dicom_from_png(table.image_path[test[3]], folder / "film.dcm", TAGS))
    table.loc[test[3], ["age", "sex", "view"]] = ""  # from the DICOM tags
    table.loc[test[4], "view"] = "LL"  # an unknown view: kept and scored
    return table


def _bad_rows(folder: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per kind of bad input, and the reason each must be skipped with."""
    film = np.roll(gradient(), 7, axis=1)
    first_good = folder / "rgba.png"
    copy = folder / "copy.png"
    copy.write_bytes(first_good.read_bytes())
    (folder / "empty.png").write_bytes(b"")
    (folder / "page.png").write_text("<html>403 Forbidden</html>")
    expected = {
        str(folder / "empty.png"): "empty_file",
        str(write_truncated_png(folder / "truncated.png", film)): "corrupt",
        str(folder / "page.png"): "unreadable",
        str(write_png(folder / "thumb.png", gradient(8))): "too_small",
        str(write_png_header(folder / "bomb.png", 15_000, 15_000)): "too_large",
        str(folder / "gone.png"): "file_not_found",
        str(copy): "duplicate_content",
        str(write_undecodable_png(folder / "bad_idat_test.png", film)): "decode_failed",
        str(write_undecodable_png(folder / "bad_idat_train.png", gradient(48))): "decode_failed",
        str(write_png(folder / "badlabel.png", np.roll(film, 5))): "bad_label",
    }
    rows = pd.DataFrame({"image_path": list(expected), "label": "0", "age": "40", "sex": "M", "view": "PA"})
    rows["split"] = np.where(rows.image_path.str.contains("train|thumb|bomb"), "train", "test")
    rows.loc[rows.image_path.str.endswith("badlabel.png"), "label"] = "maybe"
    return rows, expected


def test_csv_of_good_and_bad_files_scores_every_good_film(run_tiny, tmp_path: Path, shared_data: Path) -> None:
    folder = tmp_path / "films"
    folder.mkdir()
    good = _good_films(shared_data, folder)
    bad, expected = _bad_rows(folder)
    repeated = good[good.split == "train"].head(1)  # the same film listed twice
    pd.concat([good, bad, repeated]).to_csv(tmp_path / "samples.csv", index=False)
    csv = f"data.source.csv_path={tmp_path / 'samples.csv'}"
    metrics, out_dir = run_tiny(
        "data=csv", csv, "data.batch_size=1", "data.num_workers=0", "backbone=resnet18", RANDOM,
        "metadata_conditioning=none",  # what is skipped is the point here; 20 real normals are few for a reference
    )  # fmt: skip

    expected[repeated.image_path.item()] = "duplicate_path"
    skipped = pd.read_csv(out_dir / "skipped.csv")
    assert dict(zip(skipped.image_path, skipped.reason, strict=True)) == expected
    assert skipped.detail.notna().all()
    assert metrics["n_skipped"] == len(expected) == 11
    assert metrics["skipped_by_reason"] == pd.Series(expected).value_counts().sort_index().to_dict()
    predictions = read_predictions(out_dir)
    good_test = set(good.loc[good.split == "test", "image_path"])
    assert set(predictions.image_path) == good_test  # every good test film scored, odd formats included
    dicom = predictions[predictions.image_path.str.endswith("film.dcm")].iloc[0]
    assert (dicom.age, dicom.sex, dicom.view) == (63.0, "F", "AP")
    assert (predictions.view == "unknown").sum() == 1
    assert not (out_dir / ".skipped_at_decode.csv").exists()


def test_folder_of_pngs_and_dicoms_takes_metadata_from_tags(run_tiny, tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "nih64_sample"
    meta = pd.read_csv(src / "Data_Entry_2017_v2020.csv")
    for i, row in meta.iterrows():
        label_dir = tmp_path / ("normal" if row["Finding Labels"] == "No Finding" else "abnormal")
        png = src / "images" / row["Image Index"]
        if i % 2:  # every other film as a DICOM carrying its metadata in tags
            tags = {"PatientAge": f"{row['Patient Age']:03d}Y", "PatientSex": row["Patient Gender"]}
            dicom_from_png(png, label_dir / f"{png.stem}.dcm", {**tags, "ViewPosition": row["View Position"]})
        else:
            write_png(label_dir / png.name, cv2.imread(str(png), cv2.IMREAD_GRAYSCALE))
    (tmp_path / "normal" / "zero.dcm").write_bytes(b"")
    write_png(tmp_path / "abnormal" / "icon.png", gradient(8))
    metrics, out_dir = run_tiny(
        "data=folder", f"data.source.root={tmp_path}", "data.num_workers=0", "data.split.val_fraction=0.45", RANDOM
    )
    assert metrics["skipped_by_reason"] == {"empty_file": 1, "too_small": 1}
    samples = pd.read_csv(out_dir / "samples.csv")
    dicoms = samples[samples.image_path.str.endswith(".dcm")]
    assert dicoms.age.notna().all() and set(dicoms.view) == {"AP", "PA"} and set(dicoms.sex) == {"M", "F"}
    assert set(read_predictions(out_dir).image_path) == set(samples.loc[samples.split == "test", "image_path"])


def test_a_finished_run_dir_is_refused_before_any_work(run_tiny) -> None:
    _, out_dir = run_tiny("backbone=resnet18", RANDOM, "heatmap_top_k=0", name="done")
    before = (out_dir / "metrics.json").read_text()
    with pytest.raises(FileExistsError, match="already holds a finished run"):
        run_tiny("backbone=resnet18", RANDOM, name="done")
    assert (out_dir / "metrics.json").read_text() == before


@pytest.mark.slow
def test_an_interrupted_gradient_model_continues_from_its_last_epoch(run_tiny) -> None:
    fastflow = ("model=fastflow", "backbone=resnet18", RANDOM, "model.detector.flow_steps=2")
    _, first = run_tiny(*fastflow, "model.max_epochs=1", name="first")
    metrics, resumed = run_tiny(*fastflow, "model.max_epochs=2", f"resume_from={first}", name="resumed")
    (checkpoint,) = glob.glob(str(resumed / "*" / "v*" / "weights" / "lightning" / "model.ckpt"))
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1 and metrics["resumed_from"]
