"""Load a finished run directory back: its config, trained detector, preprocessing and threshold.

Shared by ``python -m cxrad.heatmap`` and ``python -m cxrad.predict``. A run directory holds
``.hydra/config.yaml``, ``metrics.json`` and anomalib's checkpoint at
``<run_dir>/<ModelClass>/v<N>/weights/lightning/model.ckpt``.

Example:
    >>> cfg, model, preprocess, threshold = load_trained_run("outputs/runs/2026-01-01_patchcore")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from anomalib import PrecisionType
from anomalib.models import AnomalibModule
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from cxrad.metadata_conditioning.apply import rescore_new_films
from cxrad.model.checkpoint import find_checkpoint, load_weights, read_checkpoint
from cxrad.model.factory import build_detector
from cxrad.model.registry import model_spec
from cxrad.preprocessing import PreprocessConfig
from cxrad.threshold import Threshold

# Plain enums anomalib stores in checkpoint hyperparameters; safe to allow under ``weights_only=True``.
SAFE_GLOBALS = [PrecisionType]


class TrainedRun(NamedTuple):
    """What a run left behind, ready to score new films (unpacks as ``cfg, model, preprocess, threshold``)."""

    cfg: DictConfig
    model: AnomalibModule
    preprocess: PreprocessConfig
    threshold: Threshold


def load_trained_run(run_dir: str | Path) -> TrainedRun:
    """Rebuild the run's detector from its config and load its Lightning checkpoint (``weights_only=True``).

    Backbone weights come from the checkpoint, so the detector is built with ``backbone.pretrained=false``
    (no hub access). The model is returned in eval mode on the CPU.

    Raises:
        FileNotFoundError: naming the missing file (config, metrics or checkpoint) and what writes it.
    """
    run_dir = Path(run_dir).expanduser().resolve()
    cfg = load_run_config(run_dir)
    spec = model_spec(cfg.model.name)
    if spec.fit is not None and spec.load is None:
        msg = (
            f"{run_dir} is a model={cfg.model.name} run, which cxrad.predict cannot reload (the model fits itself "
            "and registers no load); rerun python -m cxrad.run with the new films in the data config"
        )
        raise ValueError(msg)
    threshold = load_threshold(run_dir)  # first: a run without metrics.json did not finish
    preprocess = PreprocessConfig(**cfg.preprocessing)
    weights_log = logging.getLogger("cxrad.backbone.weights")
    level = weights_log.level
    weights_log.setLevel(logging.ERROR)  # "RANDOM weights" is true only until the checkpoint is loaded
    try:
        if spec.load is not None:  # a model with its own fit (the ensemble) rebuilds its own parts
            model = spec.load(cfg, run_dir)
        else:
            model = build_detector(cfg, preprocess.image_size)
            load_checkpoint(model, run_dir)
    finally:
        weights_log.setLevel(level)
    model.eval()
    return TrainedRun(cfg, model, preprocess, threshold)


def load_run_config(run_dir: Path) -> DictConfig:
    """``.hydra/config.yaml`` with the output dir pinned to ``run_dir`` and pretrained loading switched off."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        msg = f"{path} does not exist: {run_dir} is not a cxrad run directory (python -m cxrad.run writes one)"
        raise FileNotFoundError(msg)
    cfg = OmegaConf.load(path)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)  # was ${hydra:runtime.output_dir}, unresolvable outside Hydra
        cfg.backbone.pretrained = False  # the checkpoint holds the backbone weights
    return cfg


def load_checkpoint(model: nn.Module, run_dir: Path) -> None:
    """Load the run's newest checkpoint into ``model`` (``weights_only=True``; :mod:`cxrad.model.checkpoint`).

    Checkpoints written before cxrad stripped anomalib's ``PrecisionType`` enum from the hyperparameters
    still load: that plain enum is allowed explicitly.
    """
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        checkpoint = read_checkpoint(find_checkpoint(run_dir))
    load_weights(model, checkpoint)


def load_threshold(run_dir: Path) -> Threshold:
    """The run's fitted threshold, read back from ``metrics.json``."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        msg = f"{path} does not exist: the run did not finish; rerun it (python -m cxrad.run)"
        raise FileNotFoundError(msg)
    metrics = json.loads(path.read_text())
    groups = metrics.get("threshold_groups") or {}
    return Threshold(
        value=float(metrics["threshold"]),
        method=str(metrics["threshold_method"]),
        is_oracle=bool(metrics.get("threshold_is_oracle", False)),
        params=dict(metrics.get("threshold_params") or {}),
        group_by=tuple(groups.get("by") or ()),
        group_values={str(k): float(v) for k, v in (groups.get("values") or {}).items()},
    )


def to_threshold_units(
    run_dir: str | Path,
    cfg: DictConfig,
    raw: pd.Series,
    frame: pd.DataFrame,
    anomaly_maps: torch.Tensor | None = None,
    metadata: np.ndarray | torch.Tensor | None = None,
) -> pd.Series:
    """Raw scores of new films in the units the run's threshold was fitted in.

    Identity when the conditioning is inside the model (``none``, ``film``); for ``stratified`` and
    ``film_stratified`` the score calibration is refitted, exactly as in the run, from the normal validation scores
    in ``val_scores.csv``; for ``normative`` and ``film_normative`` the map regressions are refitted from the run's
    ``normative_reference.npz`` and applied to the films' anomaly maps.

    Args:
        run_dir: The run directory.
        cfg: Its config (:func:`load_run_config`).
        raw: Raw detector scores, indexed like ``frame``.
        frame: The films' ``age``, ``sex`` and ``view``.
        anomaly_maps: The films' anomaly maps, in ``raw``'s order (normative options only).
        metadata: Their encoded metadata as the model received it (the batch's ``metadata``; normative only).
    """
    if isinstance(metadata, torch.Tensor):
        metadata = metadata.detach().cpu().numpy()
    return rescore_new_films(Path(run_dir), cfg.metadata_conditioning, raw, frame, anomaly_maps, metadata)
