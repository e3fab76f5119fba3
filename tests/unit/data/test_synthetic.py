"""Behaviour of the phantom chest X-ray generator: determinism, metadata effects, lesions, masks, cache.

Tests of where the metadata effects and lesions show on the film use the ``simple`` phantom (one narrow
anatomy, careful positioning), where those regions are fixed; ``test_phantom_realism.py`` covers ``realistic``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrad.data.lesions import Lesion
from cxrad.data.phantom import lung_fields, render_film, render_film_detailed, sample_anatomy
from cxrad.data.synthetic import (
    COLUMNS,
    SyntheticConfig,
    config_hash,
    generate,
    load_or_generate,
    plan_films,
    read_samples,
)

TINY = SyntheticConfig(n_normal=3, n_abnormal=4, image_size=64, seed=3)


def _film(
    seed: int,
    view: str = "PA",
    *,
    size: int = 128,
    age: float = 50.0,
    sex: str = "M",
    lesions: list[Lesion] | None = None,
    **effects: float,
) -> np.ndarray:
    cfg = SyntheticConfig(image_size=size, realism="simple", **effects)
    image, _ = render_film(np.random.default_rng(seed), size, age, sex, view, lesions or [], cfg)
    return image


def _central_bright_width(image: np.ndarray) -> float:
    """Mean count of bright pixels per row across the heart band (the cardiac + mediastinal width)."""
    size = image.shape[0]
    band = image[int(0.56 * size) : int(0.68 * size), int(0.15 * size) : int(0.85 * size)].astype(float)
    threshold = (np.percentile(band, 10) + np.percentile(band, 95)) / 2
    return float((band > threshold).sum(axis=1).mean())


def _mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def _lesion_at_lung_centre(kind: str, size_mm: float, cfg: SyntheticConfig, seed: int = 0) -> tuple[Lesion, object]:
    anatomy = sample_anatomy(np.random.default_rng([seed, 99]))  # the simple phantom's narrow anatomy
    lungs = lung_fields(anatomy, 50.0, "M", "PA", cfg.image_size, cfg)
    dist = cv2.distanceTransform((lungs == 1).astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return Lesion(kind, (x + 0.5, y + 0.5), size_mm, "right", seed=seed), anatomy


# --- determinism -------------------------------------------------------------------------------------------


def test_same_config_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    first, second = generate(TINY, tmp_path / "a"), generate(TINY, tmp_path / "b")
    pd.testing.assert_frame_equal(first, read_samples(tmp_path / "a"))  # returned table == CSV round trip
    assert (tmp_path / "a" / "samples.csv").read_text() == (tmp_path / "b" / "samples.csv").read_text()
    for path_a, path_b in zip(first.image_path, second.image_path, strict=True):
        assert Path(path_a).read_bytes() == Path(path_b).read_bytes()
    other = generate(dataclasses.replace(TINY, seed=4), tmp_path / "c")
    assert any(
        not np.array_equal(cv2.imread(a, cv2.IMREAD_GRAYSCALE), cv2.imread(c, cv2.IMREAD_GRAYSCALE))
        for a, c in zip(first.image_path, other.image_path, strict=True)
    )


def test_render_does_not_touch_global_random_state() -> None:
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    _film(0, size=64)
    assert np.random.random() == before


# --- metadata effects --------------------------------------------------------------------------------------


def test_ap_view_widens_heart_and_mediastinum() -> None:
    ratios = []
    for seed in range(6):
        pa, ap = _film(seed, "PA"), _film(seed, "AP")
        assert not np.array_equal(pa, ap)
        ratios.append(_central_bright_width(ap) / _central_bright_width(pa))
    assert min(ratios) > 1.0, ratios
    assert np.mean(ratios) > 1.1, ratios


def _grain(image: np.ndarray) -> float:
    """Std of the high-pass residual over a flat patch of abdomen: the film noise."""
    film = image.astype(np.float32)
    residual = film - cv2.GaussianBlur(film, (0, 0), 2.0)
    size = image.shape[0]
    return float(residual[int(0.85 * size) : int(0.97 * size), int(0.25 * size) : int(0.42 * size)].std())


def test_ap_view_is_noisier_and_foggier() -> None:
    for seed in range(3):
        pa, ap = _film(seed, "PA"), _film(seed, "AP")
        assert _grain(ap) > 1.5 * _grain(pa)
        assert np.percentile(ap, 1) > np.percentile(pa, 1) + 5  # scatter fog lifts the blacks


@pytest.mark.parametrize(
    ("first", "second", "effects"),
    [
        ({"view": "PA"}, {"view": "AP"}, {"ap_effect": 0.0}),
        ({"age": 20.0}, {"age": 85.0}, {"age_effect": 0.0}),
        ({"sex": "M"}, {"sex": "F"}, {"sex_effect": 0.0}),
    ],
)
def test_zero_effect_strength_makes_metadata_invisible(first: dict, second: dict, effects: dict) -> None:
    assert np.array_equal(_film(5, **first, **effects), _film(5, **second, **effects))
    assert not np.array_equal(_film(5, **first), _film(5, **second))


def test_female_films_are_denser_over_the_lower_lung_zones() -> None:
    for seed in range(3):
        male, female = _film(seed, sex="M"), _film(seed, sex="F")
        lower = (slice(int(0.55 * 128), int(0.7 * 128)), slice(int(0.12 * 128), int(0.3 * 128)))
        assert female[lower].mean() > male[lower].mean() + 3


def test_older_patients_have_fainter_bones() -> None:
    young, old = _film(2, age=20.0), _film(2, age=85.0)
    clavicles = (slice(int(0.08 * 128), int(0.2 * 128)), slice(int(0.15 * 128), int(0.4 * 128)))
    assert np.percentile(young[clavicles], 99) > np.percentile(old[clavicles], 99)


# --- lesions and masks -------------------------------------------------------------------------------------


def test_nodule_mask_diameter_matches_size_in_mm() -> None:
    cfg = SyntheticConfig(image_size=128, realism="simple")
    lesion, anatomy = _lesion_at_lung_centre("nodule", 25.0, cfg)
    _, mask = render_film(np.random.default_rng(0), 128, 50.0, "M", "PA", [lesion], cfg, anatomy)
    assert set(np.unique(mask)) == {0, 255}
    diameter = 2 * np.sqrt((mask > 0).sum() / np.pi)
    assert diameter == pytest.approx(25.0 / cfg.mm_per_px, abs=1.5)


@pytest.mark.parametrize(("kind", "size_mm"), [("nodule", 20.0), ("mass", 45.0), ("consolidation", 50.0)])
def test_lesion_changes_pixels_inside_its_mask_only(kind: str, size_mm: float) -> None:
    cfg = SyntheticConfig(image_size=128, realism="simple")
    lesion, anatomy = _lesion_at_lung_centre(kind, size_mm, cfg, seed=1)
    with_lesion = render_film_detailed(np.random.default_rng(7), 128, 50.0, "M", "PA", [lesion], cfg, anatomy)
    without, _ = render_film(np.random.default_rng(7), 128, 50.0, "M", "PA", [], cfg, anatomy)
    diff = np.abs(with_lesion.image.astype(float) - without)
    inside = with_lesion.mask > 0
    near = cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2) > 0
    assert diff[inside].mean() > 10
    assert diff[~near].max() <= 2
    assert diff[~inside].sum() < 0.15 * diff.sum()


def test_effusion_fills_the_costophrenic_angle_of_its_side() -> None:
    cfg = SyntheticConfig(image_size=128, realism="simple")
    anatomy = sample_anatomy(np.random.default_rng(4))
    effusion = Lesion("effusion", (0.0, 0.0), 50.0, "left")
    film = render_film_detailed(np.random.default_rng(4), 128, 60.0, "F", "PA", [effusion], cfg, anatomy)
    x, y, w, h = _mask_bbox(film.mask)
    assert x > 64  # patient's left is the image right
    assert y > 0.5 * 128  # at the lung base
    baseline, _ = render_film(np.random.default_rng(4), 128, 60.0, "F", "PA", [], cfg, anatomy)
    assert (film.image.astype(float) - baseline)[film.mask > 0].mean() > 20


def test_generated_masks_boxes_and_labels_agree(tmp_path: Path) -> None:
    cfg = SyntheticConfig(n_normal=3, n_abnormal=8, image_size=96, seed=1, max_lesions=2)
    frame = generate(cfg, tmp_path)
    assert tuple(frame.columns) == COLUMNS
    normals, abnormals = frame[frame.label == 0], frame[frame.label == 1]
    assert (normals.mask_path == "").all() and (normals.boxes == "").all()
    assert (normals.finding_labels == "No Finding").all()
    assert len(list((tmp_path / "masks").glob("*.png"))) == len(abnormals)
    for row in abnormals.itertuples():
        mask = cv2.imread(row.mask_path, cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (96, 96) and mask.any() and set(np.unique(mask)) <= {0, 255}
        boxes = [tuple(map(int, b.split(":")[1].split(","))) for b in row.boxes.split(";")]
        x0 = min(b[0] for b in boxes)
        y0 = min(b[1] for b in boxes)
        x1 = max(b[0] + b[2] for b in boxes)
        y1 = max(b[1] + b[3] for b in boxes)
        assert (x0, y0, x1 - x0, y1 - y0) == _mask_bbox(mask)
        kinds = {entry.split(":")[0] for entry in row.lesion_sizes_mm.split(";")}
        assert row.finding_labels == "|".join(sorted(kinds))
        assert {b.split(":")[0] for b in row.boxes.split(";")} == kinds
        assert row.boxes_frame == 96 and row.pixel_spacing_mm == pytest.approx(350.0 / 96)


# --- dataset plan ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("share_normal", "share_abnormal"), [(0.35, 0.46), (0.1, 0.9)])
def test_ap_share_per_label_follows_config(share_normal: float, share_abnormal: float) -> None:
    cfg = SyntheticConfig(n_normal=400, n_abnormal=300, ap_share_normal=share_normal,
                          ap_share_abnormal=share_abnormal)  # fmt: skip
    plan = pd.DataFrame([dataclasses.asdict(p) for p in plan_films(cfg)])
    shares = plan.assign(ap=plan.view == "AP").groupby("label").ap.mean()
    assert shares[0] == pytest.approx(share_normal, abs=0.005)
    assert shares[1] == pytest.approx(share_abnormal, abs=0.005)
    assert plan.label.sum() == 300
    assert plan.age.between(18, 90).all() and 0.4 < (plan.sex == "F").mean() < 0.6


def test_images_per_patient_groups_films_with_consistent_metadata() -> None:
    plan = pd.DataFrame(
        [dataclasses.asdict(p) for p in plan_films(SyntheticConfig(n_normal=20, n_abnormal=10, images_per_patient=3))]
    )
    assert (plan.groupby("patient").size() == 3).all()
    assert (plan.groupby("patient")[["age", "sex"]].nunique() == 1).all().all()


# --- cache -------------------------------------------------------------------------------------------------


def test_cache_is_reused_moved_and_keyed_by_config(tmp_path: Path) -> None:
    frame, directory = load_or_generate(TINY, tmp_path)
    assert directory.name == f"synthetic-{config_hash(TINY)}" and len(config_hash(TINY)) == 12
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in frame.image_path)
    stamps = {p: os.stat(p).st_mtime_ns for p in frame.image_path}
    again, same_dir = load_or_generate(TINY, tmp_path)
    assert same_dir == directory
    assert {p: os.stat(p).st_mtime_ns for p in again.image_path} == stamps
    pd.testing.assert_frame_equal(frame, again)
    assert [p.name for p in tmp_path.iterdir()] == [directory.name]  # no staging directory left behind

    _, other_dir = load_or_generate(dataclasses.replace(TINY, ap_effect=0.5), tmp_path)
    assert other_dir != directory

    moved = shutil.move(directory, tmp_path / "moved")
    relocated = read_samples(moved)
    assert all(Path(p).is_file() for p in relocated.image_path)
    assert all(Path(p).is_file() for p in relocated.mask_path if p)


# --- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ap_share_normal", 1.4),
        ("ap_share_abnormal", -0.1),
        ("image_size", 16),
        ("n_normal", -1),
        ("seed", -3),
        ("findings", ("nodule", "tumour")),
        ("findings", ()),
        ("finding_weights", (1.0, 2.0)),
        ("max_lesions", 0),
        ("nodule_size_mm", (30.0, 5.0)),
        ("mass_size_mm", (0.0, 60.0)),
        ("lesion_contrast", 0.0),
        ("field_of_view_mm", -350.0),
        ("images_per_patient", 0),
        ("realism", "photoreal"),
        ("ap_effect", -1.0),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"SyntheticConfig\.{field}=.*data\.source"):
        SyntheticConfig(**{field: value})


def test_config_accepts_lists_and_ints_from_hydra_and_hashes_them_like_tuples_of_floats() -> None:
    cfg = SyntheticConfig(findings=["nodule", "mass"], nodule_size_mm=[4, 8], finding_weights=[1, 3], ap_effect=1)
    assert cfg.findings == ("nodule", "mass") and cfg.nodule_size_mm == (4.0, 8.0)
    same = SyntheticConfig(findings=("nodule", "mass"), nodule_size_mm=(4.0, 8.0), finding_weights=(1.0, 3.0))
    assert config_hash(cfg) == config_hash(same)
    assert config_hash(cfg) != config_hash(dataclasses.replace(same, seed=1))


@pytest.mark.parametrize(("sex", "view"), [("unknown", "PA"), ("M", "LL")])
def test_render_rejects_metadata_it_cannot_draw(sex: str, view: str) -> None:
    with pytest.raises(ValueError, match="sex|view"):
        render_film(np.random.default_rng(0), 64, 40.0, sex, view, [], SyntheticConfig())


def test_lesion_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="Lesion.kind"):
        Lesion("tumour", (10.0, 10.0), 10.0, "left")
