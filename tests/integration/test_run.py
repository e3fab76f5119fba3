"""The real pipeline (anomalib models and Engine, real files) on tiny data, one test per group option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrad.trained_run import load_threshold
from tests.integration.conftest import read_predictions

CONTRACT_KEYS = {
    "image_auroc",
    "image_aupr",
    "threshold_method",
    "threshold",
    "fpr",
    "tpr",
    "tpr_at_fpr_0.05",
    "fpr_at_tpr_0.95",
    "per_finding_auroc",
    "subgroups",
    "view_stratified_auroc",
    "normal_view_leakage_auroc",
    "view_only_auroc",
    "n_train",
    "n_test",
    "fit_seconds",
    "test_seconds",
}
RANDOM = "backbone.pretrained=false"


def _check_contract(metrics: dict, out_dir: Path) -> None:
    assert set(metrics) >= CONTRACT_KEYS
    for name in ("roc.png", "pr.png", "score_by_view.png", "predictions.csv", "heatmaps/grid.png"):
        assert (out_dir / name).stat().st_size > 0, name
    predictions = read_predictions(out_dir)
    expected = ["image_path", "label", "score", "pred_label", "age", "sex", "view", "finding_labels"]
    assert expected == list(predictions.columns[: len(expected)])
    assert len(predictions) == metrics["n_test"]
    cuts = load_threshold(out_dir).cuts(predictions)  # one global cut, or per group (threshold=per_group)
    assert ((predictions.score >= cuts) == predictions.pred_label.astype(bool)).all()


@pytest.mark.parametrize(
    "overrides",
    [
        ("model=patchcore", "backbone=resnet18", RANDOM),
        (
            "model=patchcore",
            "backbone=efficientnet_b0",
            RANDOM,
            "model.detector.patch_size=5",
            "model.detector.patch_stride=2",
        ),
        ("model=padim", "backbone=resnet18", RANDOM),
        ("model=padim", "backbone=efficientnet_lite0", "model.detector.patch_size=3"),
        ("model=fastflow", "backbone=resnet18", RANDOM, "model.detector.flow_steps=2"),
        (
            "model=fastflow",
            "backbone=efficientnet_lite0",
            "metadata_conditioning=film",
            "model.detector.flow_steps=2",
        ),
        pytest.param(("model=draem",), marks=pytest.mark.slow),  # ~100 s on 2 cores; test_models covers it too
    ],
    ids=[
        "patchcore-resnet18",
        "patchcore-effb0-patch5",
        "padim-resnet18",
        "padim-lite0",
        "fastflow",
        "fastflow-lite0-film",
        "draem",
    ],
)
def test_every_model_runs_and_writes_the_output_contract(run_tiny, overrides: tuple[str, ...]) -> None:
    metrics, out_dir = run_tiny(*overrides)
    _check_contract(metrics, out_dir)
    assert metrics["model"] == overrides[0].split("=")[1]
    assert np.isfinite(read_predictions(out_dir).score).all()


@pytest.mark.parametrize(
    "overrides",
    [
        ("backbone=wide_resnet50_2", RANDOM),
        ("preprocessing=none",),
        ("threshold=otsu",),
        ("threshold=gmm",),
        ("threshold=f1_oracle",),
        ("threshold=per_group", "threshold.min_group_size=3"),
        ("metadata_conditioning=film",),
        ("model=padim", "metadata_conditioning=normative"),
        ("metadata_conditioning=film_normative",),  # none is the default (the other cases run it)
    ],
)
def test_other_group_options_run(run_tiny, overrides: tuple[str, ...]) -> None:
    metrics, out_dir = run_tiny(*overrides)
    _check_contract(metrics, out_dir)
    if overrides[0] == "threshold=f1_oracle":
        assert metrics["threshold_is_oracle"] is True


def test_pretrained_patchcore_detects_synthetic_lesions(run_tiny) -> None:
    """Real ImageNet features (EfficientNet-Lite0) find the phantoms' masses and effusions."""
    metrics, out_dir = run_tiny(
        "data.source.n_normal=80",
        "data.source.n_abnormal=40",
        "preprocessing.image_size=128",
        "data.source.ap_effect=0",
        "metadata_conditioning=none",  # the features themselves, not a reference of a dozen films
        "data.source.findings=[mass,effusion]",
    )
    assert metrics["image_auroc"] > 0.75
    assert metrics["per_finding_auroc"]["Effusion"]["auroc"] > 0.75
    samples = pd.read_csv(out_dir / "samples.csv")
    assert (samples.loc[samples.split == "train", "label"] == 0).all()  # trained on normals only
    assert (samples.loc[samples.split == "val", "label"] == 1).any()  # the default split keeps val's abnormal films
    assert samples.groupby("patient_id").split.nunique().max() == 1


