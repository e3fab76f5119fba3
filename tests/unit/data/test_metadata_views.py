"""The view vocabulary beyond PA/AP and the extra covariates, with the PA/AP encoding left as it was."""

from __future__ import annotations

import pandas as pd
import pytest

from cxrad.data.metadata import (
    MetadataEncoder,
    covariate_columns,
    covariate_support,
    metadata_counts,
    normalise_metadata,
    parse_any_view,
)

BASE = ("age_z", "age_missing", "sex_M", "sex_F", "sex_unknown", "view_PA", "view_AP", "view_unknown")


def test_pa_ap_tables_keep_the_base_encoder() -> None:
    table = normalise_metadata(pd.DataFrame({"age": [60, 30], "sex": ["M", "F"], "view": ["PA", "AP Supine"]}))
    encoder = MetadataEncoder.for_table(table)
    assert encoder == MetadataEncoder() and encoder.names == BASE
    assert encoder.encode_row(table.iloc[1]).tolist() == MetadataEncoder().encode(30.0, "F", "AP").tolist()


@pytest.mark.parametrize(
    ("raw", "views", "view"),
    [
        ("LL", ("PA", "AP", "LATERAL"), "LATERAL"),
        ("L", ("PA", "AP", "LATERAL"), "LATERAL"),
        ("LL", ("PA", "AP"), "unknown"),
        ("AP_horizontal", ("PA", "AP", "AP_SUPINE"), "AP_SUPINE"),
        ("AP_horizontal", ("PA", "AP"), "AP"),
        ("COSTAL", ("PA", "AP", "LATERAL"), "unknown"),
        ("pa", ("PA", "AP", "LATERAL"), "PA"),
    ],
)
def test_raw_view_codes_parse_into_the_kept_views(raw: str, views: tuple[str, ...], view: str) -> None:
    assert parse_any_view(raw, views) == view


def test_lateral_films_get_their_own_flag_and_keep_the_base_meaning() -> None:
    table = normalise_metadata(pd.DataFrame({"age": [50] * 3, "sex": ["M"] * 3, "view": ["PA", "LATERAL", "LL"]}))
    assert table.view.tolist() == ["PA", "LATERAL", "unknown"]  # harmonised names stay; raw 'LL' is unknown
    encoder = MetadataEncoder.for_table(table)
    assert encoder.names == (*BASE, "view_LATERAL")
    rows = [encoder.encode_row(row).tolist() for _, row in table.iterrows()]
    # Base columns: lateral and unknown both 'not PA/AP', as the base encoder had them; the flag tells them apart.
    assert [r[5:] for r in rows] == [[1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 0]]
    assert covariate_columns(["view"], encoder) == [5, 6, 7, 8]
    assert covariate_support(encoder.encode_many([(50.0, "M", "PA"), (50.0, "M", "LATERAL")]), ["view"], encoder) == {
        "view": 0  # no AP film: the view covariate is as supported as its rarest view
    }
    assert metadata_counts(table)["view_LATERAL"] == 1


def test_extra_covariates_ride_in_the_vocabulary_when_present() -> None:
    table = normalise_metadata(
        pd.DataFrame({"age": [50, 60], "sex": ["M", "F"], "view": ["PA", "AP"], "scanner": ["GE", None]})
    )
    assert table.scanner.tolist() == ["GE", "unknown"]
    encoder = MetadataEncoder.for_table(table)
    assert encoder.names == (*BASE, "scanner_GE", "scanner_unknown")
    assert encoder.encode_row(table.iloc[1]).tolist()[-2:] == [0.0, 1.0]
    assert metadata_counts(table)["scanner_unknown"] == 1


def test_bad_encoder_settings_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"must be \('PA', 'AP'\) followed by distinct views of \['LATERAL'"):
        MetadataEncoder(views=("PA", "AP", "LL"))
    with pytest.raises(ValueError, match=r"extras \['hospital'\] are not covariates; choose from \['site'"):
        MetadataEncoder(extras=(("hospital", ("a",)),))
    with pytest.raises(ValueError, match=r"encode got 0 extra value\(s\) for extras \['site'\]"):
        MetadataEncoder(extras=(("site", ("a",)),)).encode(50.0, "M", "PA")


def test_base_support_reads_the_prefix_of_a_wider_encoding() -> None:
    """The normative reference sees batch metadata with appended flags; its base columns decide the support."""
    rows = [(50.0, "M", "PA")] * 3 + [(60.0, "F", "AP")] * 2 + [(70.0, "F", "LATERAL")] * 4
    wide = MetadataEncoder(views=("PA", "AP", "LATERAL")).encode_many(rows).numpy()
    base = MetadataEncoder().encode_many(rows).numpy()
    assert covariate_support(wide, None) == covariate_support(base, None) == {"view": 2, "sex": 3, "age": 9}
