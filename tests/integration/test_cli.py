"""The command line exactly as users type it (Hydra multirun in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import TINY

# Third-party lines a default run used to print; none may reach the user.
NOISE = (
    "FutureWarning",
    "litlogger",
    "Total params",
    "val_dataloader",
    "module(s) in eval mode",
    "LeafSpec",
    "ckpt_path is not provided",
    "will override existing callbacks",
    "GPU available",
    "checking films",
    "Traceback",
)


def test_multirun_model_by_backbone_writes_one_result_per_job(tmp_path: Path, cache_dir: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "cxrad.run",
        "-m",
        "model=patchcore,padim",
        "backbone=resnet18,efficientnet_b0",
        "backbone.pretrained=false",
        *TINY,
        f"paths.cache_dir={cache_dir}",
        f"hydra.sweep.dir={tmp_path}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == [  # model, backbone and (the default) conditioning
        "0_patchcore_resnet18_none",
        "1_patchcore_efficientnet_b0_none",
        "2_padim_resnet18_none",
        "3_padim_efficientnet_b0_none",
    ]
    combos = set()
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        combos.add((metrics["model"], metrics["backbone"]))
        assert (job / ".hydra" / "config.yaml").is_file()
    assert len(combos) == 4


def test_invalid_combination_exits_before_training_with_the_fix(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "cxrad.run",
        "model=fastflow",
        "backbone=efficientnet_lite0",
        "preprocessing.image_size=80",
        f"hydra.run.dir={tmp_path}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode != 0
    assert "image_size divisible by 32, got 80; try 64" in result.stderr
    assert not (tmp_path / "metrics.json").exists()


def _one_line_exit_2(args: list[str], out: Path) -> str:
    """Run ``cxrad.run args`` into ``out``; it must stop with one stderr line, exit status 2 and no results."""
    command = [sys.executable, "-m", "cxrad.run", *args, f"hydra.run.dir={out}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr[-3000:]  # one line, no traceback
    assert not (out / "metrics.json").exists()
    return result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["data=csv"], "data.source.csv_path is required by this config and not set; pass it, e.g. data.source.csv_"),
        (["model=patchcor"], "model=patchcor is not an option; choose from cflow, csflow, dfm, draem, efficient_ad"),
        (["data.split.val=0.2"], "data.split.val is not a config key (did you mean data.split.val_fraction?)"),
    ],
)
def test_a_config_error_is_one_line_and_exit_status_2(tmp_path: Path, args: list[str], expected: str) -> None:
    assert expected in _one_line_exit_2(args, tmp_path)


def test_a_folder_without_the_nih_table_is_one_line_naming_it(tmp_path: Path) -> None:
    films = tmp_path / "films"
    films.mkdir()
    stderr = _one_line_exit_2(["data=nih", f"data.source.root={films}"], tmp_path / "run")
    assert stderr.startswith(
        f"cxrad: data error: no Data_Entry_2017_v2020.csv or Data_Entry_2017.csv in data.root={films}"
    )


@pytest.mark.slow
def test_one_research_sweep_job_runs_offline_and_quietly(tmp_path: Path, cache_dir: Path) -> None:
    """A research-sweep job with the random-weight ResNet-18, no hub: a short output ending in the summary."""
    command = [
        sys.executable,
        "-m",
        "cxrad.run",
        "-m",
        "experiment=research_sweep",
        "model=padim",
        "backbone=resnet18_random",
        "metadata_conditioning=none",
        "logger=none",
        *TINY,
        "progress_bar=true",  # bars are drawn on a terminal only; this output is a pipe
        f"paths.cache_dir={cache_dir}",
        f"hydra.sweep.dir={tmp_path}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    job = tmp_path / "0_padim_resnet18_random_none"
    assert json.loads((job / "metrics.json").read_text())["backbone"] == "resnet18_random"
    output = result.stdout + result.stderr
    assert [line for line in NOISE if line in output] == []
    assert len(output.splitlines()) < 25, output
    assert result.stdout.rstrip().endswith(f"run directory: {job}")  # the summary comes last
    assert "test image AUROC" in result.stdout
