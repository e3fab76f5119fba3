"""Test-wide settings: everything offline and on the CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test may reach the network: the hub fails at once instead of retrying for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CXRAD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real NIH samples shipped beside the repository (see ../shared/data/README.md)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared NIH samples not found at {SHARED_DATA}; set CXRAD_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic-film cache for the whole session, so each phantom set is generated once."""
    return tmp_path_factory.mktemp("cxrad-cache")
