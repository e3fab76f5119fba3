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

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own alias
from anomalib import LearningType
from anomalib.data import Batch, InferenceBatch
from anomalib.models import AnomalibModule
from lightning.pytorch import seed_everything
from lightning.pytorch.utilities.types import STEP_OUTPUT
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.utils.data import DataLoader

from cxrad.config_errors import CONF_DIR
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


class EnsembleModel(nn.Module):
    """The fusion itself: each member's torch model on the image after the member's own pre-processing (its
    resize and its backbone's normalisation: what the member's pre-processor does to a batch in its own run),
    standardised by its :class:`Standardiser`, averaged. It is the ensemble's ``model``, so a run,
    ``cxrad.predict`` and ``cxrad.heatmap`` all score films through this one forward. Members get no metadata:
    FiLM options are refused for ensembles, and map conditioning reads the fused map."""

    def __init__(self) -> None:
        super().__init__()
        self.members = nn.ModuleDict()
        self.standardisers: dict[str, Standardiser] = {}

    def forward(self, image: torch.Tensor) -> InferenceBatch:
        if not self.members or set(self.standardisers) != set(self.members):
            msg = "the ensemble's members are not standardised yet; fit it with cxrad.model.ensemble.fit_ensemble"
            raise RuntimeError(msg)
        scores, maps = [], []
        for name, member in self.members.items():
            transform = member.pre_processor.transform if member.pre_processor else None
            out = member.model(transform(image) if transform is not None else image)
            z = self.standardisers[name]
            scores.append((score_of(out) - z.mean) / z.std)
            if out.anomaly_map is not None:
                amap = out.anomaly_map.float().reshape(len(image), 1, *out.anomaly_map.shape[-2:])
                if amap.shape[-2:] != image.shape[-2:]:  # every member's map on the film's grid
                    amap = F.interpolate(amap, size=image.shape[-2:], mode="bilinear", align_corners=False)
                maps.append((amap - z.mean) / z.std)
        # A member without maps (none here yet) would leave the ensemble's map to the others.
        anomaly_map = torch.stack(maps).mean(dim=0) if maps else None
        return InferenceBatch(pred_score=torch.stack(scores).mean(dim=0), anomaly_map=anomaly_map)


class CxrEnsemble(AnomalibModule):
    """Scores films with fitted members and averages their standardised scores and maps (:class:`EnsembleModel`).

    It is never trained by Lightning: :func:`fit_ensemble` fits the members with their own engines and sets their
    :class:`Standardiser`; :func:`load_ensemble` rebuilds a finished run's from its member checkpoints.
    """

    def __init__(self) -> None:
        super().__init__(pre_processor=False, **NO_ANOMALIB_POSTPROCESSING)
        self.model = EnsembleModel()

    def add_member(self, name: str, member: AnomalibModule, standardiser: Standardiser) -> None:
        self.model.members[name] = member
        self.model.standardisers[name] = standardiser

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> STEP_OUTPUT:
        del batch_idx, dataloader_idx
        out = self.model(batch.image)
        return batch.update(pred_score=out.pred_score, anomaly_map=out.anomaly_map)

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

    A member may bring its own backbone (``+backbone@model.members.<name>.backbone=resnet18_random``, a full
    ``conf/backbone`` config); it replaces the run's ``backbone`` for that member only. The member scores films
    natively (no ``aggregation``, no map restriction): the film-score aggregation and the ROI restriction of the
    run apply once, to the ensemble's map. The films themselves (ROI cleaning included) come from the run's loaders.
    """
    member = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(member):
        member.model = cfg.model.members[name]
        own_backbone = member.model.pop("backbone", None)
        if own_backbone is not None:
            member.backbone = own_backbone
        member.pop("aggregation", None)
        member.preprocessing.roi = "none"
        apply_model_backbone_patch(member)
    return member


def apply_model_backbone_patch(member: DictConfig) -> None:
    """What ``conf/config.yaml``'s ``optional model_backbone: ${model}_${backbone}`` gives the member's own run.

    Hydra applies ``conf/model_backbone/<model>_<backbone>.yaml`` over the model's group config and under the
    command line; for a member (its combination is not the ensemble's) each of the patch's keys is set where the
    member still holds its model config's own value, so a value set on the command line stays (unless it is set
    to that same config value, which cannot be told apart).
    """
    patch_path = CONF_DIR / "model_backbone" / f"{member.model.name}_{member.backbone.name}.yaml"
    if not patch_path.is_file():
        return
    patch = OmegaConf.load(patch_path).get("model") or {}
    group = OmegaConf.load(CONF_DIR / "model" / f"{member.model.name}.yaml")
    flat = dotted_leaves(OmegaConf.to_container(patch))
    for key, value in flat.items():
        if OmegaConf.select(member.model, key) == OmegaConf.select(group, key):
            OmegaConf.update(member.model, key, value, force_add=True)


def dotted_leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    leaves: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            leaves.update(dotted_leaves(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def check_member_backbone(cfg: DictConfig, name: str) -> None:
    """A member's own backbone is a whole ``conf/backbone`` option, on a member that reads a backbone."""
    own = cfg.model.members[name].get("backbone")
    if own is None:
        return
    fix = f"+backbone@model.members.{name}.backbone=<a conf/backbone option>"
    if not isinstance(own, DictConfig) or not {"name", "timm_name", "layers", "mean", "std"} <= set(own):
        msg = f"model.members.{name}.backbone is not a conf/backbone option; set it whole with {fix}"
        raise ValueError(msg)
    if not model_spec(cfg.model.members[name].name).uses_backbone:
        msg = (
            f"model.members.{name}.backbone={own.name}: model={cfg.model.members[name].name} reads no backbone; "
            f"drop the member's backbone"
        )
        raise ValueError(msg)


