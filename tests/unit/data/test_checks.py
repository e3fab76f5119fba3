"""Pre-flight checks: every bad input ends in a recorded skip or a clear error; good odd formats are kept."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cxrad.data.checks import (
    ScanConfig,
    inspect_file,
    record_skip,
    screen_samples,
    skip_counts,
    warn_upsampling,
    with_logged_skips,
)
from cxrad.data.dataset import CxrDataset, make_loader
from cxrad.preprocessing import DecodeError, PreprocessConfig, read_grayscale
from tests.films import (
    gradient,
    write_dicom,
    write_png,
    write_png_header,
    write_truncated_png,
    write_undecodable_png,
)

CONFIG = ScanConfig(min_side=16, max_megapixels=100)


def _bad_file(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.png"
    writers = {
        "empty_file": lambda: path.write_bytes(b""),
        "corrupt": lambda: write_truncated_png(path, gradient()),
        "unreadable": lambda: path.write_text("<html>404 Not Found</html>"),
        "too_small": lambda: write_png(path, gradient(8)),
        "too_large": lambda: write_png_header(path, 12_000, 10_000),  # 120 MP header, tiny file
        "file_not_found": lambda: None,
    }
    writers[kind]()
    return path


@pytest.mark.parametrize("kind", ["empty_file", "corrupt", "unreadable", "too_small", "too_large", "file_not_found"])
def test_each_bad_file_gets_its_reason(tmp_path: Path, kind: str) -> None:
    report = inspect_file(_bad_file(kind, tmp_path), CONFIG)
    assert report.reason == kind and report.detail


def test_an_unreadable_file_is_skipped_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_png(tmp_path / "locked.png", gradient())

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    report = inspect_file(path, CONFIG)
    assert report.reason == "unreadable" and "Permission denied" in report.detail


def test_a_bomb_beyond_pillows_own_limit_is_refused_not_raised(tmp_path: Path) -> None:
    assert inspect_file(write_png_header(tmp_path / "bomb.png", 40_000, 40_000), CONFIG).reason == "too_large"


def test_dicom_without_pixel_data_is_skipped(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "sr.dcm", gradient(), pixels=False)
    assert inspect_file(path, CONFIG).reason == "no_pixel_data"


@pytest.mark.parametrize("mode", ["gray", "gray16", "rgb", "rgba", "la", "palette"])
def test_png_modes_pass_and_convert_to_the_same_grey_film(tmp_path: Path, mode: str) -> None:
    path = write_png(tmp_path / f"{mode}.png", gradient(), mode)
    assert inspect_file(path, CONFIG).reason == ""
    film = read_grayscale(path)
    assert film.dtype == np.uint8 and film.shape == (64, 64)
    assert np.abs(film.astype(int) - gradient()).max() <= 2


def _table(folder: Path) -> pd.DataFrame:
    good = [write_png(folder / f"g{i}.png", np.roll(gradient(), i, axis=1)) for i in range(4)]
    copy = folder / "copy_of_g0.png"
    copy.write_bytes(good[0].read_bytes())
    dicom = write_dicom(folder / "d.dcm", gradient(64, 4095), tags={"PatientAge": "070Y", "ViewPosition": "AP"})
    rows = [
        (good[0], 0, "40", "M", "PA"),
        (good[1], 1, "", "", ""),
        (good[2], "abnormal", 50, "F", "PA"),  # bad label
        (good[3], 0, 414, "O", "LL"),  # implausible metadata: kept, parsed to unknown later
        (good[3], 0, 40, "M", "PA"),  # the same path again
        (copy, 0, 40, "M", "PA"),  # the same bytes under another name
        ("", 0, 40, "M", "PA"),  # no path
        (_bad_file("corrupt", folder), 0, 40, "M", "PA"),
        (dicom, 1, "", "F", ""),  # blank age/view come from tags; sex from the CSV
    ]
    return pd.DataFrame(rows, columns=["image_path", "label", "age", "sex", "view"]).astype({"image_path": str})


def test_screen_keeps_good_rows_and_lists_every_bad_one(tmp_path: Path) -> None:
    kept, skipped = screen_samples(_table(tmp_path), CONFIG)
    assert [Path(p).name for p in kept.image_path] == ["g0.png", "g1.png", "g3.png", "d.dcm"]
    reasons = dict(zip(skipped.image_path.map(lambda p: Path(p).name if p else ""), skipped.reason, strict=True))
    assert reasons == {
        "g2.png": "bad_label",
        "g3.png": "duplicate_path",
        "copy_of_g0.png": "duplicate_content",
        "": "missing_path",
        "corrupt.png": "corrupt",
    }
    dicom = kept.iloc[-1]
    assert (dicom.age, dicom.sex, dicom.view) == ("070Y", "F", "AP")
    assert kept.loc[kept.image_path.str.endswith("g3.png"), "view"].item() == "LL"  # unknown views are kept
    assert skip_counts(skipped) == {
        "n_skipped": 5,
        "skipped_by_reason": {
            "bad_label": 1,
            "corrupt": 1,
            "duplicate_content": 1,
            "duplicate_path": 1,
            "missing_path": 1,
        },
    }


def test_a_label_column_without_any_0_or_1_is_an_error(tmp_path: Path) -> None:
    table = _table(tmp_path).assign(label="normal")
    with pytest.raises(ValueError, match=r"column 'label' has no 0/1 value.*use 0 for normal"):
        screen_samples(table, CONFIG)


def test_missing_required_columns_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"lacks required column\(s\) \['sex', 'view'\]"):
        screen_samples(_table(tmp_path).drop(columns=["sex", "view"]), CONFIG)


def test_when_every_film_is_bad_the_error_counts_the_reasons(tmp_path: Path) -> None:
    table = pd.DataFrame({"image_path": [str(tmp_path / "a.png"), str(_bad_file("empty_file", tmp_path))]})
    table = table.assign(label=0, age=40, sex="M", view="PA")
    with pytest.raises(ValueError, match=r"all 2 films were skipped.*'file_not_found': 1, 'empty_file': 1"):
        screen_samples(table, CONFIG)


def test_unknown_check_options_are_rejected() -> None:
    assert ScanConfig.from_config({"min_side_fraction": 0.5}, 256).min_side == 128
    with pytest.raises(ValueError, match=r"unknown data.checks key\(s\) \['min_size'\]"):
        ScanConfig.from_config({"min_size": 3}, 256)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_film_that_fails_to_decode_mid_run_is_dropped_and_logged(tmp_path: Path, workers: int) -> None:
    """The safety net: header checks pass, decoding fails; the loader goes on and the run's log records it."""
    bad = write_undecodable_png(tmp_path / "bad.png", gradient())
    assert inspect_file(bad, CONFIG).reason == ""
    with pytest.raises(DecodeError):
        read_grayscale(bad)
    paths = [str(write_png(tmp_path / f"g{i}.png", gradient())) for i in range(3)] + [str(bad)]
    table = pd.DataFrame({"image_path": paths, "label": 0, "age": 40.0, "sex": "M", "view": "PA"})
    table = table.assign(mask_path="", boxes="", boxes_frame=0)
    log = tmp_path / "skips.csv"
    with pytest.raises(DecodeError, match=r"bad\.png"):  # no skip log: single-film use raises as before
        CxrDataset(table, PreprocessConfig(image_size=32))[3]
    loader = make_loader(table.iloc[[3, 0, 1, 2]], PreprocessConfig(image_size=32), 1, workers, False, 0, log)
    batches = list(loader)  # the batch holding only the bad film is skipped, not collated empty
    assert len(batches) == 3 and torch.cat([b.sample_index for b in batches]).tolist() == [0, 1, 2]
    merged = with_logged_skips(pd.DataFrame(columns=["image_path", "reason", "detail"]), log)
    assert merged.image_path.tolist() == [str(bad)] and merged.reason.tolist() == ["decode_failed"]
    assert not log.exists()


