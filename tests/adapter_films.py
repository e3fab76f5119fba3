"""Helpers of the dataset adapter tests: distinct tiny films and the tiny pipeline over a composed data config."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir

from cxrad.data.dataset import CxrDataset
from cxrad.data.metadata import MetadataEncoder
from cxrad.data.samples import load_samples
from cxrad.preprocessing import PreprocessConfig
from tests.integration.conftest import CONF

IMAGE_SIZE = 32


def write_film(path: Path, seed: int, side: int = 48) -> Path:
    """A small grey film whose bytes differ for every seed (the pre-flight scan drops duplicate files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)
    if not cv2.imwrite(str(path), pixels):
        msg = f"could not write {path}"
        raise OSError(msg)
    return path


def load_pipeline(dataset: str, root: Path, *overrides: str) -> tuple[pd.DataFrame, dict, CxrDataset]:
    """``conf/data/<dataset>.yaml`` on ``root`` through ``load_samples``, and the test split's dataset."""
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=[f"data={dataset}", f"data.source.root={root}", *overrides])
    samples, report, _ = load_samples(cfg.data, seed=0, image_size=IMAGE_SIZE)
    preprocess = PreprocessConfig(image_size=IMAGE_SIZE, cache=False)
    test = CxrDataset(samples[samples.split == "test"], preprocess, encoder=MetadataEncoder.for_table(samples))
    return samples, report, test
