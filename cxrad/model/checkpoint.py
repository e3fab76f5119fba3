"""Checkpoints: written loadable with ``weights_only=True``, found in a run directory, loaded, resumed.

anomalib's Engine saves ``<run_dir>/<Model>/v<N>/weights/lightning/model.ckpt`` at the end of every training
epoch (after memory-bank models have fitted their bank). Resuming a run from it:

- a finished fit (memory bank fitted, or the last epoch saved) loads the weights and is not repeated;
- an unfinished one (FastFlow/DRAEM stopped mid-training) continues from its last epoch (Lightning restores
  the optimiser and loop state).

Checkpoints are only ever read with ``torch.load(..., weights_only=True)``: nothing in them is unpickled as an
arbitrary object, so a checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

import enum
import json
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from anomalib.engine import Engine
from anomalib.models import AnomalibModule
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader

CHECKPOINT_PATTERN = "*/v*/weights/lightning/model.ckpt"


class WeightsOnlyCheckpoint(Callback):
    """Make saved hyperparameters plain Python (anomalib stores e.g. a ``PrecisionType`` enum in them).

    Without this, ``torch.load(ckpt, weights_only=True)`` refuses anomalib's PatchCore checkpoints.
    """

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        del trainer, pl_module
        if "hyper_parameters" in checkpoint:
            checkpoint["hyper_parameters"] = plain(checkpoint["hyper_parameters"])


def plain(value: object) -> object:
    """``value`` with enums as their values, paths as strings and containers as dicts/lists, recursively.

    Example:
        >>> plain({"precision": enum.Enum("P", {"F32": "float32"}).F32, "layers": ("layer2",)})
        {'precision': 'float32', 'layers': ['layer2']}
    """
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool | torch.Tensor):
        return value
    return str(value)


def find_checkpoint(run_dir: Path) -> Path:
    """The newest ``model.ckpt`` an anomalib Engine wrote below ``run_dir``.

    A run resumed from another (``resume_from``) trained nothing itself: its ``metrics.json`` names the
    checkpoint it reused (``resumed_from``), which is returned instead.

    Raises:
        FileNotFoundError: naming the directory and what a checkpoint's path looks like.
    """
    found = sorted(run_dir.glob(CHECKPOINT_PATTERN), key=lambda path: path.stat().st_mtime)
    reused = _reused_checkpoint(run_dir)
    if not found and reused is not None:
        return reused
    if not found:
        msg = (
            f"no checkpoint in {run_dir} (expected {run_dir}/<Model>/v*/weights/lightning/model.ckpt): the run "
            "stopped before its first training epoch ended, or this is not a cxrad run directory; start it again"
        )
        raise FileNotFoundError(msg)
    return found[-1]


def _reused_checkpoint(run_dir: Path) -> Path | None:
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        return None
    reused = json.loads(metrics_path.read_text()).get("resumed_from")
    return Path(reused) if reused and Path(reused).is_file() else None


def read_checkpoint(path: Path) -> dict:
    """``torch.load`` with ``weights_only=True`` on the CPU.

    Raises:
        ValueError: when the file holds anything but tensors and plain containers (refused, never unpickled).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        msg = f"{path} holds objects other than weights; refusing to unpickle it (weights_only=True): {error}"
        raise ValueError(msg) from error


def load_weights(model: torch.nn.Module, checkpoint: dict) -> None:
    """Load a checkpoint's ``state_dict`` into a freshly built model of the same configuration.

    Buffers that start empty (PatchCore's memory bank, PaDiM's Gaussian, FiLM's statistics) take the saved
    shapes first, so a fitted model loads into an unfitted one.

    Raises:
        ValueError: when the checkpoint was made with another model/backbone/conditioning configuration.
    """
    state = checkpoint["state_dict"]
    for name, buffer in list(model.named_buffers()):
        saved = state.get(name)
        if saved is not None and buffer.numel() == 0 and saved.shape != buffer.shape:
            owner, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(owner), attribute, torch.empty_like(saved, device=buffer.device))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        msg = f"the checkpoint does not fit the configured model; use the run's own config ({str(error)[:400]})"
        raise ValueError(msg) from error


@dataclass(frozen=True)
class Resume:
    """Where a resumed run takes its fitted model from."""

    run_dir: Path
    checkpoint: Path
    max_epochs: int


def prepare_resume(resume_from: str | None, out_dir: Path, max_epochs: int) -> Resume | None:
    """Refuse to overwrite a finished run in ``out_dir``; find ``resume_from``'s checkpoint (None: fresh run).

    Raises:
        FileExistsError: when ``out_dir`` already holds ``metrics.json``.
        FileNotFoundError: when ``resume_from`` is not a directory or holds no checkpoint.
    """
    if (out_dir / "metrics.json").exists():
        msg = (
            f"{out_dir} already holds a finished run (metrics.json) and cxrad never overwrites results: choose a "
            f"new hydra.run.dir (the default is timestamped); to reuse its model pass resume_from={out_dir}"
        )
        raise FileExistsError(msg)
    if not resume_from:
        return None
    run_dir = Path(resume_from).expanduser()
    if not run_dir.is_dir():
        msg = f"resume_from={resume_from} is not a directory; pass the run directory of the interrupted run"
        raise FileNotFoundError(msg)
    return Resume(run_dir=run_dir, checkpoint=find_checkpoint(run_dir), max_epochs=max_epochs)


def fit_or_resume(
    engine: Engine, model: AnomalibModule, train_loader: DataLoader, resume: Resume | None, samples: pd.DataFrame
) -> dict[str, object]:
    """Fit ``model``, or take the fit from an earlier run; return ``fit_seconds`` and ``resumed_from``."""
    start = time.perf_counter()
    if resume is None:
        engine.fit(model=model, train_dataloaders=train_loader)
        return {"fit_seconds": time.perf_counter() - start, "resumed_from": None}
    check_same_training_films(resume.run_dir, samples)
    checkpoint = read_checkpoint(resume.checkpoint)
    if fit_finished(checkpoint, resume.max_epochs):
        load_weights(model, checkpoint)
    else:
        engine.fit(model=model, train_dataloaders=train_loader, ckpt_path=resume.checkpoint)
    return {"fit_seconds": time.perf_counter() - start, "resumed_from": str(resume.checkpoint)}


def fit_finished(checkpoint: dict, max_epochs: int) -> bool:
    """True when the memory bank was fitted or the last training epoch was saved."""
    fitted = checkpoint["state_dict"].get("_is_fitted")
    if fitted is not None:
        return bool(fitted.all())
    return int(checkpoint.get("epoch", -1)) + 1 >= max_epochs


def check_same_training_films(run_dir: Path, samples: pd.DataFrame) -> None:
    """Raise ``ValueError`` unless ``run_dir`` was trained on exactly this run's training films."""
    earlier_path = run_dir / "samples.csv"
    if not earlier_path.is_file():
        msg = f"resume_from={run_dir} has no samples.csv, so its training films are unknown; is it a cxrad run?"
        raise FileNotFoundError(msg)
    earlier = pd.read_csv(earlier_path, usecols=["image_path", "split"])
    before = set(earlier.loc[earlier["split"] == "train", "image_path"])
    now = set(samples.loc[samples["split"] == "train", "image_path"])
    if before != now:
        msg = (
            f"resume_from={run_dir} was trained on other films ({len(before ^ now)} of {len(before | now)} training "
            "films differ); resume with the same data config, data.max_* caps and seed as the interrupted run"
        )
        raise ValueError(msg)
