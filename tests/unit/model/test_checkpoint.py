"""Checkpoint helpers: plain hyperparameters, finding and loading checkpoints, refusing to overwrite runs."""

import enum
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from cxrad.backbone import BackboneConfig
from cxrad.metadata_conditioning import NormativeFiLM
from cxrad.model import build_padim
from cxrad.model.checkpoint import (
    check_same_training_films,
    find_checkpoint,
    fit_finished,
    load_weights,
    plain,
    prepare_resume,
    read_checkpoint,
)


class Precision(str, enum.Enum):
    FLOAT32 = "float32"


class Banked(nn.Module):
    """A memory-bank-like module: buffers that start empty and a FiLM inside."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("memory_bank", torch.empty(0))
        self.film = NormativeFiLM(metadata_dim=2)


def test_plain_hyperparameters_load_with_weights_only(tmp_path: Path) -> None:
    hparams = {"precision": Precision.FLOAT32, "layers": ("layer2",), "root": Path("/x"), "film": None}
    assert plain(hparams) == {"precision": "float32", "layers": ["layer2"], "root": "/x", "film": None}
    torch.save({"hyper_parameters": hparams}, tmp_path / "raw.ckpt")
    with pytest.raises(ValueError, match="refusing to unpickle"):
        read_checkpoint(tmp_path / "raw.ckpt")
    torch.save({"hyper_parameters": plain(hparams)}, tmp_path / "plain.ckpt")
    assert read_checkpoint(tmp_path / "plain.ckpt")["hyper_parameters"]["precision"] == "float32"


def test_fitted_buffers_load_into_an_unfitted_model() -> None:
    fitted = Banked()
    fitted.memory_bank = torch.randn(5, 3)
    fitted.film.fit(torch.randn(6, 3, 2, 2), torch.randn(6, 2))
    fresh = Banked()
    load_weights(fresh, {"state_dict": fitted.state_dict()})
    assert torch.equal(fresh.memory_bank, fitted.memory_bank)
    metadata = torch.randn(4, 2)
    x = torch.randn(4, 3, 2, 2)
    assert torch.equal(fresh.film(x, metadata), fitted.film(x, metadata))


def test_a_fitted_padim_gaussian_loads_into_a_fresh_padim() -> None:
    backbone = BackboneConfig(name="resnet18", timm_name="resnet18", pretrained=False, layers={"padim": ["layer1"]})
    fitted, fresh = (build_padim(backbone, image_size=32, n_features=8) for _ in range(2))
    fitted.model.gaussian.mean = torch.randn(8, 64)
    fitted.model.gaussian.inv_covariance = torch.randn(64, 8, 8)
    load_weights(fresh, {"state_dict": fitted.state_dict()})
    assert torch.equal(fresh.model.gaussian.inv_covariance, fitted.model.gaussian.inv_covariance)
    assert torch.equal(fresh.model.gaussian.mean, fitted.model.gaussian.mean)


def test_a_checkpoint_of_another_model_is_refused_with_the_fix() -> None:
    other = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="use the run's own config"):
        load_weights(Banked(), {"state_dict": other.state_dict()})


def _ckpt(run_dir: Path, model: str = "CxrPatchcore", version: int = 0) -> Path:
    path = run_dir / model / f"v{version}" / "weights" / "lightning" / "model.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {}}, path)
    return path


def test_find_checkpoint_takes_the_newest_or_the_reused_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in .*<Model>/v\*/weights/lightning/model.ckpt"):
        find_checkpoint(tmp_path)
    _ckpt(tmp_path / "a", version=0)
    newest = _ckpt(tmp_path / "a", version=1)
    assert find_checkpoint(tmp_path / "a") == newest
    resumed = tmp_path / "b"
    resumed.mkdir()
    (resumed / "metrics.json").write_text(json.dumps({"resumed_from": str(newest)}))
    assert find_checkpoint(resumed) == newest


def test_a_finished_run_dir_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(FileExistsError, match=rf"{tmp_path} already holds a finished run.*new hydra.run.dir"):
        prepare_resume(None, tmp_path, max_epochs=1)
    with pytest.raises(FileNotFoundError, match="resume_from=/nowhere is not a directory"):
        prepare_resume("/nowhere", tmp_path / "new", max_epochs=1)
    assert prepare_resume(None, tmp_path / "new", max_epochs=1) is None


@pytest.mark.parametrize(
    ("checkpoint", "finished"),
    [
        ({"state_dict": {"_is_fitted": torch.tensor([True])}, "epoch": 0}, True),
        ({"state_dict": {"_is_fitted": torch.tensor([False])}, "epoch": 0}, False),
        ({"state_dict": {}, "epoch": 9}, True),  # the 10th of 10 epochs was saved
        ({"state_dict": {}, "epoch": 4}, False),  # stopped after 5 of 10: training continues
    ],
)
def test_fit_finished(checkpoint: dict, finished: bool) -> None:
    assert fit_finished(checkpoint, max_epochs=10) is finished


def test_resuming_on_other_training_films_is_refused(tmp_path: Path) -> None:
    samples = pd.DataFrame({"image_path": ["/a.png", "/b.png", "/c.png"], "split": ["train", "train", "test"]})
    samples.to_csv(tmp_path / "samples.csv", index=False)
    check_same_training_films(tmp_path, samples)
    moved = samples.assign(split=["train", "test", "train"])
    with pytest.raises(ValueError, match="2 of 3 training films differ.*same data config"):
        check_same_training_films(tmp_path, moved)
