import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cxrad.metadata_conditioning import normative_map_collector
from cxrad.metadata_conditioning.options import calibrates_scores
from cxrad.model.common import build_normative_film
from tests.integration.conftest import CONF


@pytest.mark.parametrize(
    ("option", "features", "maps", "calibrated"),
    [
        ("none", False, False, False),
        ("stratified", False, False, True),
        ("film", True, False, False),
        ("normative", False, True, False),
        ("film_normative", True, True, False),
        ("film_stratified", True, False, True),
    ],
)
def test_each_option_conditions_the_parts_it_names(option: str, features: bool, maps: bool, calibrated: bool) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=[f"metadata_conditioning={option}"])
    conditioning = OmegaConf.to_container(cfg.metadata_conditioning, resolve=True)
    assert (build_normative_film(conditioning) is not None) is features
    assert (normative_map_collector(conditioning) is not None) is maps
    assert calibrates_scores(conditioning) is calibrated
