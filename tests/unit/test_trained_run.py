"""Reading a run back: its threshold from metrics.json and new scores in the threshold's units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from cxrad.metadata_conditioning import calibrate_scores
from cxrad.trained_run import load_run_config, load_threshold, to_threshold_units


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


def test_stratified_runs_calibrate_new_films_like_the_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    val = pd.DataFrame({"view": ["AP", "PA"] * 10, "sex": "M", "age": 50.0, "raw_score": rng.normal(0, 1, 20)})
    val["raw_score"] += np.where(val["view"] == "AP", 3.0, 0.0)
    conditioning = {"name": "stratified", "min_group_size": 5}
    samples = val.assign(label=0)
    calibrated, _ = calibrate_scores(conditioning, val["raw_score"], val["raw_score"].iloc[:0], samples)
    val.assign(score=calibrated).to_csv(tmp_path / "val_scores.csv", index=False)
    cfg = OmegaConf.create({"metadata_conditioning": conditioning})
    new = val.loc[[3, 4], ["age", "sex", "view"]].set_index(pd.Index([0, 1]))
    raw = pd.Series(val.loc[[3, 4], "raw_score"].to_numpy(), index=new.index)
    # the same raw score and metadata as validation films 3 and 4 -> the same calibrated scores
    assert to_threshold_units(tmp_path, cfg, raw, new).tolist() == pytest.approx(calibrated.loc[[3, 4]].tolist())
    plain = OmegaConf.create({"metadata_conditioning": {"name": "none"}})
    assert to_threshold_units(tmp_path, plain, raw, new) is raw
    other = OmegaConf.create({"metadata_conditioning": {"name": "normative"}})
    with pytest.raises(ValueError, match="metadata_conditioning=normative re-scores films"):
        to_threshold_units(tmp_path, other, raw, new)


def test_missing_run_files_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a cxrad run directory"):
        load_run_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="the run did not finish"):
        load_threshold(tmp_path)
