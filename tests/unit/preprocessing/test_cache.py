"""The preprocessing cache: same items as without it, reused while nothing changes, invalidated when it does."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import cxrad.data.dataset as dataset_module
from cxrad.data.dataset import CxrDataset
from cxrad.data.metadata import normalise_metadata
from cxrad.data.nih import nih_table
from cxrad.data.table import complete_columns
from cxrad.preprocessing import CachedFilm, PreprocessCache, PreprocessConfig, read_grayscale
from cxrad.preprocessing.cache import config_hash

CONFIGS = {
    "default": PreprocessConfig(image_size=256, center_crop=0.95),
    "none": PreprocessConfig(image_size=256, clahe=False),
    "odd_crop": PreprocessConfig(image_size=96, center_crop=0.7, clip_limit=3.0, tile_grid_size=4),
}


@pytest.fixture(scope="module")
def nih(shared_data: Path) -> pd.DataFrame:
    """The 17 full-resolution NIH films (two at 512 px), with their lesion boxes, as a sample table."""
    frame, _ = nih_table(shared_data / "nih_sample")
    return normalise_metadata(complete_columns(frame, "nih_sample"))


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths the dataset decodes, in order."""
    calls: list[str] = []

    def counting(path: str | Path) -> np.ndarray:
        calls.append(str(path))
        return read_grayscale(path)

    monkeypatch.setattr(dataset_module, "read_grayscale", counting)
    return calls


def cached(config: PreprocessConfig, root: Path) -> PreprocessConfig:
    return PreprocessConfig(**{**vars(config), "cache": True, "cache_dir": str(root)})


def items(dataset: CxrDataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(item.image, item.gt_mask) for item in (dataset[i] for i in range(len(dataset)))]


def assert_same_items(got: list, want: list) -> None:
    for (image, mask), (want_image, want_mask) in zip(got, want, strict=True):
        assert torch.equal(image, want_image)
        assert torch.equal(mask, want_mask)


