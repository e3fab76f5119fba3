"""A trained run reused: resumed without fitting again, and scoring new films with ``python -m cxrad.predict``.

One tiny PatchCore + FiLM run on real NIH films (memory bank and FiLM statistics in the checkpoint) serves most;
a PaDiM ``film_normative`` run checks that the normative map re-scoring is redone for new films.
"""

from __future__ import annotations

import glob
import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from cxrad.heatmap import main as heatmap_main
from cxrad.predict import main, predict
from cxrad.run import run
from tests.films import dicom_from_png, write_truncated_png
from tests.integration.conftest import compose_config, predict_again, read_predictions, run_and_keep_config

TAGS = {"PatientAge": "071Y", "PatientSex": "M", "ViewPosition": "PA"}
MODEL = ("model=patchcore", "metadata_conditioning=film", "backbone=resnet18", "backbone.pretrained=false")


def _data(shared_data: Path) -> list[str]:
    root = f"data.source.root={shared_data / 'nih64_sample'}"
    # nih64_sample: one patient holds 19 of the 20 abnormal films, so only normal_patients is sure to test him.
    return [
        "data=nih",
        root,
        "data.num_workers=0",
        "data.split.strategy=normal_patients",
        "data.split.val_fraction=0.45",  # 20 normal films: enough for a reference and a calibration part
    ]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, shared_data: Path) -> Path:
    """A finished run directory as Hydra leaves it (``.hydra/config.yaml`` included)."""
    out = tmp_path_factory.mktemp("trained") / "patchcore_film"
    cfg = compose_config([*_data(shared_data), *MODEL], out, cache_dir)
    run(cfg)
    (out / ".hydra").mkdir()
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    return out


def test_resume_reuses_the_fit_and_reproduces_the_scores(run_dir: Path, run_tiny, shared_data: Path) -> None:
    (checkpoint,) = glob.glob(str(run_dir / "*" / "v*" / "weights" / "lightning" / "model.ckpt"))
    state = torch.load(checkpoint, weights_only=True)["state_dict"]  # nothing but weights in it
    assert state["_is_fitted"].all() and state["model.memory_bank"].numel() and state["model.film.mean_bar"].numel()
    first_metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics, resumed = run_tiny(*_data(shared_data), *MODEL, f"resume_from={run_dir}", name="resumed")
    assert metrics["resumed_from"] == checkpoint and first_metrics["resumed_from"] is None
    assert not glob.glob(str(resumed / "*" / "v*"))  # nothing was fitted again
    assert np.array_equal(read_predictions(run_dir).score, read_predictions(resumed).score)
    with pytest.raises(ValueError, match="was trained on other films"):
        run_tiny(*_data(shared_data), *MODEL, "data.split.val_fraction=0.25", f"resume_from={run_dir}", name="other")
    assert json.loads((run_dir / "metrics.json").read_text()) == first_metrics  # the earlier run is untouched


def test_predict_reproduces_the_runs_own_test_scores(run_dir: Path, tmp_path: Path) -> None:
    """Same weights (memory bank, FiLM), same preprocessing and metadata, same threshold: same answers."""
    again = predict_again(run_dir, tmp_path)
    predictions, merged = again.predictions, again.merged
    assert again.skipped.empty and list(predictions.columns[-1:]) == ["label"]
    assert len(merged) == len(again.expected)
    np.testing.assert_allclose(merged.score, merged.score_run, rtol=1e-5)
    assert (merged.pred_label == merged.pred_label_run).all()
    assert all(Path(p).is_file() for p in predictions.heatmap)
    assert pd.read_csv(again.out / "predictions.csv").shape == predictions.shape


