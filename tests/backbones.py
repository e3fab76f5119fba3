"""The real backbone configs (``conf/backbone/<name>.yaml``) as the ``BackboneConfig`` a model builder takes."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from cxrad.backbone import BackboneConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def backbone_config(name: str, *, pretrained: bool = False, **layers: list[str]) -> BackboneConfig:
    """``conf/backbone/<name>.yaml`` (random weights unless ``pretrained``), with ``layers`` entries replaced."""
    fields = OmegaConf.to_container(OmegaConf.load(CONF / "backbone" / f"{name}.yaml"))
    fields["layers"].update(layers)
    return BackboneConfig(**{**fields, "pretrained": pretrained})
