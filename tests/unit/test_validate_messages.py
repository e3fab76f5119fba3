"""Every config mistake ends in one line that names the key and the fix (cxrad.config_errors, cxrad.validate)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from cxrad.config_errors import ConfigError, check_overrides
from cxrad.threshold.methods import EMPTY_SCORES_MSG
from cxrad.validate import validate

CONF = Path(__file__).resolve().parents[2] / "conf"


def _compose(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _message(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text, f"not one line: {text!r}"
    return text


@pytest.mark.parametrize(
    ("overrides", "key", "example"),
    [
        (["data=csv"], "data.source.csv_path", "data.source.csv_path=/path/to/samples.csv"),
        (["data=nih"], "data.source.root", "data.source.root=/path/to/films"),
        (["data=folder"], "data.source.root", "data.source.root=/path/to/films"),
        (["data=chexpert"], "data.source.root", "data.source.root=/path/to/films"),
        (["data=mimic"], "data.source.root", "data.source.root=/path/to/films"),
        (["data=padchest"], "data.source.root", "data.source.root=/path/to/films"),
    ],
)
def test_an_unset_mandatory_key_is_named_with_an_example(overrides: list[str], key: str, example: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate(_compose(*overrides))
    message = _message(error)
    assert message.startswith(f"{key} is required")
    assert f"e.g. {example}" in message


def test_a_missing_csv_names_data_source_csv_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(ConfigError) as error:
        validate(_compose("data=csv", f"data.source.csv_path={missing}"))
    message = _message(error)
    assert f"data.source.csv_path={missing}: no such file" in message
    assert "data.source.csv_path=/path/to/samples.csv" in message


def test_a_missing_film_folder_names_data_source_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        validate(_compose("data=folder", f"data.source.root={tmp_path / 'films'}"))
    assert f"data.source.root={tmp_path / 'films'}: no such folder" in _message(error)


def test_an_existing_csv_passes_the_path_check(tmp_path: Path) -> None:
    table = tmp_path / "samples.csv"
    table.write_text("image_path,label\n")
    validate(_compose("data=csv", f"data.source.csv_path={table}"))  # the table's content is checked later


def test_an_empty_validation_split_names_the_real_key() -> None:
    with pytest.raises(ConfigError) as error:
        validate(_compose("data.split.val_fraction=0"))
    assert _message(error) == "data.split.val_fraction=0 must be in (0, 1), e.g. 0.15"
    assert "data.split.val_fraction" in EMPTY_SCORES_MSG  # the threshold's own message names the same key
    assert "data.split.val " not in EMPTY_SCORES_MSG


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model=patchcor"], "model=patchcor is not an option; choose from cflow, csflow, dfm, draem, efficient_ad"),
        (["model=patchcore,padm"], "model=padm is not an option"),
        (["backbone=choice(resnet18,resnet81)"], "backbone=resnet81 is not an option"),
        (["metadata_conditioning=film-normative"], "(did you mean film_normative?)"),
        (["threshold=percentil"], "(did you mean percentile?)"),
        (["experiment=research"], "experiment=research is not an option; choose from backbone_sweep, research_sweep"),
    ],
)
def test_an_unknown_option_lists_the_choices(args: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_overrides(args)
    assert expected in _message(error)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["data.split.val=0.2"], "data.split.val is not a config key (did you mean data.split.val_fraction?)"),
        (["progress_bars=false"], "progress_bars is not a config key (did you mean progress_bar?)"),
        (["backbone.pretraind=false"], "(did you mean backbone.pretrained?)"),
        (["data.csv_pth=/x.csv", "data=csv"], "(did you mean data.csv_path?)"),
    ],
)
def test_a_misspelt_key_names_the_key_it_meant(args: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_overrides(args)
    message = _message(error)
    assert expected in message
    assert "prefix + to add a new key" in message


@pytest.mark.parametrize(
    "args",
    [
        ["model=padim", "model.detector.n_features=50"],  # a key only the chosen option has
        ["-m", "model=patchcore,padim", "model.detector.n_features=50"],  # ... or one of the swept options
        ["+extra_note=hello"],  # + adds a key on purpose
        ["backbone=resnet18_random", "hydra.run.dir=/tmp/x", "experiment=research_sweep"],
        # a group placed at a package: the keys it brings can be set on the same line
        ["model=ensemble", "+model@model.members.dfm=dfm", "model.members.dfm.max_epochs=2"],
        [
            "model=ensemble",
            "+backbone@model.members.global_gaussian.backbone=resnet18",
            "model.members.global_gaussian.backbone.pretrained=false",
        ],
    ],
)
def test_valid_command_lines_pass(args: list[str]) -> None:
    check_overrides(args)


def test_the_synthetic_films_take_the_detector_image_size() -> None:
    cfg = _compose("preprocessing.image_size=96")
    assert cfg.data.source.image_size == 96  # one key: the films are generated at the size the detector sees


def test_a_single_model_key_on_the_default_ensemble_names_the_member_key() -> None:
    with pytest.raises(ConfigError) as error:
        check_overrides(["model.detector.num_neighbors=3"])
    assert _message(error) == (
        "model.detector.num_neighbors is not a config key of model=ensemble, which fuses ['patchcore', "
        "'global_gaussian', 'reverse_distillation']; set a member's, e.g. model.members.patchcore.detector."
        "num_neighbors, or choose one detector, e.g. model=patchcore"
    )