def test_predict_a_folder_of_full_size_pngs_dicoms_and_a_broken_file(
    run_dir: Path, tmp_path: Path, shared_data: Path
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    pngs = sorted((shared_data / "nih_sample").rglob("*.png"))[:3]
    for png in pngs:
        (folder / png.name).symlink_to(png)
    dicom_from_png(pngs[0], folder / "tagged.dcm", TAGS, monochrome1=False)
    dicom_from_png(pngs[1], folder / "untagged", {})  # MONOCHROME1, no extension, no tags
    write_truncated_png(folder / "broken.png", np.zeros((64, 64), np.uint8))
    predictions, skipped, _ = predict(run_dir, folder, tmp_path / "out", heatmaps=False)
    by_name = predictions.set_index(predictions.image_path.map(lambda p: Path(p).name))
    assert set(by_name.index) == {png.name for png in pngs} | {"tagged.dcm", "untagged"}
    assert (by_name.loc["tagged.dcm", "age"], by_name.loc["tagged.dcm", "sex"]) == (71.0, "M")
    assert by_name.loc["untagged", "view"] == "unknown" and np.isnan(by_name.loc["untagged", "age"])
    # a 12-bit MONOCHROME1 DICOM of a PNG film, with the same (unknown) metadata: nearly the same score
    assert by_name.loc["untagged", "score"] == pytest.approx(by_name.loc[pngs[1].name, "score"], rel=0.05)
    assert ((predictions.score >= predictions.threshold) == predictions.pred_label.astype(bool)).all()
    assert skipped.reason.tolist() == ["corrupt"] and skipped.image_path.iloc[0].endswith("broken.png")
    with pytest.raises(FileExistsError, match="never overwrites"):
        predict(run_dir, folder, tmp_path / "out")


def test_command_line_overrides_metadata_and_reports(run_dir: Path, tmp_path: Path, shared_data: Path, capsys) -> None:
    film = dicom_from_png(next((shared_data / "nih_sample").rglob("*.png")), tmp_path / "film.dcm", TAGS)
    status = main([str(run_dir), str(film), "--out", str(tmp_path / "out"), "--age", "45", "--view", "AP"])
    assert status == 0
    report = capsys.readouterr().out
    assert "1 film(s) scored" in report and "flagged abnormal" in report and "heatmaps" in report
    row = pd.read_csv(tmp_path / "out" / "predictions.csv").iloc[0]
    assert (row.age, row.sex, row.view) == (45.0, "M", "AP")  # overrides win; the tag fills the rest
    assert Path(row.heatmap).is_file()
    assert main([str(run_dir), str(tmp_path / "nowhere.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(run_dir), str(film), "--view", "lateral"]) == 2
    assert "--view 'lateral' is not understood; use PA, AP or unknown" in capsys.readouterr().err
    assert main([str(tmp_path), str(film)]) == 2  # not a run directory
    assert "cxrad.run" in capsys.readouterr().err


def test_film_normative_runs_score_new_films_like_their_test_films(
    tmp_path: Path, cache_dir: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The anomaly maps of new films are standardised by the run's saved normal reference, as its test films were."""
    out = tmp_path / "padim_film_normative"
    model = ("model=padim", "metadata_conditioning=film_normative", "backbone=resnet18", "backbone.pretrained=false")
    run_and_keep_config(compose_config([*_data(shared_data), *model], out, cache_dir))
    val = pd.read_csv(out / "val_scores.csv")
    assert not np.allclose(val.score, val.raw_score)  # the scores are normative z-scores, not the raw ones
    assert (out / "normative_reference.npz").is_file()
    again = predict_again(out, tmp_path, heatmaps=False)
    merged = again.merged
    assert len(merged) == len(again.expected)
    np.testing.assert_allclose(merged.score, merged.score_run, rtol=1e-4, atol=1e-4)
    assert (merged.pred_label == merged.pred_label_run).all()
    samples = pd.read_csv(out / "samples.csv")
    index = samples.index[(samples["split"] == "test") & (samples["view"] == "AP")][0]
    figure = heatmap_main([str(out), str(index), "--out", str(tmp_path / "h.png"), "--size", "128"])
    assert figure.is_file()
    # a validation film's figure shows the score the run gave it, not a re-score against a reference holding it
    val = val[val.score.notna()]  # reference films were fitted on, not scored
    val_film = int(val.sample_index.iloc[0])
    with caplog.at_level(logging.INFO, logger="cxrad.heatmap"):
        heatmap_main([str(out), str(val_film), "--out", str(tmp_path / "v.png"), "--size", "128"])
    caption = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("anomaly score"))
    assert float(re.match(r"anomaly score (\S+)", caption).group(1)) == pytest.approx(val.score.iloc[0], rel=1e-3)