@pytest.mark.parametrize("model", ["patchcore", "padim"])
def test_same_seed_same_scores(run_tiny, model: str) -> None:
    _, first = run_tiny(f"model={model}", "backbone=resnet18", RANDOM, name="a")
    _, second = run_tiny(f"model={model}", "backbone=resnet18", RANDOM, name="b")
    assert np.array_equal(read_predictions(first).score, read_predictions(second).score)


def test_nih64_real_films_run(run_tiny, shared_data: Path) -> None:
    metrics, out_dir = run_tiny(
        "data=nih",
        f"data.source.root={shared_data / 'nih64_sample'}",
        "data.num_workers=0",
        "data.split.strategy=normal_patients",  # nih64_sample: one patient holds 19 of the 20 abnormal films
        "data.split.val_fraction=0.45",  # 20 normal films: enough for a reference and a calibration part
    )
    _check_contract(metrics, out_dir)
    assert metrics["data"] == "nih" and metrics["n_test_abnormal"] == 20


def test_csv_source_runs(run_tiny, tmp_path: Path, shared_data: Path) -> None:
    meta = pd.read_csv(shared_data / "nih64_sample" / "Data_Entry_2017_v2020.csv")
    table = pd.DataFrame(
        {
            "image_path": "images/" + meta["Image Index"],
            "label": (meta["Finding Labels"] != "No Finding").astype(int),
            "age": meta["Patient Age"],
            "sex": meta["Patient Gender"],
            "view": meta["View Position"],
            "patient_id": meta["Patient ID"],
            "finding_labels": meta["Finding Labels"],
        }
    )
    table.to_csv(tmp_path / "samples.csv", index=False)
    metrics, _ = run_tiny(
        "data=csv",
        f"data.source.csv_path={tmp_path / 'samples.csv'}",
        f"data.source.root={shared_data / 'nih64_sample'}",
        "data.num_workers=0",
        "data.split.strategy=normal_patients",  # nih64_sample: one patient holds 19 of the 20 abnormal films
        "data.split.val_fraction=0.45",  # 20 normal films: enough for a reference and a calibration part
    )
    assert metrics["data"] == "csv" and metrics["n_test"] > 20


def test_wandb_offline_run_is_written_inside_the_run_dir(run_tiny) -> None:
    metrics, out_dir = run_tiny("logger=wandb", "backbone=resnet18", RANDOM)
    runs = list((out_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb"))
    assert metrics["image_auroc"] is not None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("model=fastflow", "backbone=efficientnet_b0", "~backbone.layers.fastflow"),
            "backbone=efficientnet_b0 defines no feature layers for model=fastflow; add backbone.layers.fastflow",
        ),
        (("model=fastflow", "backbone.layers.fastflow=[blocks.3]"), r"no feature layer\(s\) \['blocks.3'\]"),
        (("model=fastflow", "backbone=resnet18", "preprocessing.image_size=80"), "divisible by 32"),
        (("model.detector.patch_size=4",), "patch_size=4 must be odd"),
        (("backbone.layers.patchcore=[layer9]",), r"no feature layer\(s\) \['layer9'\]"),
        (("model.detector.coreset_sampling_ratio=0",), "coreset_sampling_ratio=0"),
        (
            ("metadata_conditioning=film_normative", "metadata_conditioning.pool=median"),
            r"metadata_conditioning.pool=median is unknown; choose from \['max', 'mean'\]",
        ),
        (
            ("metadata_conditioning=normative", "metadata_conditioning.map_units=z"),
            r"metadata_conditioning.map_units=z is unknown; choose from \['sd', 'detector'\]",
        ),
    ],
)
def test_invalid_combinations_fail_early_with_the_fix(run_tiny, overrides: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_tiny(*overrides)
