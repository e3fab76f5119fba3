"""ensemble: late fusion of several detectors fitted on the same training films (``model=ensemble``).

Each member (``model.members.<name>``, a full model config) is built and fitted exactly as its own run would fit it,
in ``<run dir>/members/<name>``. The members' native film scores are then put on one scale: each is standardised
by the mean and spread of its scores on the run's normal validation films (so a member reads 0 on a typical normal
film and 1 per normal spread above it), and a film's ensemble score is the mean of those z-scores. Its anomaly map
is the mean of the members' maps moved by the same affine steps, so heatmaps, localization and map conditioning
read the evidence that was scored. The validation normals are the films the threshold and the conditioning
reference already draw from; no abnormal film and no test film is read for the standardisation.

Why write it here: anomalib has no ensemble of heterogeneous detectors, and the fusion rule (standardise on normal
films, average) is a few lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own alias
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.models import AnomalibModule
from lightning.pytorch import seed_everything
from lightning.pytorch.utilities.types import STEP_OUTPUT
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.utils.data import DataLoader

from cxrad.model.checkpoint import fit_or_resume
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING
from cxrad.model.registry import model_spec, register_model

MEMBERS_DIR = "members"


@dataclass(frozen=True)
class Standardiser:
    """One member's normal score location and spread (from the normal validation films)."""

    mean: float
    std: float
    n_films: int

    @classmethod
    def of(cls, normal_scores: np.ndarray, member: str) -> Standardiser:
        """Mean and sample standard deviation; needs two normal films with different scores.

        Raises:
            ValueError: naming the member when the validation normals cannot give a spread.
        """
        scores = np.asarray(normal_scores, dtype=np.float64)
        spread = float(scores.std(ddof=1)) if len(scores) > 1 else 0.0
        if not spread > 0:
            msg = (
                f"ensemble member {member} scored {len(scores)} normal validation films with no spread, so it cannot "
                "be standardised; give data.split.val_fraction more films or drop the member"
            )
            raise ValueError(msg)
        return cls(float(scores.mean()), spread, len(scores))


class CxrEnsemble(AnomalibModule):
    """Scores films with fitted members and averages their standardised scores and maps.

    It is never trained by Lightning: :func:`fit_ensemble` fits the members with their own engines and sets their
    :class:`Standardiser`. Each member's own pre-processing (resize, its backbone's normalisation) is applied to
    the raw batch, so members with and without ImageNet normalisation can be fused.
    """

    def __init__(self) -> None:
        super().__init__(pre_processor=False, **NO_ANOMALIB_POSTPROCESSING)
        self.members = nn.ModuleDict()
        self.standardisers: dict[str, Standardiser] = {}

    def add_member(self, name: str, model: AnomalibModule) -> None:
        self.members[name] = model

    def member_outputs(self, batch: Batch, batch_idx: int = 0) -> dict[str, Batch]:
        """Each member's predictions of ``batch`` (native scores and maps), from its own pre-processed image."""
        outputs = {}
        for name, member in self.members.items():
            image = batch.image
            if member.pre_processor is not None and member.pre_processor.transform is not None:
                image = member.pre_processor.transform(image)
            outputs[name] = member.predict_step(replace(batch, image=image), batch_idx)
        return outputs

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> STEP_OUTPUT:
        del dataloader_idx
        if set(self.standardisers) != set(self.members):
            msg = "the ensemble's members are not standardised yet; fit it with cxrad.model.ensemble.fit_ensemble"
            raise RuntimeError(msg)
        scores, maps = [], []
        for name, out in self.member_outputs(batch, batch_idx).items():
            z = self.standardisers[name]
            scores.append((score_of(out) - z.mean) / z.std)
            if out.anomaly_map is not None:
                amap = out.anomaly_map.float().reshape(len(score_of(out)), 1, *out.anomaly_map.shape[-2:])
                if amap.shape[-2:] != batch.image.shape[-2:]:  # every member's map on the film's grid
                    amap = F.interpolate(amap, size=batch.image.shape[-2:], mode="bilinear", align_corners=False)
                maps.append((amap - z.mean) / z.std)
        score = torch.stack(scores).mean(dim=0)
        # A member without maps (none here yet) would leave the ensemble's map to the others.
        anomaly_map = torch.stack(maps).mean(dim=0) if maps else None
        return batch.update(pred_score=score, anomaly_map=anomaly_map)

    validation_step = predict_step
    test_step = predict_step

    def training_step(self, batch: Batch, *args: object, **kwargs: object) -> STEP_OUTPUT:
        msg = "model=ensemble is fitted member by member (cxrad.model.ensemble.fit_ensemble), not by Engine.fit"
        raise RuntimeError(msg)

    def configure_optimizers(self) -> None:
        """Nothing is trained here."""

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        return {"devices": 1}

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ONE_CLASS