def test_logged_skips_append_to_the_preflight_ones_once_per_film(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    for _ in range(2):  # the same film fails in two epochs
        record_skip(log, "/x/a, b.png", "decode_failed", 'libpng error: "IDAT"')
    before = pd.DataFrame({"image_path": ["/x/c.png", "", ""], "reason": ["corrupt", *["missing_path"] * 2]})
    merged = with_logged_skips(before.assign(detail="d"), log)
    assert merged.image_path.tolist() == ["/x/c.png", "", "", "/x/a, b.png"]  # blank paths are not merged
    assert merged.detail.iloc[-1] == 'libpng error: "IDAT"'


def test_upsampling_films_more_than_twice_is_named_with_a_size_to_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    films = [write_png(tmp_path / f"{i}.png", gradient(64, 64)) for i in range(3)]
    reports = [inspect_file(path, CONFIG) for path in films]
    with caplog.at_level("WARNING", logger="cxrad.data.checks"):
        assert warn_upsampling(reports, 128) == 2.0
    assert not caplog.records  # 2x: fine
    with caplog.at_level("WARNING", logger="cxrad.data.checks"):
        assert warn_upsampling(reports, 224) == 3.5
    assert "image_size=224 upsamples the films 3.5x (median shorter side 64 px)" in caplog.text
    assert caplog.text.rstrip().endswith("consider preprocessing.image_size=128")
