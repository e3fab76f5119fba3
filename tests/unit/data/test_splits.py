"""Split strategies on real NIH metadata: every path keeps patients in one split and obeys its strategy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrad.data.nih import nih_table, official_splits, read_metadata, select_metadata
from cxrad.data.samples import prepare_samples
from cxrad.data.table import SplitConfig

SPLIT = SplitConfig(val_fraction=0.15, test_fraction=0.25, seed=0)
PATHS = ("plain", "test_findings", "official_lists")
FINDINGS = ["Nodule", "Mass"]


@pytest.fixture(scope="module")
def metadata(shared_data: Path) -> pd.DataFrame:
    """All 112,120 NIH rows as ``read_metadata`` gives them (no images needed: paths are never opened)."""
    raw = read_metadata(shared_data / "nih_metadata" / "Data_Entry_2017_v2020.csv.gz")
    raw["image_path"] = "/nowhere/" + raw["image_name"]
    return raw


@pytest.fixture(scope="module")
def official_root(metadata: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Official-style lists: a patient-wise 80/20 train_val/test split of the metadata."""
    root = tmp_path_factory.mktemp("official")
    patients = np.sort(metadata["patient_id"].unique())
    test_patients = set(np.random.default_rng(7).choice(patients, size=len(patients) // 5, replace=False))
    in_test = metadata["patient_id"].isin(test_patients)
    (root / "test_list.txt").write_text("\n".join(metadata.loc[in_test, "image_name"]))
    (root / "train_val_list.txt").write_text("\n".join(metadata.loc[~in_test, "image_name"]))
    return root


def _source(metadata: pd.DataFrame, path: str, official_root: Path) -> pd.DataFrame:
    """The table ``nih_table`` would build for ``path``, minus the image lookup."""
    frame = select_metadata(metadata, FINDINGS if path == "test_findings" else None)
    if path == "official_lists":
        frame["split"] = official_splits(official_root, frame)
    return frame.drop(columns="image_name")


def _ap_share_of_normals(frame: pd.DataFrame) -> dict[str, float]:
    normals = frame[frame["label"] == 0]
    return (normals.groupby("split")["view"].apply(lambda v: (v == "AP").mean()) * 100).to_dict()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("strategy", ["patient_random", "normal_patients"])
def test_no_patient_is_in_two_splits(metadata: pd.DataFrame, official_root: Path, strategy: str, path: str) -> None:
    source = _source(metadata, path, official_root)
    frame, _ = prepare_samples((source, {}), SplitConfig(0.15, 0.25, seed=0, strategy=strategy))
    assert frame.groupby("patient_id")["split"].nunique().max() == 1
    assert set(frame["split"]) == {"train", "val", "test"}
    assert (frame.loc[frame["split"] == "train", "label"] == 0).all()
    if path == "test_findings":
        abnormal = frame.loc[frame["label"] == 1, "finding_labels"].str.split("|")
        assert abnormal.map(lambda labels: bool(set(FINDINGS) & set(labels))).all()
    if path == "official_lists":
        test_list = set((official_root / "test_list.txt").read_text().split())
        in_test_list = ("/nowhere/" + pd.Series(sorted(test_list))).isin(frame["image_path"])
        assert set(frame.loc[frame["split"] == "test", "image_path"].str.removeprefix("/nowhere/")) <= test_list
        assert in_test_list.sum() == (frame["split"] == "test").sum()


@pytest.mark.parametrize("path", PATHS)
def test_patient_random_normals_come_from_one_population(
    metadata: pd.DataFrame, official_root: Path, path: str
) -> None:
    frame, report = prepare_samples((_source(metadata, path, official_root), {}), SPLIT)
    ap = _ap_share_of_normals(frame)
    assert max(ap.values()) - min(ap.values()) < 2.0, ap  # today's rule: 42.6% AP test vs 16.8% train
    assert report["dropped_train_abnormal"] > 0
    assert (frame.loc[frame["split"] == "val", "label"] == 1).sum() > 0  # val keeps its abnormal films
    normals = frame[frame["label"] == 0]
    n_normal = int((metadata["label"] == 0).sum())
    assert len(normals) == n_normal  # no normal film is dropped
    train_share = (normals["split"] == "train").sum() / n_normal
    if path == "official_lists":
        trainval = normals["split"] != "test"
        expected = (1 - SPLIT.val_fraction) * trainval.mean()
    else:
        expected = 1 - SPLIT.val_fraction - SPLIT.test_fraction
    assert abs(train_share - expected) < 0.01, (train_share, expected)


@pytest.mark.parametrize("path", PATHS)
def test_normal_patients_keeps_every_patient_with_a_finding_out_of_train_and_val(
    metadata: pd.DataFrame, official_root: Path, path: str
) -> None:
    split = SplitConfig(0.15, 0.25, seed=0, strategy="normal_patients")
    frame, report = prepare_samples((_source(metadata, path, official_root), {}), split)
    # Any finding, also one that test_findings filters out (e.g. a patient whose only finding is Effusion).
    sick = set(metadata.loc[metadata["label"] == 1, "patient_id"])
    training = frame[frame["split"].isin(["train", "val"])]
    assert not training["patient_id"].isin(sick).any()
    assert len(training) > 10_000
    if path == "official_lists":
        assert report["dropped_trainval_patients_with_findings"] > 0
    else:
        assert set(frame.loc[frame["patient_id"].isin(sick), "split"]) == {"test"}


def test_test_findings_do_not_move_patients(metadata: pd.DataFrame, official_root: Path) -> None:
    """The split is made on every film, so a finding filter only removes abnormal films, never reshuffles."""
    plain, _ = prepare_samples((_source(metadata, "plain", official_root), {}), SPLIT)
    filtered, report = prepare_samples((_source(metadata, "test_findings", official_root), {}), SPLIT)
    normals = plain[plain["label"] == 0].set_index("image_path")["split"]
    assert filtered[filtered["label"] == 0].set_index("image_path")["split"].equals(normals)
    assert report["dropped_other_findings"] > 0


def test_official_lists_with_a_patient_in_both_fail_naming_him(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "image_path": [f"/x/{i}.png" for i in range(4)],
            "label": [0, 0, 0, 1],
            "age": 50.0,
            "sex": "M",
            "view": "PA",
            "patient_id": ["a", "a", "b", "c"],
            "split": ["trainval", "test", "trainval", "test"],
        }
    )
    with pytest.raises(ValueError, match=r"both the official train/val list and the test list \(e.g. a\)"):
        prepare_samples((frame, {}), SPLIT)


def test_nih64_dev_default_split(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real loader on the 501-film dev set: val holds abnormal films, no patient crosses (seeds 0-2)."""
    source = nih_table(shared_data / "nih64_dev")
    for seed in (0, 1, 2):
        frame, _ = prepare_samples(source, SplitConfig(seed=seed))
        assert frame.groupby("patient_id")["split"].nunique().max() == 1
        assert ((frame["split"] == "val") & (frame["label"] == 1)).sum() > 0
        assert ((frame["split"] == "val") & (frame["label"] == 0)).sum() > 0
        counts = frame.groupby(["split", "label"]).size().to_dict()
        ap = {k: round(v, 1) for k, v in _ap_share_of_normals(frame).items()}
        with capsys.disabled():
            print(f"\nnih64_dev seed {seed}: films {counts}; AP% of normals {ap}")
