"""DICOM films: the grayscale display pipeline, header facts and tags, dispatch from read_grayscale."""

from pathlib import Path

import numpy as np
import pytest

from cxrad.data.metadata import parse_age, parse_sex, parse_view
from cxrad.preprocessing import DecodeError, is_dicom, read_grayscale
from cxrad.preprocessing.dicom import read_dicom_header
from tests.films import gradient, write_dicom

TAGS = {"PatientAge": "058Y", "PatientSex": "F", "ViewPosition": "AP", "PatientID": "p7"}


@pytest.mark.parametrize("bits_stored", [12, 16])
def test_monochrome2_keeps_and_monochrome1_inverts_the_grey_scale(tmp_path: Path, bits_stored: int) -> None:
    stored = gradient(64, 2**bits_stored - 1)
    mono2 = read_grayscale(write_dicom(tmp_path / "m2.dcm", stored, bits_stored=bits_stored))
    mono1 = read_grayscale(write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", bits_stored=bits_stored))
    assert mono2.dtype == np.uint8 and mono2.shape == (64, 64)
    assert mono2[0, 0] == 0 and mono2[0, -1] == 255
    assert np.corrcoef(mono2.ravel(), stored.ravel())[0, 1] > 0.999
    assert np.array_equal(mono1, 255 - mono2)  # MONOCHROME1: low values are bright


def test_rescale_then_window_are_applied_in_order(tmp_path: Path) -> None:
    """Window centre 3000 / width 2000 is in rescaled units (2 x stored - 1000): stored 1500..2500 span it."""
    stored = gradient(64, 4095)
    film = read_grayscale(
        write_dicom(tmp_path / "w.dcm", stored, slope=2.0, intercept=-1000.0, window=(3000.0, 2000.0))
    )
    rescaled = stored[0].astype(float) * 2 - 1000
    assert (film[0, rescaled <= 2000] == 0).all() and (film[0, rescaled >= 4000] == 255).all()
    inside = (rescaled > 2100) & (rescaled < 3900)
    expected = (rescaled[inside] - 2000) / 2000 * 255
    assert np.abs(film[0, inside] - expected).max() <= 2.0


def test_header_tags_parse_into_the_vocabulary(tmp_path: Path) -> None:
    header = read_dicom_header(write_dicom(tmp_path / "t.dcm", gradient(), tags=TAGS))
    assert (header.rows, header.columns, header.has_pixels) == (64, 64, True)
    assert (parse_age(header.age), parse_sex(header.sex), parse_view(header.view)) == (58.0, "F", "AP")
    assert header.patient_id == "p7"


def test_missing_tags_are_blank_not_errors(tmp_path: Path) -> None:
    header = read_dicom_header(write_dicom(tmp_path / "n.dcm", gradient()))
    assert (header.age, header.sex, header.view, header.patient_id) == ("", "", "", "")


def test_dicom_is_recognised_without_an_extension(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "IM0001", gradient())
    assert is_dicom(path)
    assert read_grayscale(path).shape == (64, 64)


def test_dicom_without_pixels_fails_with_the_path(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "sr.dcm", gradient(), pixels=False)
    assert not read_dicom_header(path).has_pixels
    with pytest.raises(DecodeError, match=r"sr\.dcm"):
        read_grayscale(path)


def test_a_non_dicom_file_with_a_dicom_extension_is_a_decode_error(tmp_path: Path) -> None:
    (tmp_path / "x.dcm").write_bytes(b"hello")
    with pytest.raises(DecodeError, match=r"x\.dcm"):
        read_grayscale(tmp_path / "x.dcm")
    with pytest.raises(DecodeError, match="not a readable DICOM"):
        read_dicom_header(tmp_path / "x.dcm")
