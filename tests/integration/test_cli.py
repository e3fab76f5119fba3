"""The command line exactly as users type it (Hydra multirun in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import TINY


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
    assert [p.name for p in jobs] == [
        "0_patchcore_resnet18",
        "1_patchcore_efficientnet_b0",
        "2_padim_resnet18",
        "3_padim_efficientnet_b0",
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
