"""Loading a sweep's runs into flat and long tables, and the comparison figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrad.analysis import (
    figures,
    find_runs,
    finding_table,
    latest_sweep,
    load_sweep,
    nodule_size_table,
    subgroup_table,
)
from tests.sweep_factory import write_run


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    write_run(tmp_path / "10_padim", model="padim", overrides=("model=padim",), seed=1)
    write_run(tmp_path / "2_patchcore", overrides=("model=patchcore",), small_nodule_auroc=None)
    (tmp_path / "3_unfinished").mkdir()
    return tmp_path


def test_runs_in_job_order_and_flat_columns(sweep_dir: Path) -> None:
    assert [p.name for p in find_runs(sweep_dir)] == ["2_patchcore", "10_padim"]
    sweep = load_sweep(sweep_dir)
    assert sweep["run"].tolist() == ["2_patchcore", "10_padim"]
    padim = sweep.set_index("run").loc["10_padim"]
    assert padim["small_nodule_auroc"] == 0.7 and padim["small_nodule_n"] == 25
    assert padim["pointing_game"] == 0.4 and padim["overrides"] == "model=padim"
    assert (
        sweep.set_index("run").loc["2_patchcore", "small_nodule_auroc"]
        != sweep.set_index("run").loc["2_patchcore", "small_nodule_auroc"]
    )  # NaN


def test_long_tables(sweep_dir: Path) -> None:
    sweep = load_sweep(sweep_dir)
    groups = subgroup_table(sweep)
    assert set(groups["group"]) == {"PA", "AP", "unknown"} and len(groups) == 6
    assert finding_table(sweep).query("run == '10_padim' and finding == 'Mass'")["auroc"].item() == 0.9
    bands = nodule_size_table(sweep)
    assert bands[bands["run"] == "10_padim"]["size_band"].tolist() == ["<10 mm", "10-20 mm", ">=20 mm"]


def test_missing_sweep_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run a sweep first"):
        find_runs(tmp_path)
    with pytest.raises(FileNotFoundError, match="no sweep with finished runs"):
        latest_sweep(tmp_path)


def test_figures_are_written(sweep_dir: Path, tmp_path: Path) -> None:
    sweep = load_sweep(sweep_dir)
    out = tmp_path / "figs"
    figures.plot_roc_overlay(sweep, out / "roc.png")
    figures.plot_subgroup_bars(sweep, "view", "fpr", out / "fpr.png")
    figures.plot_finding_bars(sweep, out / "findings.png")
    figures.plot_nodule_size_curves(sweep, out / "nodules.png")
    figures.plot_heatmap_grids(sweep, path=out / "grids.png")
    assert sorted(p.name for p in out.iterdir()) == ["findings.png", "fpr.png", "grids.png", "nodules.png", "roc.png"]
