"""Selectable covariates, covariates a small reference cannot support, and a reference from training patients."""

import numpy as np
import pandas as pd
import pytest
import torch

from cxrad.data.metadata import MetadataEncoder, covariate_columns, supported_covariates
from cxrad.metadata_conditioning import assign_val_roles, used_covariates
from cxrad.metadata_conditioning.film import NormativeFiLM
from cxrad.metadata_conditioning.normative import NormativeMap
from cxrad.metadata_conditioning.stratified import GroupCalibration, levels_for
from cxrad.metrics import auroc

ENCODER = MetadataEncoder()


def _films(n: int, rng: np.random.Generator, sex_effect: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8x8 maps; normal men's maps are raised everywhere by ``sex_effect``; half the films are AP (hot border)."""
    ap = rng.random(n) < 0.5
    men = rng.random(n) < 0.5
    maps = rng.normal(1.0, 0.1, (n, 8, 8))
    maps[ap, 0, :] += 1.0
    maps[men] += sex_effect
    metadata = np.stack(
        [ENCODER.encode(50.0, "M" if m else "F", "AP" if a else "PA").numpy() for a, m in zip(ap, men, strict=True)]
    )
    return maps, metadata, men


def test_the_map_regressions_read_only_the_configured_covariates() -> None:
    """Abnormal films here are mostly men (as covariates can differ between normal and diseased films on NIH): a
    correction by sex also removes the disease signal that rides on it; view-only conditioning keeps it."""
    rng = np.random.default_rng(0)
    ref_maps, ref_meta, _ = _films(200, rng, sex_effect=0.0)
    test_maps, test_meta, men = _films(400, rng, sex_effect=0.0)
    lesion = men & (rng.random(400) < 0.8)  # disease concentrated in one sex of the *test* films only
    test_maps[lesion, 3:6, 3:6] += 0.5
    # the reference's men happen to look diseased (e.g. the sex difference in this reference is large)
    ref_maps[ref_meta[:, ENCODER.names.index("sex_M")] == 1, 3:6, 3:6] += 0.5
    every = NormativeMap(units="detector").fit(ref_maps, ref_meta).score(test_maps, test_meta)
    view = NormativeMap(units="detector", covariates=("view",)).fit(ref_maps, ref_meta).score(test_maps, test_meta)
    assert auroc(lesion.astype(int), view) > 0.8
    assert auroc(lesion.astype(int), view) > auroc(lesion.astype(int), every) + 0.15


def test_a_reference_too_small_for_a_covariate_drops_it_and_says_so() -> None:
    rows = [(50.0, "M", "PA")] * 30 + [(60.0, "F", "PA")] * 30 + [(70.0, "F", "AP")] * 4
    metadata = ENCODER.encode_many(rows).numpy()
    assert supported_covariates(metadata, ["view", "sex", "age"], min_films=10) == (("sex", "age"), {"view": 4})
    model = NormativeMap(min_reference_films=10).fit(np.ones((len(rows), 4, 4)), metadata)
    assert model.covariates_used == ("sex", "age") and model.covariates_dropped == {"view": 4}


def test_used_covariates_reports_what_the_reference_supports(caplog: pytest.LogCaptureFixture) -> None:
    samples = pd.DataFrame(
        {
            "split": ["val"] * 12 + ["test"],
            "label": [0] * 12 + [0],
            "patient_id": [f"p{i}" for i in range(13)],
            "age": [40.0 + i for i in range(13)],
            "sex": ["M", "F"] * 6 + ["M"],
            "view": ["PA"] * 10 + ["AP"] * 2 + ["AP"],
        }
    )
    conditioning = {
        "name": "normative",
        "covariates": ["view", "sex"],
        "min_reference_films": 2,
        "reference_fraction": 0.5,
    }
    roles = assign_val_roles(samples, conditioning, seed=0)
    report = used_covariates(conditioning, roles)
    n_ap = int(((roles["val_role"] == "reference") & (roles["view"] == "AP")).sum())
    assert report["covariates"] == ["view", "sex"]
    assert ("view" in report["covariates_used"]) == (n_ap >= 2)
    if n_ap < 2:
        assert report["covariates_dropped"] == {"view": n_ap} and "dropped covariate(s) view" in caplog.text


def test_film_reads_only_its_covariates_columns() -> None:
    features = torch.randn(64, 3, 2, 2)
    rows = [(20.0 + i, "MF"[i % 2], ("PA", "AP")[(i // 2) % 2]) for i in range(64)]
    metadata = ENCODER.encode_many(rows)
    features[metadata[:, ENCODER.names.index("view_AP")] == 1] += 2.0  # a view effect
    film = NormativeFiLM(metadata_dim=3, prior_count=0.0, columns=covariate_columns(["view"]))
    film.fit(features, metadata)
    out = film(features, metadata)
    ap = metadata[:, ENCODER.names.index("view_AP")] == 1
    assert abs(float(out[ap].mean() - out[~ap].mean())) < 0.05  # the view effect is gone
    scrambled = metadata.clone()
    scrambled[:, :5] = torch.rand(64, 5)  # age and sex columns: not read
    assert torch.allclose(film(features, scrambled), out)


def test_stratified_groups_follow_the_covariates() -> None:
    assert levels_for(("view",)) == (("view",),)
    assert levels_for(()) == ()
    frame = pd.DataFrame({"view": ["PA"] * 20 + ["AP"] * 20, "sex": ["M", "F"] * 20, "age": 50.0})
    scores = pd.Series(np.r_[np.arange(20.0), np.arange(20.0) + 100])
    by_view = GroupCalibration(min_group_size=5, levels=levels_for(("view",))).fit(scores, frame)
    by_nothing = GroupCalibration(min_group_size=5, levels=levels_for(())).fit(scores, frame)
    assert (
        by_view.transform(scores, frame)
        .iloc[:20]
        .equals(by_view.transform(scores, frame).iloc[20:].set_axis(range(20)))
    )
    assert by_nothing.transform(scores, frame).is_monotonic_increasing  # one scale for all: the ranking stays


def test_a_training_reference_moves_whole_training_patients_out_of_the_fit() -> None:
    rng = np.random.default_rng(0)
    patients = [f"p{i}" for i in range(40) for _ in range(3)]
    samples = pd.DataFrame(
        {
            "patient_id": patients,
            "split": ["train"] * 90 + ["val"] * 15 + ["test"] * 15,
            "label": [0] * 90 + list(rng.integers(0, 2, 30)),
            "view": "PA",
            "sex": "M",
            "age": 50.0,
        }
    )
    conditioning = {"name": "normative", "reference_source": "train", "reference_fraction": 0.3}
    roles = assign_val_roles(samples, conditioning, seed=0)
    reference = roles["val_role"] == "reference"
    assert 0.25 * 90 <= reference.sum() <= 0.35 * 90 + 3
    assert (samples.loc[reference, "split"] == "train").all() and (roles.loc[reference, "split"] == "val").all()
    train_patients = set(roles.loc[roles["split"] == "train", "patient_id"])
    assert not train_patients & set(roles.loc[reference, "patient_id"])  # a patient is fitted on or reference
    normal_val = (samples["split"] == "val") & (samples["label"] == 0)
    assert (roles.loc[normal_val, "val_role"] == "calibration").all()  # every normal val film sets the threshold
    with pytest.raises(ValueError, match="reference_source=elsewhere is unknown"):
        assign_val_roles(samples, {**conditioning, "reference_source": "elsewhere"}, seed=0)
