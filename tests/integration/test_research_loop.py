"""The research loop on two real tiny runs: lesion metrics, val scores, W&B offline, heatmap, select, notebook."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import nbformat
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from cxrad.analysis import load_sweep
from cxrad.heatmap import main as heatmap_main
from cxrad.metrics.nodules import findings_of
from cxrad.run import run
from cxrad.select import select
from tests.integration.conftest import TINY, compose_config
from tests.integration.wandb_records import read_run

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "analyze_sweep.ipynb"
JOBS = {
    # PatchCore's score is a re-weighted patch distance, calibrated here: the FPR-matched map threshold applies
    "0_patchcore_resnet18": ("model=patchcore", "metadata_conditioning=stratified", "logger=wandb"),
    # PaDiM's score (unconditioned) is its map's maximum: the image threshold (per view here) is the map threshold
    "1_padim_resnet18": (
        "model=padim",
        "metadata_conditioning=none",
        "threshold=per_group",
        "threshold.min_group_size=3",
    ),
}
COMMON = ("backbone=resnet18", "backbone.pretrained=false")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A multirun-shaped directory of two finished tiny runs, with the ``.hydra`` files Hydra would write."""
    root = tmp_path_factory.mktemp("sweep")
    for name, job in JOBS.items():
        overrides = [*job, *COMMON]
        cfg = compose_config(overrides, root / name, cache_dir)
        run(cfg)
        (root / name / ".hydra").mkdir()
        OmegaConf.save(cfg, root / name / ".hydra" / "config.yaml")
        (root / name / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, *TINY]))
    return root


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_nodule_and_localization_metrics_agree_with_the_predictions(sweep: Path) -> None:
    for name in JOBS:
        metrics, predictions = _metrics(sweep / name), pd.read_csv(sweep / name / "predictions.csv")
        nodule = (predictions["label"] == 1) & predictions["finding_labels"].map(lambda f: "nodule" in findings_of(f))
        small = nodule & (predictions["nodule_size_mm"] < 10.0)
        assert metrics["nodule_auroc"]["n_positive"] == nodule.sum() > 0
        assert metrics["small_nodule_auroc"]["n_positive"] == small.sum()
        assert metrics["nodule_auroc"]["low_confidence"] is bool(nodule.sum() < 20)
        assert predictions.loc[nodule, "nodule_size_mm"].notna().all()  # synthetic films know every size
        films = metrics["pointing_game"]["n_films"]
        assert 0 < films <= (predictions["label"] == 1).sum()
        assert 0.0 <= metrics["pointing_game"]["rate"] <= 1.0
        assert metrics["box_hit_rate"]["n_boxes"] >= films
        assert 0.0 <= metrics["pixel_auroc"]["auroc"] <= 1.0
    assert _metrics(sweep / "0_patchcore_resnet18")["box_hit_rate"]["map_threshold_rule"].startswith("validation")
    assert _metrics(sweep / "1_padim_resnet18")["box_hit_rate"]["map_threshold_rule"].startswith("image threshold")


def test_val_scores_hold_every_validation_film_with_its_role(sweep: Path) -> None:
    padim = pd.read_csv(sweep / "1_padim_resnet18" / "val_scores.csv")
    samples = pd.read_csv(sweep / "1_padim_resnet18" / "samples.csv")
    assert len(padim) == (samples["split"] == "val").sum()
    assert list(padim.columns[:6]) == ["sample_index", "image_path", "label", "val_role", "raw_score", "score"]
    assert set(padim["val_role"]) == {"calibration", "selection"}  # no conditioning fitted: every normal calibrates
    assert (padim["val_role"] == "selection").eq(padim["label"] == 1).all()
    assert (padim["score"] == padim["raw_score"]).all() and padim["map_max"].sub(padim["score"]).abs().max() < 1e-4
    patchcore = pd.read_csv(sweep / "0_patchcore_resnet18" / "val_scores.csv")
    reference = patchcore["val_role"] == "reference"  # stratified is fitted on these: no out-of-sample score
    assert reference.any() and patchcore.loc[reference, "score"].isna().all()
    scored = patchcore[~reference]
    assert not (scored["score"] == scored["raw_score"]).all()  # stratified calibration


