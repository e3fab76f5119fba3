"""Reading a run back: its threshold from metrics.json and new scores in the threshold's units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cxrad.data.metadata import MetadataEncoder
from cxrad.metadata_conditioning import REFERENCE_FILE, GridMapCollector, calibrate_scores, save_reference
from cxrad.metadata_conditioning.normative import NormativeMap, map_pool, map_settings, normative_scores, pool_maps
from cxrad.trained_run import load_run_config, load_threshold, to_threshold_units

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_threshold_round_trips_through_metrics_json(tmp_path: Path) -> None:
    metrics = {
        "threshold": 1.5,
        "threshold_method": "per_group",
        "threshold_is_oracle": False,
        "threshold_params": {"q": 95.0},
        "threshold_groups": {"by": ["view"], "values": {"AP": 2.0, "PA": 1.0}},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    threshold = load_threshold(tmp_path)
    cuts = threshold.cuts(pd.DataFrame({"view": ["AP", "PA", "unknown"], "age": 50.0}))
    assert cuts.tolist() == [2.0, 1.0, 1.5]


@pytest.mark.parametrize("option", ["stratified", "film_stratified"])
def test_stratified_runs_calibrate_new_films_like_the_run(tmp_path: Path, option: str) -> None:
    rng = np.random.default_rng(0)
    val = pd.DataFrame({"view": ["AP", "PA"] * 10, "sex": "M", "age": 50.0, "raw_score": rng.normal(0, 1, 20)})
    val["raw_score"] += np.where(val["view"] == "AP", 3.0, 0.0)
    val["val_role"] = np.where(val.index < 14, "reference", "calibration")  # fitted on 14, applied to the rest
    conditioning = {"name": option, "min_group_size": 5}
    samples = val.assign(label=0)
    calibrated, _ = calibrate_scores(conditioning, val["raw_score"], val["raw_score"].iloc[:0], samples)
    assert calibrated.index.tolist() == list(range(14, 20))  # reference films get no (in-sample) score
    val.assign(score=calibrated).to_csv(tmp_path / "val_scores.csv", index=False)
    cfg = OmegaConf.create({"metadata_conditioning": conditioning})
    new = val.loc[[15, 16], ["age", "sex", "view"]].set_index(pd.Index([0, 1]))
    raw = pd.Series(val.loc[[15, 16], "raw_score"].to_numpy(), index=new.index)
    # the same raw score and metadata as calibration films 15 and 16 -> the same calibrated scores
    assert to_threshold_units(tmp_path, cfg, raw, new).tolist() == pytest.approx(calibrated.loc[[15, 16]].tolist())
    plain = OmegaConf.create({"metadata_conditioning": {"name": "none"}})
    assert to_threshold_units(tmp_path, plain, raw, new) is raw
    normative = OmegaConf.create({"metadata_conditioning": {"name": "normative"}})
    with pytest.raises(ValueError, match="scores films from their anomaly maps; pass anomaly_maps"):
        to_threshold_units(tmp_path, normative, raw, new)


@pytest.mark.parametrize("units", ["sd", "detector"])
def test_normative_runs_score_new_films_like_their_test_films(tmp_path: Path, units: str) -> None:
    """The saved reference refits the run's map regressions: a new film with a test film's map and metadata
    scores what that test film scored in the run, in the run's map units."""
    rng = np.random.default_rng(0)
    n, grid = 24, 4
    views = ["AP" if i % 2 == 0 else "PA" for i in range(n)]  # even films AP
    metadata = MetadataEncoder().encode_many((50.0, "M", view) for view in views).numpy()
    is_ap = np.array([view == "AP" for view in views], dtype=np.float32)
    full_maps = rng.normal(0, 0.1, (n, 16, 16)).astype(np.float32) + 3.0 * is_ap[:, None, None]
    collector = GridMapCollector(grid)
    for i in range(n):
        collector.maps[i] = pool_maps(torch.from_numpy(full_maps[i])[None], grid)[0]
        collector.metadata[i] = metadata[i]
    normal_val, test_index = list(range(20)), [20, 21, 22, 23]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):  # the shipped settings, as Hydra composes them
        overrides = ["metadata_conditioning=film_normative", f"metadata_conditioning.map_units={units}"]
        conditioning = compose("config", overrides=overrides).metadata_conditioning
    assert map_settings(conditioning) == {
        "prior_count": 1.0,
        "scale": True,
        "position_spread": True,
        "units": units,
        "covariates": ("view", "sex", "age"),
        "min_reference_films": 10,
    }
    assert map_pool(conditioning) == "max" == collector.pool
    run_scores = normative_scores(
        collector.maps, collector.metadata, normal_val, test_index, **map_settings(conditioning)
    )
    save_reference(tmp_path / REFERENCE_FILE, collector, normal_val)
    cfg = OmegaConf.create({"metadata_conditioning": conditioning})
    frame = pd.DataFrame({"age": 50.0, "sex": "M", "view": ["AP", "PA", "AP", "PA"]}, index=[7, 8, 9, 10])
    raw = pd.Series(0.0, index=frame.index)
    scores = to_threshold_units(
        tmp_path, cfg, raw, frame, torch.from_numpy(full_maps[test_index]), torch.from_numpy(metadata[test_index])
    )
    assert scores.index.tolist() == [7, 8, 9, 10]
    assert scores.to_numpy() == pytest.approx(run_scores.loc[test_index].to_numpy(), rel=1e-5)
    # a reference saved before `pool` existed holds mean-pooled maps: new films are mean-pooled to match
    with np.load(tmp_path / REFERENCE_FILE) as saved:
        assert str(saved["pool"]) == "max"
        old = {key: saved[key] for key in ("maps", "metadata", "grid")}
    np.savez_compressed(tmp_path / REFERENCE_FILE, **old)
    mean_pooled = pool_maps(torch.from_numpy(full_maps[test_index]), grid, "mean")
    expected = (
        NormativeMap(**map_settings(conditioning))
        .fit(old["maps"], old["metadata"])
        .score(mean_pooled, metadata[test_index])
    )
    scores = to_threshold_units(
        tmp_path, cfg, raw, frame, torch.from_numpy(full_maps[test_index]), torch.from_numpy(metadata[test_index])
    )
    assert scores.to_numpy() == pytest.approx(expected, rel=1e-5)
    (tmp_path / REFERENCE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="predates normative_reference.npz; rerun it"):
        to_threshold_units(tmp_path, cfg, raw, frame, torch.from_numpy(full_maps[test_index]), metadata[test_index])


def test_missing_run_files_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a cxrad run directory"):
        load_run_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="the run did not finish"):
        load_threshold(tmp_path)
