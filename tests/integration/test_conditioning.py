"""Conditioning on metadata, end to end on phantoms where only the view changes the normal image."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest

VIEW_ONLY = (
    "data.source.n_normal=160",
    "data.source.n_abnormal=16",
    "data.source.age_effect=0",
    "data.source.sex_effect=0",
    "data.source.ap_effect=2.0",
    "data.source.ap_share_normal=0.5",
    "data.split.val_fraction=0.3",
    "data.split.test_fraction=0.3",
    "preprocessing.image_size=128",
)


def _gap(metrics: dict) -> float:
    return abs(metrics["normal_view_leakage_auroc"] - 0.5)


def test_normative_conditioning_removes_most_of_the_view_effect(run_tiny) -> None:
    none, _ = run_tiny(*VIEW_ONLY, "metadata_conditioning=none", name="none")
    # ~50 normal validation films: most fit the reference, the rest set the threshold
    normative, _ = run_tiny(
        *VIEW_ONLY, "metadata_conditioning=normative", "metadata_conditioning.reference_fraction=0.7", name="normative"
    )
    print("leakage none", none["normal_view_leakage_auroc"], "normative", normative["normal_view_leakage_auroc"])
    assert _gap(none) > 0.2  # AP normals clearly outscore PA normals without conditioning
    assert _gap(normative) < 0.5 * _gap(none)


@pytest.mark.parametrize("option", ["stratified", "film_stratified"])
def test_stratified_calibration_equalises_view_score_levels(run_tiny, option: str) -> None:
    stratified, _ = run_tiny(*VIEW_ONLY, f"metadata_conditioning={option}", name=option)
    assert _gap(stratified) < 0.25


def test_map_options_stop_before_fitting_without_enough_normal_validation_films(run_tiny, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs >= 4 normal reference films .* got [0-3] and .*val_fraction"):
        run_tiny("data.split.val_fraction=0.05", "metadata_conditioning=film_normative", name="few_val")
    assert (tmp_path / "few_val" / "samples.csv").is_file()  # the split was made and written...
    assert not glob.glob(str(tmp_path / "few_val" / "*" / "v*"))  # ...and nothing was fitted
