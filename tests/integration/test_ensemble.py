"""model=ensemble: each member fitted as its own run, standardised on the normal validation films, averaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from cxrad.model.ensemble import Standardiser
from cxrad.trained_run import load_trained_run
from cxrad.validate import validate
from tests.integration.conftest import compose_config, read_predictions

TINY_BACKBONE = ["backbone=resnet18", "backbone.pretrained=false"]
MEMBERS = ("patchcore", "global_gaussian")  # conf/model/ensemble.yaml's default members


def _member_z(run_dir: Path) -> pd.Series:
    """A single model's test scores standardised by its own normal validation films (the ensemble's rule)."""
    val = pd.read_csv(run_dir / "val_scores.csv")
    normal = val.loc[val["label"] == 0, "raw_score"]
    test = read_predictions(run_dir).set_index("image_path")["score"]
    return (test - normal.mean()) / normal.std(ddof=1)


def test_ensemble_scores_the_mean_of_its_members_standardised_scores(run_tiny) -> None:
    metrics, out_dir = run_tiny("model=ensemble", *TINY_BACKBONE, "metadata_conditioning=none", name="ensemble")
    solo = {m: run_tiny(f"model={m}", *TINY_BACKBONE, "metadata_conditioning=none", name=m)[1] for m in MEMBERS}
    expected = sum(_member_z(solo[m]) for m in MEMBERS) / len(MEMBERS)
    got = read_predictions(out_dir).set_index("image_path")["score"]
    np.testing.assert_allclose(got.loc[expected.index], expected, atol=1e-4)
    # the standardisation read the normal validation films only: as many as the run has
    val = pd.read_csv(out_dir / "val_scores.csv")
    for member in MEMBERS:
        assert metrics["ensemble_members"][member]["normal_films"] == int((val["label"] == 0).sum())
        assert (out_dir / "members" / member).is_dir()  # each member's own engine wrote under the run


def test_ensemble_run_is_refused_by_predict_with_one_line(run_tiny, tmp_path: Path, cache_dir: Path) -> None:
    _, out_dir = run_tiny("model=ensemble", *TINY_BACKBONE, "metadata_conditioning=none")
    cfg = compose_config(["model=ensemble", *TINY_BACKBONE], out_dir, cache_dir)
    (out_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, out_dir / ".hydra" / "config.yaml")
    with pytest.raises(ValueError, match="model=ensemble run, which cxrad.predict cannot reload"):
        load_trained_run(out_dir)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["~model.members.global_gaussian"], r"members \['patchcore'\]; it needs at least two"),
        (["model.members.patchcore.detector.patch_size=2"], r"model\.members\.patchcore\.detector\.patch_size=2"),
        (["resume_from=/tmp/somewhere"], "fits its members afresh; drop resume_from"),
        (["metadata_conditioning=film"], "not available for model=ensemble"),
        (["+model@model.members.ensemble=ensemble"], r"model\.members\.ensemble must be a single model's config"),
    ],
)
def test_ensemble_config_errors_name_the_member_and_the_fix(
    tmp_path: Path, cache_dir: Path, overrides: list[str], message: str
) -> None:
    cfg = compose_config(["model=ensemble", *TINY_BACKBONE, *overrides], tmp_path / "run", cache_dir)
    with pytest.raises(ValueError, match=message):
        validate(cfg)


def test_a_member_without_normal_spread_cannot_be_standardised() -> None:
    assert Standardiser.of(np.array([1.0, 3.0]), "patchcore") == Standardiser(2.0, float(np.sqrt(2.0)), 2)
    with pytest.raises(ValueError, match="member dfm scored 3 normal validation films with no spread"):
        Standardiser.of(np.array([0.5, 0.5, 0.5]), "dfm")
