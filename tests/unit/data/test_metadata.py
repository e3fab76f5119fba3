import math

import pandas as pd
import pytest
import torch

from cxrad.data.metadata import MetadataEncoder, normalise_metadata, parse_age, parse_sex, parse_view


@pytest.mark.parametrize(
    ("raw", "years"),
    [("058Y", 58.0), (58, 58.0), ("58", 58.0), ("006M", 0.5), (0, 0.0), (120, 120.0), (57.5, 57.5)],
)
def test_parse_age_accepts_numbers_and_dicom_strings(raw: object, years: float) -> None:
    assert parse_age(raw) == pytest.approx(years)


@pytest.mark.parametrize("raw", [414, -1, "", None, float("nan"), "abc", "58Q", "121"])
def test_parse_age_rejects_implausible_or_missing(raw: object) -> None:
    assert math.isnan(parse_age(raw))


@pytest.mark.parametrize(("raw", "sex"), [("M", "M"), ("f", "F"), ("Female", "F"), ("O", "unknown"), ("", "unknown")])
def test_parse_sex(raw: str, sex: str) -> None:
    assert parse_sex(raw) == sex


@pytest.mark.parametrize(
    ("raw", "view"), [("PA", "PA"), ("ap", "AP"), ("AP Supine", "AP"), ("LL", "unknown"), (None, "unknown")]
)
def test_parse_view(raw: object, view: str) -> None:
    assert parse_view(raw) == view


def test_normalise_metadata_maps_a_frame_to_the_vocabulary() -> None:
    frame = pd.DataFrame({"age": ["070Y", 414], "sex": ["F", "O"], "view": ["AP Supine", "LL"]})
    out = normalise_metadata(frame)
    assert out["age"].iloc[0] == 70.0 and math.isnan(out["age"].iloc[1])
    assert out["sex"].tolist() == ["F", "unknown"]
    assert out["view"].tolist() == ["AP", "unknown"]


def test_encoder_flags_missing_values_instead_of_imputing() -> None:
    encoder = MetadataEncoder()
    known = encoder.encode(70.0, "F", "AP")
    unknown = encoder.encode(float("nan"), "unknown", "unknown")
    names = encoder.names
    assert known[names.index("age_z")] == pytest.approx(1.0)
    assert known[names.index("age_missing")] == 0.0
    assert unknown[names.index("age_missing")] == 1.0 and unknown[names.index("age_z")] == 0.0
    assert unknown[names.index("sex_unknown")] == 1.0 and unknown[names.index("view_unknown")] == 1.0
    assert encoder.encode_many([(70.0, "F", "AP"), (20.0, "M", "PA")]).shape == (2, encoder.dim)
    assert not torch.equal(encoder.encode(50, "M", "PA"), encoder.encode(50, "M", "AP"))
