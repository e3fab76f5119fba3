"""The sweep launchers (conf/hydra/launcher/): composed from the real config, and run for real on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from tests.integration.conftest import CONF, TINY

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def compose_hydra(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True).hydra


def run_sweep(sweep_dir: Path, cache_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m cxrad.run -m ...`` on tiny synthetic data, exactly as a user types it."""
    command = [
        sys.executable,
        "-m",
        "cxrad.run",
        "-m",
        *overrides,
        "backbone=resnet18",
        "backbone.pretrained=false",
        *TINY,
        f"paths.cache_dir={cache_dir}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def job_results(sweep_dir: Path) -> dict[str, tuple[dict, str]]:
    """Each job directory's name -> (metrics.json, its overrides.yaml)."""
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {
        job.name: (json.loads((job / "metrics.json").read_text()), (job / ".hydra" / "overrides.yaml").read_text())
        for job in jobs
    }


def test_local_parallel_is_joblib_with_two_jobs() -> None:
    launcher_cfg = compose_hydra("hydra/launcher=local_parallel").launcher
    assert launcher_cfg._target_ == JOBLIB
    assert instantiate(launcher_cfg).joblib["n_jobs"] == 2
    assert compose_hydra("hydra/launcher=local_parallel", "hydra.launcher.n_jobs=4").launcher.n_jobs == 4


def test_slurm_is_submitit_with_one_gpu_and_threads_matching_its_cpus() -> None:
    hydra_cfg = compose_hydra("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.cpus_per_task=6")
    assert hydra_cfg.launcher._target_ == SLURM
    params = instantiate(hydra_cfg.launcher).params  # what the launcher hands to submitit, interpolations resolved
    assert (params["partition"], params["gpus_per_node"], params["tasks_per_node"]) == ("gpu", 1, 1)
    assert (params["timeout_min"], params["mem_gb"], params["array_parallelism"]) == (240, 32, 16)
    assert params["setup"] == ["export OMP_NUM_THREADS=6"]


def test_launchers_leave_the_default_run_on_hydras_basic_launcher() -> None:
    assert compose_hydra().runtime.choices["hydra/launcher"] == "basic"


def test_local_parallel_sweep_runs_each_job_in_a_joblib_worker(tmp_path: Path, cache_dir: Path) -> None:
    result = run_sweep(tmp_path, cache_dir, "hydra/launcher=local_parallel", "model=patchcore,padim")
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    jobs = job_results(tmp_path)
    assert list(jobs) == ["0_patchcore_resnet18_none", "1_padim_resnet18_none"]
    assert [metrics["model"] for metrics, _ in jobs.values()] == ["patchcore", "padim"]
    assert "model=patchcore" in jobs["0_patchcore_resnet18_none"][1]
    assert "model=padim" in jobs["1_padim_resnet18_none"][1]


@pytest.mark.slow
def test_submitit_local_runs_a_job_in_its_own_process(tmp_path: Path, cache_dir: Path) -> None:
    run_sweep(tmp_path, cache_dir, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "model=padim")
    jobs = job_results(tmp_path)
    assert list(jobs) == ["0_padim_resnet18_none"]
    assert 0.0 <= jobs["0_padim_resnet18_none"][0]["image_auroc"] <= 1.0
    assert list((tmp_path / ".submitit").glob("*/*_0_log.out"))  # submitit ran it, not Hydra's basic launcher