def score_of(out: Batch) -> torch.Tensor:
    """A member's film scores as one float per film."""
    return out.pred_score.detach().reshape(-1).float()


def member_config(cfg: DictConfig, name: str) -> DictConfig:
    """The run config of member ``name``: ``cfg`` with ``model`` = ``cfg.model.members.<name>``.

    The member scores films natively (no ``aggregation``, no map restriction): the film-score aggregation and the
    ROI restriction of the run apply once, to the ensemble's map. The films themselves (ROI cleaning included)
    come from the run's loaders.
    """
    member = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(member):
        member.model = cfg.model.members[name]
        member.pop("aggregation", None)
        member.preprocessing.roi = "none"
    return member


def check_ensemble(cfg: DictConfig) -> None:
    """At least two members, each a registered single model whose own config validates."""
    from cxrad.validate import validate  # the check of one run's config; imported here (validate imports models)

    members = list(cfg.model.get("members") or {})
    if len(members) < 2:
        msg = (
            f"model=ensemble has members {members}; it needs at least two, e.g. +model@model.members.dfm=dfm "
            "(or use that model on its own)"
        )
        raise ValueError(msg)
    for name in members:
        member_name = cfg.model.members[name].get("name")
        if member_name is None or model_spec(member_name).fit is not None:
            msg = (
                f"model.members.{name} must be a single model's config (a conf/model/<name>.yaml other than "
                "ensemble), e.g. +model@model.members.dfm=dfm"
            )
            raise ValueError(msg)
        try:
            validate(member_config(cfg, name))
        except ValueError as error:  # name the member's own keys, as they are set on the command line
            raise type(error)(re.sub(r"\bmodel\.", f"model.members.{name}.", str(error))) from None
    if cfg.get("resume_from"):
        msg = f"resume_from={cfg.resume_from}: model=ensemble fits its members afresh; drop resume_from"
        raise ValueError(msg)


def fit_ensemble(
    cfg: DictConfig, model: CxrEnsemble, loaders: dict[str, DataLoader], samples: pd.DataFrame, out_dir: Path
) -> dict[str, object]:
    """Fit every member (its own engine and run directory), then standardise it on the normal validation films.

    Returns the fit facts of a run: the summed ``fit_seconds`` and, per member, its seconds and its
    standardisation (``ensemble_members``).
    """
    from cxrad.model.factory import build_detector, make_engine  # the factory imports this module's registry
    from cxrad.scoring import predict_scores

    facts: dict[str, dict[str, float]] = {}
    for name in cfg.model.members:
        member_cfg = member_config(cfg, name)
        seed_everything(int(cfg.seed), workers=True, verbose=False)  # each member starts as its own run would
        member = build_detector(member_cfg, int(cfg.preprocessing.image_size))
        engine, collector = make_engine(member_cfg, out_dir / MEMBERS_DIR / name, devices=1)
        fit = fit_or_resume(engine, member, loaders["train"], None, samples)
        model.add_member(name, member)
        val = predict_scores(engine, member, loaders["val"], collector)
        normal = samples.loc[val.score.index, "label"].to_numpy() == 0
        model.standardisers[name] = Standardiser.of(val.score.to_numpy()[normal], name)
        z = model.standardisers[name]
        facts[name] = {
            "fit_seconds": float(fit["fit_seconds"]),
            "normal_mean": z.mean,
            "normal_std": z.std,
            "normal_films": z.n_films,
        }
    model.eval()
    return {
        "fit_seconds": sum(f["fit_seconds"] for f in facts.values()),
        "resumed_from": None,
        "ensemble_members": facts,
    }


@register_model("ensemble", fit=fit_ensemble, validate=check_ensemble)
def build_ensemble(
    backbone: object = None, image_size: int = 0, seed: int = 0, conditioning: dict | None = None
) -> CxrEnsemble:
    """An empty ensemble: :func:`fit_ensemble` builds and fits the members from ``model.members``.

    The arguments are the builders' common call; each member gets them through its own config.
    """
    del backbone, image_size, seed, conditioning
    return CxrEnsemble()
