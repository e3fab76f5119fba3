"""Property-based tests of the metadata parsers: any input, never an exception, always the vocabulary."""

import math

import pandas as pd
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cxrad.data.metadata import (
    MAX_AGE_YEARS,
    UNKNOWN,
    MetadataEncoder,
    normalise_metadata,
    parse_age,
    parse_sex,
    parse_view,
)

ANYTHING = st.one_of(
    st.none(),
    st.text(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.binary(),
)
UNIT_YEARS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}
EXAMPLES = settings(max_examples=200, deadline=None)


def _valid_age(years: float) -> bool:
    return math.isnan(years) or 0.0 <= years <= MAX_AGE_YEARS


@EXAMPLES
@given(st.integers(min_value=0, max_value=120))
def test_any_plausible_age_round_trips_in_every_spelling(age: int) -> None:
    for spelling in (age, float(age), str(age), f"{age:03d}Y", f" {age:03d}y "):
        assert parse_age(spelling) == age


@EXAMPLES
@given(st.integers(min_value=0, max_value=999), st.sampled_from("YMWD"))
def test_dicom_age_strings_convert_their_unit(number: int, unit: str) -> None:
    years = parse_age(f"{number:03d}{unit}")
    expected = number * UNIT_YEARS[unit]
    assert years == expected if expected <= MAX_AGE_YEARS else math.isnan(years)


@EXAMPLES
@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=121)))
def test_implausible_ages_are_unknown_not_clipped(age: int) -> None:
    assert math.isnan(parse_age(age)) and math.isnan(parse_age(str(age)))


@EXAMPLES
@given(ANYTHING)
def test_parsers_never_raise_and_stay_in_the_vocabulary(value: object) -> None:
    assert _valid_age(parse_age(value))
    assert parse_sex(value) in ("M", "F", UNKNOWN)
    assert parse_view(value) in ("PA", "AP", UNKNOWN)


@EXAMPLES
@given(st.sampled_from(["PA", "AP"]), st.booleans(), st.text(max_size=10))
def test_a_leading_pa_or_ap_word_decides_the_view(view: str, lower: bool, rest: str) -> None:
    """'AP Supine', 'pa erect', 'AP' + anything after a space."""
    assert parse_view(f"{view.lower() if lower else view} {rest}") == view


@EXAMPLES
@given(st.lists(st.tuples(ANYTHING, ANYTHING, ANYTHING), min_size=1, max_size=8))
def test_normalised_frames_encode_to_one_hot_groups(rows: list[tuple[object, object, object]]) -> None:
    frame = normalise_metadata(pd.DataFrame(rows, columns=["age", "sex", "view"], dtype=object))
    encoded = MetadataEncoder().encode_many(zip(frame.age, frame.sex, frame.view, strict=True))
    assert torch.isfinite(encoded).all()
    assert (encoded[:, 2:5].sum(1) == 1).all() and (encoded[:, 5:8].sum(1) == 1).all()
    assert ((encoded[:, 1] == 1) == torch.tensor(frame.age.isna().to_numpy())).all()
