"""model=ensemble: each member fitted as its own run, standardised on the normal validation films, averaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from cxrad.heatmap import read_samples_table, score_film
from cxrad.model.ensemble import Standardiser, member_config
from cxrad.model.registry import MODELS, register_model
from cxrad.trained_run import load_trained_run
from cxrad.validate import validate
from tests.integration.conftest import compose_config, predict_again, read_predictions, run_and_keep_config

TINY_BACKBONE = ["backbone=resnet18", "backbone.pretrained=false"]
TINY_RD = ["model.members.reverse_distillation.max_epochs=1"]  # as the tiny solo runs' model.max_epochs=1
# conf/model/ensemble.yaml's default members and the backbone each reads in its own run
MEMBERS = {
    "patchcore": TINY_BACKBONE,
    "global_gaussian": TINY_BACKBONE,
    "reverse_distillation": ["backbone=resnet18_random"],
}


def _member_z(run_dir: Path) -> pd.Series:
    """A single model's test scores standardised by its own normal validation films (the ensemble's rule)."""
    val = pd.read_csv(run_dir / "val_scores.csv")
    normal = val.loc[val["label"] == 0, "raw_score"]
    test = read_predictions(run_dir).set_index("image_path")["score"]
    return (test - normal.mean()) / normal.std(ddof=1)


def test_ensemble_scores_the_mean_of_its_members_standardised_scores(run_tiny) -> None:
    metrics, out_dir = run_tiny(
        "model=ensemble", *TINY_BACKBONE, *TINY_RD, "metadata_conditioning=none", name="ensemble"
    )
    solo = {m: run_tiny(f"model={m}", *b, "metadata_conditioning=none", name=m)[1] for m, b in MEMBERS.items()}
    expected = sum(_member_z(solo[m]) for m in MEMBERS) / len(MEMBERS)
    got = read_predictions(out_dir).set_index("image_path")["score"]
    np.testing.assert_allclose(got.loc[expected.index], expected, atol=1e-4)
    # the standardisation read the normal validation films only: as many as the run has
    val = pd.read_csv(out_dir / "val_scores.csv")
    for member in MEMBERS:
        assert metrics["ensemble_members"][member]["normal_films"] == int((val["label"] == 0).sum())
        assert (out_dir / "members" / member).is_dir()  # each member's own engine wrote under the run


def test_a_member_with_its_own_backbone_scores_as_its_own_run_with_that_backbone(run_tiny) -> None:
    lite0 = ["backbone=efficientnet_lite0", "backbone.pretrained=false"]
    own = [
        "~model.members.reverse_distillation",
        "+backbone@model.members.global_gaussian.backbone=efficientnet_lite0",
        "model.members.global_gaussian.backbone.pretrained=false",
    ]
    common = ["metadata_conditioning=none"]
    metrics, out_dir = run_tiny("model=ensemble", *TINY_BACKBONE, *own, *common, name="ensemble")
    solo = {
        "patchcore": run_tiny("model=patchcore", *TINY_BACKBONE, *common, name="patchcore")[1],
        "global_gaussian": run_tiny("model=global_gaussian", *lite0, *common, name="global_gaussian")[1],
    }
    expected = sum(_member_z(run_dir) for run_dir in solo.values()) / len(solo)
    got = read_predictions(out_dir).set_index("image_path")["score"]
    np.testing.assert_allclose(got.loc[expected.index], expected, atol=1e-4)
    backbones = {m: metrics["ensemble_members"][m]["backbone"] for m in solo}
    assert backbones == {"patchcore": "resnet18", "global_gaussian": "efficientnet_lite0"}


def test_predict_reloads_an_ensemble_run_and_scores_its_films_as_the_run_did(tmp_path: Path, cache_dir: Path) -> None:
    own = ["+backbone@model.members.global_gaussian.backbone=resnet18_random"]
    overrides = ["model=ensemble", *TINY_BACKBONE, *TINY_RD, *own, "metadata_conditioning=none"]
    out_dir = run_and_keep_config(compose_config(overrides, tmp_path / "run", cache_dir))
    trained = load_trained_run(out_dir)
    assert list(trained.model.model.members) == list(MEMBERS)
    again = predict_again(out_dir, tmp_path, heatmaps=False)
    assert again.skipped.empty
    assert len(again.merged) == len(again.expected)
    np.testing.assert_allclose(again.merged.score, again.merged.score_run, rtol=1e-4, atol=1e-4)
    # cxrad.heatmap scores a test film through the same fused forward, map included
    samples = read_samples_table(out_dir)
    film = samples[(samples["split"] == "test") & (samples["label"] == 1)].iloc[0]
    score, anomaly_map, _ = score_film(trained, film)
    assert score == pytest.approx(again.expected.set_index("image_path").at[film["image_path"], "score"], abs=1e-4)
    assert anomaly_map.shape == (trained.preprocess.image_size,) * 2 and np.isfinite(anomaly_map).all()


def test_a_model_that_fits_itself_without_a_load_is_refused_by_predict_with_one_line(
    tmp_path: Path, cache_dir: Path
) -> None:
    register_model("self_fitting_toy", fit=lambda *args: {}, uses_backbone=False)(lambda **kwargs: None)
    try:
        cfg = compose_config(["model=patchcore", *TINY_BACKBONE], tmp_path / "run", cache_dir)
        cfg.model.name = "self_fitting_toy"
        (tmp_path / "run" / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, tmp_path / "run" / ".hydra" / "config.yaml")
        with pytest.raises(ValueError, match="model=self_fitting_toy run, which cxrad.predict cannot reload"):
            load_trained_run(tmp_path / "run")
    finally:
        del MODELS["self_fitting_toy"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["~model.members.global_gaussian", "~model.members.reverse_distillation"],
            r"members \['patchcore'\]; it needs at least two",
        ),
        (["model.members.patchcore.detector.patch_size=2"], r"model\.members\.patchcore\.detector\.patch_size=2"),
        (["resume_from=/tmp/somewhere"], "fits its members afresh; drop resume_from"),
        (["metadata_conditioning=film"], "not available for model=ensemble; .* or add model=patchcore"),
        (["+model.detector.num_neighbors=3"], r"e\.g\. model\.members\.patchcore\.detector\.num_neighbors=\.\.\., or"),
        (["model.max_epochs=20"], r"trains nothing itself; .* model\.members\.reverse_distillation\.max_epochs=20"),
        (["+model@model.members.ensemble=ensemble"], r"model\.members\.ensemble must be a single model's config"),
        (
            ["+model@model.members.rd=reverse_distillation", "+backbone@model.members.rd.backbone=efficientnet_lite0"],
            "ensemble member rd: model.members.rd.backbone=efficientnet_lite0 defines no feature layers for "
            "model=reverse_distillation; add model.members.rd.backbone.layers.reverse_distillation",
        ),
        (
            ["+model.members.global_gaussian.backbone=resnet18"],
            r"model\.members\.global_gaussian\.backbone is not a conf/backbone option; set it whole with "
            r"\+backbone@model\.members\.global_gaussian\.backbone=",
        ),
        (
            ["+model@model.members.draem=draem", "+backbone@model.members.draem.backbone=resnet18"],
            "model.members.draem.backbone=resnet18: model=draem reads no backbone; drop the member's backbone",
        ),
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


@pytest.mark.parametrize(
    ("member_set", "solo_set", "n_features"),
    [([], [], 550), (["model.members.padim.detector.n_features=50"], ["model.detector.n_features=50"], 50)],
)
def test_a_member_gets_its_own_model_backbone_patch_under_the_command_line(
    tmp_path: Path, cache_dir: Path, member_set: list[str], solo_set: list[str], n_features: int
) -> None:
    """conf/model_backbone/padim_wide_resnet50_2.yaml, as a solo padim + wide_resnet50_2 run composes it."""
    member = ["+model@model.members.padim=padim", "+backbone@model.members.padim.backbone=wide_resnet50_2"]
    cfg = compose_config(["model=ensemble", *TINY_BACKBONE, *member, *member_set], tmp_path / "run", cache_dir)
    solo = compose_config(["model=padim", "backbone=wide_resnet50_2", *solo_set], tmp_path / "solo", cache_dir)
    assert member_config(cfg, "padim").model.detector.n_features == solo.model.detector.n_features == n_features
