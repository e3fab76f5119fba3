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