def test_wandb_offline_run_holds_metrics_curves_and_tables(sweep: Path) -> None:
    files = list((sweep / "0_patchcore_resnet18" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    logged = read_run(files[0])
    metrics = _metrics(sweep / "0_patchcore_resnet18")
    summary = {key: json.loads(value) for key, value in logged["summary"].items()}
    assert summary["image_auroc"] == pytest.approx(metrics["image_auroc"])
    assert summary["small_nodule_auroc/n_positive"] == metrics["small_nodule_auroc"]["n_positive"]
    assert summary["pointing_game/rate"] == pytest.approx(metrics["pointing_game"]["rate"])
    media = {key.rsplit("/", 1)[0]: summary[key] for key in summary if key.endswith("/_type")}
    assert media["roc_curve_table"] == media["subgroups"] == media["nodule_auroc_by_size"] == "table-file"
    assert media["heatmaps"] == "image-file"
    roc_points = len(pd.read_csv(sweep / "0_patchcore_resnet18" / "predictions.csv")["score"].unique()) + 1
    assert summary["roc_curve_table/nrows"] == roc_points  # every ROC point, not a summary
    assert "model=patchcore" in logged["tags"] and "conditioning=stratified" in logged["tags"]
    assert "model" in logged["config_keys"]


@pytest.mark.parametrize("job", list(JOBS))
def test_heatmap_command_renders_a_test_film(
    sweep: Path, tmp_path: Path, job: str, caplog: pytest.LogCaptureFixture
) -> None:
    samples = pd.read_csv(sweep / job / "samples.csv")
    index = samples.index[(samples["split"] == "test") & (samples["label"] == 1)][0]
    with caplog.at_level(logging.INFO, logger="cxrad.heatmap"):
        out = heatmap_main([str(sweep / job), str(index), "--out", str(tmp_path / "h.png"), "--size", "256"])
    figure = cv2.imread(str(out))
    assert figure.shape[1] == 2 * 256 + 8 and figure.shape[0] > 256  # two panels + key and caption
    # The figure's score and verdict are the run's own for that film (same preprocessing, calibration, cut).
    predictions = pd.read_csv(sweep / job / "predictions.csv").set_index("image_path")
    film = samples.at[index, "image_path"]
    caption = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("anomaly score"))
    score = float(re.match(r"anomaly score (\S+)", caption).group(1))
    assert score == pytest.approx(predictions.at[film, "score"], rel=1e-3, abs=1e-6)
    assert ("FLAGGED" in caption) is bool(predictions.at[film, "pred_label"] == 1)


def test_heatmap_of_an_image_outside_the_run(sweep: Path, tmp_path: Path) -> None:
    samples = pd.read_csv(sweep / "1_padim_resnet18" / "samples.csv")
    outside = tmp_path / "new_film.png"
    shutil.copy(samples.loc[0, "image_path"], outside)
    out = heatmap_main([str(sweep / "1_padim_resnet18"), str(outside), "--view", "AP", "--size", "128"])
    assert out == sweep / "1_padim_resnet18" / "heatmaps" / "on_demand" / "new_film.png" and out.is_file()


def test_select_ranks_the_real_runs(sweep: Path) -> None:
    text = select(sweep)
    board = pd.read_csv(sweep / "leaderboard.csv")
    assert sorted(board["run"]) == sorted(JOBS) and board["rank"].tolist() == [1, 2]
    assert "python -m cxrad.run model=" in text
    comparison = pd.read_csv(sweep / "threshold_comparison.csv")
    assert comparison["method"].tolist() == ["percentile", "otsu", "gmm", "per_group", "f1_oracle"]


def test_notebook_executes_on_the_sweep(sweep: Path) -> None:
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["CXRAD_SWEEP_DIR"] = str(sweep)  # the kernel inherits it
    try:
        NotebookClient(
            notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
        ).execute()
    finally:
        del os.environ["CXRAD_SWEEP_DIR"]
    figures = {p.name for p in (sweep / "analysis").glob("*.png")}
    assert {"roc_overlay.png", "nodule_size_auroc.png", "heatmap_grids.png", "per_finding_auroc.png"} <= figures
    assert len(load_sweep(sweep)) == len(JOBS)


def test_committed_notebook_has_no_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_research_sweep_command_end_to_end(tmp_path: Path, cache_dir: Path) -> None:
    """The README's sweep command (tiny and random-weighted), then select and the notebook, as a user runs them."""
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, "-m", "cxrad.run", "-m", "experiment=research_sweep", "backbone=resnet18",
               "backbone.pretrained=false", "metadata_conditioning=none,film", *TINY, f"paths.cache_dir={cache_dir}",
               f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(load_sweep(sweep_dir)) == 4
    wandb_run = next((sweep_dir / "0_patchcore_resnet18_none" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert read_run(wandb_run)["group"] == sweep_dir.name
    selected = subprocess.run([sys.executable, "-m", "cxrad.select", str(sweep_dir)], capture_output=True, text=True,
                              timeout=300, check=False)  # fmt: skip
    assert selected.returncode == 0 and "## Selected:" in selected.stdout
    env = {**os.environ, "CXRAD_SWEEP_DIR": str(sweep_dir)}
    execute = [sys.executable, "-m", "jupyter", "execute", str(NOTEBOOK)]  # runs it; the file keeps no outputs
    executed = subprocess.run(execute, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert executed.returncode == 0, executed.stderr[-3000:]
    assert (sweep_dir / "analysis" / "roc_overlay.png").is_file()