def check_ensemble(cfg: DictConfig) -> None:
    """At least two members, each a registered single model whose own config validates."""
    from cxrad.validate import validate  # the check of one run's config; imported here (validate imports models)

    extra = sorted(set(cfg.model.detector) - {"_target_", "_partial_"})
    if extra:
        msg = (
            f"model.detector.{extra[0]}: model=ensemble (the default model) has no such setting; set it on a member, "
            f"e.g. model.members.patchcore.detector.{extra[0]}=..., or choose one detector, e.g. model=patchcore"
        )
        raise ValueError(msg)
    if cfg.model.max_epochs != 1:
        msg = (
            f"model.max_epochs={cfg.model.max_epochs}: model=ensemble (the default model) trains nothing itself; set "
            f"a member's, e.g. model.members.reverse_distillation.max_epochs={cfg.model.max_epochs}"
        )
        raise ValueError(msg)
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
        check_member_backbone(cfg, name)
        try:
            validate(member_config(cfg, name))
        except ValueError as error:  # name the member and its own keys, as they are set on the command line
            message = re.sub(r"\bmodel\.", f"model.members.{name}.", str(error))
            if cfg.model.members[name].get("backbone") is not None:  # ... its own backbone's keys too
                message = re.sub(r"(?<![\w./])backbone(?=[.=])", f"model.members.{name}.backbone", message)
            raise type(error)(f"ensemble member {name}: {message}") from None
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

    facts: dict[str, dict[str, float | str]] = {}
    for name in cfg.model.members:
        member_cfg = member_config(cfg, name)
        # Each member starts as its own run would: the same global seed, the training films in the same order.
        seed_everything(int(cfg.seed), workers=True, verbose=False)
        loaders["train"].generator.manual_seed(int(cfg.seed))
        member = build_detector(member_cfg, int(cfg.preprocessing.image_size))
        engine, collector = make_engine(member_cfg, out_dir / MEMBERS_DIR / name, devices=1)
        fit = fit_or_resume(engine, member, loaders["train"], None, samples)
        val = predict_scores(engine, member, loaders["val"], collector)
        normal = samples.loc[val.score.index, "label"].to_numpy() == 0
        z = Standardiser.of(val.score.to_numpy()[normal], name)
        model.add_member(name, member, z)
        facts[name] = {
            "backbone": str(member_cfg.backbone.name) if model_spec(member_cfg.model.name).uses_backbone else "none",
            "fit_seconds": float(fit["fit_seconds"]),
            "normal_mean": z.mean,
            "normal_std": z.std,
            "normal_films": z.n_films,
        }
    model.eval()
    return {
        "fit_seconds": sum(float(f["fit_seconds"]) for f in facts.values()),
        "resumed_from": None,
        "ensemble_members": facts,
    }


def load_ensemble(cfg: DictConfig, run_dir: Path) -> CxrEnsemble:
    """A finished ensemble run's detector: each member from its checkpoint in ``<run_dir>/members/<name>``, its
    standardisation from ``metrics.json`` (``ensemble_members``), as :func:`fit_ensemble` left them.

    Raises:
        FileNotFoundError: naming a member whose checkpoint or standardisation is missing.
    """
    from cxrad.model.factory import build_detector  # the factory imports this module's registry
    from cxrad.trained_run import load_checkpoint

    facts = json.loads((run_dir / "metrics.json").read_text()).get("ensemble_members") or {}
    model = CxrEnsemble()
    for name in cfg.model.members:
        if name not in facts:
            msg = f"{run_dir}/metrics.json has no standardisation of ensemble member {name}; rerun the ensemble"
            raise FileNotFoundError(msg)
        member_cfg = member_config(cfg, name)
        with open_dict(member_cfg):
            member_cfg.backbone.pretrained = False  # the member's checkpoint holds its backbone weights
        member = build_detector(member_cfg, int(cfg.preprocessing.image_size))
        load_checkpoint(member, run_dir / MEMBERS_DIR / name)
        z = facts[name]
        model.add_member(name, member, Standardiser(z["normal_mean"], z["normal_std"], int(z["normal_films"])))
    return model.eval()


@register_model("ensemble", fit=fit_ensemble, load=load_ensemble, validate=check_ensemble)
def build_ensemble(
    backbone: object = None, image_size: int = 0, seed: int = 0, conditioning: dict | None = None
) -> CxrEnsemble:
    """An empty ensemble: :func:`fit_ensemble` builds and fits the members from ``model.members``.

    The arguments are the builders' common call; each member gets them through its own config.
    """
    del backbone, image_size, seed, conditioning
    return CxrEnsemble()
