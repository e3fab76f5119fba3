"""Classical ROI on a drawn chest film: the marker is gone, the border masked, the lesion kept inside the thorax."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrad.data.dataset import CxrDataset
from cxrad.preprocessing import PreprocessConfig, build_transform
from cxrad.preprocessing.cache import _identity, config_hash
from cxrad.preprocessing.roi import central_ellipse, find_roi

SIZE = 256
FRAME = 14  # black frame width in pixels
LESION = (150, 80, 9)  # (row, col, radius): inside the patient's right lung (image left)
TEXT_ORIGIN = (24, 48)  # (x, y) of the "AP" marker's baseline, in the top-left corner inside the frame


def chest_film(seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A drawn chest film: body, two dark lungs, a lesion, an "AP" marker in a corner and a black frame.

    Returns the uint8 film and the masks of what was drawn (``marker``, ``frame``, ``lesion``).
    """
    rng = np.random.default_rng(seed)
    film = np.full((SIZE, SIZE), 40, np.float32)  # air around the patient
    cv2.ellipse(film, (128, 140), (112, 125), 0, 0, 360, 165, -1)  # body
    for centre in ((85, 125), (171, 125)):
        cv2.ellipse(film, centre, (38, 72), 0, 0, 360, 75, -1)  # lung fields
    film += cv2.GaussianBlur(rng.normal(0, 12, film.shape).astype(np.float32), (0, 0), 2)  # lung texture
    row, col, radius = LESION
    yy, xx = np.mgrid[:SIZE, :SIZE]
    lesion = (yy - row) ** 2 + (xx - col) ** 2 <= radius**2
    film[lesion] += 55
    marker = np.zeros((SIZE, SIZE), np.uint8)
    cv2.putText(marker, "AP", TEXT_ORIGIN, cv2.FONT_HERSHEY_SIMPLEX, 0.7, 1, 2)
    film[marker > 0] = 255
    frame = np.zeros((SIZE, SIZE), bool)
    frame[:FRAME], frame[-FRAME:], frame[:, :FRAME], frame[:, -FRAME:] = True, True, True, True
    film[frame] = 0
    return np.clip(film, 0, 255).astype(np.uint8), {"marker": marker > 0, "frame": frame, "lesion": lesion}


def preprocessed(film: np.ndarray) -> np.ndarray:
    """The film after the run's resize and CLAHE (what the ROI sees)."""
    return build_transform(PreprocessConfig(image_size=SIZE, center_crop=1.0))(image=film)["image"][..., 0]


@pytest.fixture(scope="module")
def drawn() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    film, masks = chest_film()
    return preprocessed(film), masks


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * width + 1,) * 2, np.uint8)).astype(bool)
    return grown & ~cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)


def test_marker_is_found_and_inpainted_to_its_surroundings(drawn) -> None:  # noqa: ANN001
    film, masks = drawn
    roi = find_roi(film)
    marker = masks["marker"]
    assert roi.markers[marker].mean() > 0.95
    surroundings = float(np.median(film[_ring(marker, 6)]))
    assert film[marker].mean() - surroundings > 100  # the marker was far brighter than its surroundings ...
    assert abs(float(roi.image[marker].mean()) - surroundings) < 25  # ... and is now close to them


def test_black_frame_is_masked_and_filled(drawn) -> None:  # noqa: ANN001
    film, masks = drawn
    roi = find_roi(film)
    frame = masks["frame"]
    assert roi.border[frame].mean() > 0.97 and roi.border[~frame].mean() < 0.02
    assert not roi.thorax[frame].any()
    assert roi.image[frame].std() == 0 and roi.image[frame].min() > film[frame].max() + 40  # no longer black


def test_lung_lesion_is_kept_and_covered_by_the_thorax_mask(drawn) -> None:  # noqa: ANN001
    film, masks = drawn
    roi = find_roi(film)
    lesion = masks["lesion"]
    assert not roi.fallback
    assert roi.thorax[lesion].all()
    assert not roi.markers[lesion].any()
    np.testing.assert_array_equal(roi.image[lesion], film[lesion])  # its contrast is untouched
    assert 0.2 < roi.thorax.mean() < 0.85  # the thorax, not the whole film


def test_flat_film_falls_back_to_the_central_ellipse_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    film = np.full((SIZE, SIZE), 128, np.uint8)
    with caplog.at_level(logging.WARNING):
        roi = find_roi(film, "flat.png")
    assert roi.fallback
    np.testing.assert_array_equal(roi.thorax, central_ellipse(film.shape))
    assert "flat.png" in caplog.text and "central ellipse" in caplog.text


@pytest.mark.parametrize("method", ["torchxrayvision", "anycxr"])
def test_learned_segmenters_fail_naming_the_missing_weights(method: str) -> None:
    with pytest.raises(ValueError, match=rf"roi={method} needs .*weights.*preprocessing\.roi=classical"):
        PreprocessConfig(roi=method)


def test_unknown_roi_fails_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"roi=lungs is unknown; choose from \['none', 'classical'\]"):
        PreprocessConfig(roi="lungs")


def test_roi_setting_splits_the_cache_and_none_keeps_old_entries() -> None:
    assert config_hash(PreprocessConfig(roi="classical")) != config_hash(PreprocessConfig())
    assert "roi" not in _identity(PreprocessConfig())  # films cached before the option existed are still read


def test_dataset_items_carry_the_cleaned_film_and_mask_the_same_with_and_without_cache(tmp_path: Path) -> None:
    film, masks = chest_film(seed=1)
    path = tmp_path / "film.png"
    cv2.imwrite(str(path), film)
    row = {"image_path": str(path), "label": 0, "age": 50.0, "sex": "M", "view": "PA", "mask_path": "", "boxes": ""}
    table = pd.DataFrame([{**row, "boxes_frame": 0}])
    settings = {"image_size": SIZE, "center_crop": 1.0, "roi": "classical"}
    plain = CxrDataset(table, PreprocessConfig(**settings))[0]
    cached = PreprocessConfig(**settings, cache=True, cache_dir=str(tmp_path / "cache"))
    first, second = CxrDataset(table, cached)[0], CxrDataset(table, cached)[0]  # the second reads the cache
    for item in (first, second):
        np.testing.assert_array_equal(item.image.numpy(), plain.image.numpy())
        np.testing.assert_array_equal(item.roi_mask.numpy(), plain.roi_mask.numpy())
    assert plain.roi_mask[masks["lesion"]].all()
    assert (plain.image[0].numpy()[masks["marker"]] * 255).mean() < 230  # the marker is no longer white
    assert CxrDataset(table, PreprocessConfig(image_size=SIZE))[0].roi_mask is None


def test_a_small_bright_nodule_inside_the_lung_near_the_edge_is_not_a_marker() -> None:
    film, masks = chest_film(seed=2)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    calcified = (yy - 110) ** 2 + (xx - 56) ** 2 <= 3**2  # in the edge band, but inside the right lung
    film[calcified] = 255
    film = preprocessed(film)
    roi = find_roi(film)
    assert roi.thorax[calcified].all()
    assert not roi.markers[calcified].any()
    np.testing.assert_array_equal(roi.image[calcified], film[calcified])
    assert roi.markers[masks["marker"]].mean() > 0.95  # while the corner marker still is one
