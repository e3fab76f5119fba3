"""A three-view CheXpert-format dataset through the real pipeline: per-view audit and per-view thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import read_predictions
from tests.unit.data.test_chexpert import chexpert_row, write_chexpert


@pytest.mark.slow
@pytest.mark.parametrize("conditioning", ["none", "film_normative", "stratified"])
def test_three_view_chexpert_run_audits_and_thresholds_every_view(run_tiny, tmp_path: Path, conditioning: str) -> None:
    rows = []
    for patient in range(24):
        sex, age = ("Male", "Female")[patient % 2], 30 + 2 * patient
        rows.append(chexpert_row(patient, 1, ("PA", "AP")[patient % 2], sex, age, **{"No Finding": 1.0}))
        rows.append(chexpert_row(patient, 2, "LATERAL", sex, age, **{"No Finding": 1.0}))
        rows.append(chexpert_row(patient, 3, ("AP", "PA")[patient % 2], sex, age + 1, **{"Edema": 1.0}))
        rows.append(chexpert_row(patient, 4, "LATERAL", sex, age + 1, **{"Edema": 1.0}))
    metrics, out_dir = run_tiny(
        "data=chexpert",
        f"data.source.root={write_chexpert(tmp_path / 'chexpert', rows)}",
        "data.source.views=[PA,AP,LATERAL]",
        "data.num_workers=0",
        "data.split.val_fraction=0.4",
        "data.split.test_fraction=0.35",
        "threshold=per_group",
        "threshold.min_group_size=2",
        f"metadata_conditioning={conditioning}",
    )
    assert set(metrics["per_view"]) == {"PA", "AP", "LATERAL"}
    assert metrics["per_view"]["LATERAL"]["n_normal"] > 0 and metrics["subgroups"]["view"]["LATERAL"]["n"] > 0
    assert "LATERAL" in metrics["threshold_groups"]["values"]
    predictions = read_predictions(out_dir)
    assert set(predictions.view) == {"PA", "AP", "LATERAL"}