def with_mask_file(table: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    """Give the first film a hand-drawn mask file at another resolution than the film (resized by lesion_mask)."""
    mask = np.zeros((700, 650), np.uint8)
    cv2.ellipse(mask, (300, 420), (90, 40), 30, 0, 360, 255, thickness=-1)
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    table = table.copy()
    table.loc[table.index[0], "mask_path"] = str(tmp_path / "mask.png")
    return table


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_items_equal_uncached_items_on_real_films(nih: pd.DataFrame, tmp_path: Path, name: str) -> None:
    films = nih if name == "default" else nih.iloc[[0, 3, 8, 13, 16]]  # 512 px, boxes, RGBA, 512 px
    table = with_mask_file(films, tmp_path)
    want = items(CxrDataset(table, CONFIGS[name]))
    dataset = CxrDataset(table, cached(CONFIGS[name], tmp_path / "cache"))
    cold, warm = items(dataset), items(dataset)
    assert_same_items(cold, want)
    assert_same_items(warm, want)
    with_lesion = (table.boxes != "") | (table.mask_path != "")
    assert sum(bool(mask.any()) for _, mask in warm) == with_lesion.sum() >= 4  # masks were really compared


def test_second_pass_reads_every_film_from_the_cache(nih: pd.DataFrame, tmp_path: Path, decodes: list) -> None:
    config = cached(CONFIGS["default"], tmp_path)
    items(CxrDataset(nih, config))
    assert len(decodes) == len(nih)
    items(CxrDataset(nih, config))  # a new dataset, as in the next run of a sweep
    assert len(decodes) == len(nih)
    assert len(list(tmp_path.rglob("*.npz"))) == len(nih)


@pytest.mark.parametrize("change", [{"image_size": 128}, {"clip_limit": 3.0}, {"clahe": False}, {"center_crop": 0.8}])
def test_a_changed_setting_uses_its_own_entries(nih: pd.DataFrame, tmp_path: Path, decodes: list, change: dict) -> None:
    films = nih.iloc[:3]
    before = cached(CONFIGS["default"], tmp_path)
    after = PreprocessConfig(**{**vars(before), **change})
    items(CxrDataset(films, before))
    got = items(CxrDataset(films, after))
    assert len(decodes) == 2 * len(films)
    assert_same_items(got, items(CxrDataset(films, PreprocessConfig(**{**vars(after), "cache": False}))))
    assert config_hash(before) != config_hash(after)


def test_where_and_whether_to_cache_do_not_split_the_cache() -> None:
    assert config_hash(CONFIGS["default"]) == config_hash(cached(CONFIGS["default"], Path("/elsewhere")))


def test_a_rewritten_film_is_preprocessed_again(nih: pd.DataFrame, tmp_path: Path, decodes: list) -> None:
    first, second = nih.iloc[1], nih.iloc[-1]
    film = tmp_path / "film.png"
    shutil.copyfile(first.image_path, film)
    table = pd.DataFrame([first]).assign(image_path=str(film))
    config = cached(CONFIGS["default"], tmp_path / "cache")
    old = items(CxrDataset(table, config))

    shutil.copyfile(second.image_path, film)
    stamp = os.stat(film).st_mtime_ns
    os.utime(film, ns=(stamp, stamp + 10**9))  # a coarse-clock filesystem could keep the mtime: make sure
    new = items(CxrDataset(table, config))

    assert len(decodes) == 2
    assert_same_items(new, items(CxrDataset(table, CONFIGS["default"])))
    assert not torch.equal(new[0][0], old[0][0])


def test_a_touched_film_is_not_served_from_its_old_entry(nih: pd.DataFrame, tmp_path: Path, decodes: list) -> None:
    film = tmp_path / "film.png"
    shutil.copyfile(nih.iloc[0].image_path, film)
    table = pd.DataFrame([nih.iloc[0]]).assign(image_path=str(film))
    config = cached(CONFIGS["default"], tmp_path / "cache")
    items(CxrDataset(table, config))
    stamp = os.stat(film).st_mtime_ns
    os.utime(film, ns=(stamp, stamp + 1))
    items(CxrDataset(table, config))
    assert len(decodes) == 2


@pytest.mark.parametrize("problem", ["corrupt", "missing"])
def test_a_film_that_fails_to_decode_is_skipped_and_not_cached(tmp_path: Path, nih: pd.DataFrame, problem: str) -> None:
    bad = tmp_path / "bad.png"
    if problem == "corrupt":
        bad.write_bytes(b"not a png")
    table = pd.DataFrame([nih.iloc[0]]).assign(image_path=str(bad))
    dataset = CxrDataset(table, cached(CONFIGS["default"], tmp_path / "cache"), skip_log=tmp_path / "skips.csv")
    assert dataset[0] is None
    assert "decode_failed" in (tmp_path / "skips.csv").read_text()
    assert not list((tmp_path / "cache").rglob("*.npz"))


def write_films(cache: PreprocessCache, key: str, count: int) -> Callable[[int], None]:
    def write(seed: int) -> None:
        cache.put(key, CachedFilm(np.full((64, 64), seed % count, np.uint8), (512, 512)))

    return write


def test_concurrent_writes_leave_one_whole_entry_and_no_temporary_file(tmp_path: Path) -> None:
    cache = PreprocessCache(tmp_path, CONFIGS["default"])
    key = cache.key(__file__)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write_films(cache, key, 4), range(64)))
    film = cache.get(key)
    assert film.source_shape == (512, 512) and len(np.unique(film.image)) == 1
    assert not [path for path in tmp_path.rglob("*") if path.name.endswith(".tmp")]


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = PreprocessCache(tmp_path, CONFIGS["default"])
    key = cache.key(__file__)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space"):
        cache.put(key, CachedFilm(np.zeros((64, 64), np.uint8), (512, 512)))
    assert cache.get(key) is None
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == ["config.json"]


def test_a_broken_entry_is_rebuilt(nih: pd.DataFrame, tmp_path: Path, decodes: list) -> None:
    table = nih.iloc[:1]
    config = cached(CONFIGS["default"], tmp_path)
    want = items(CxrDataset(table, config))
    (entry,) = tmp_path.rglob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])  # as a machine crash might leave it
    assert_same_items(items(CxrDataset(table, config)), want)
    assert len(decodes) == 2
    assert_same_items(items(CxrDataset(table, config)), want)
    assert len(decodes) == 2


def test_cache_without_a_folder_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"preprocessing.cache_dir=None.*preprocessing.cache=false"):
        PreprocessConfig(cache=True)


def test_an_unwritable_cache_folder_names_the_fix(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="preprocessing.cache=false"):
        PreprocessCache(tmp_path / "file" / "cache", CONFIGS["default"])
