from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrad.preprocessing import PreprocessConfig, build_transform, read_grayscale


def test_real_nih_film_becomes_a_three_channel_square(shared_data: Path) -> None:
    path = next((shared_data / "nih_sample").rglob("*.png"))
    gray = read_grayscale(path)
    out = build_transform(PreprocessConfig(image_size=128, center_crop=0.9))(image=gray, mask=np.zeros_like(gray))
    assert out["image"].shape == (128, 128, 3) and out["image"].dtype == np.uint8
    assert np.array_equal(out["image"][..., 0], out["image"][..., 2])
    assert out["mask"].shape == (128, 128)


def test_clahe_raises_local_contrast_of_a_flat_film() -> None:
    rng = np.random.default_rng(0)
    film = (100 + rng.integers(0, 8, (256, 256))).astype(np.uint8)
    plain = build_transform(PreprocessConfig(image_size=128, clahe=False))(image=film)["image"]
    clahe = build_transform(PreprocessConfig(image_size=128, clahe=True, clip_limit=4.0))(image=film)["image"]
    assert clahe.std() > 1.5 * plain.std()


def test_center_crop_follows_the_mask() -> None:
    film = np.zeros((200, 200), np.uint8)
    mask = np.zeros_like(film)
    mask[90:110, 90:110] = 255
    out = build_transform(PreprocessConfig(image_size=100, center_crop=0.5, clahe=False))(image=film, mask=mask)
    assert out["mask"].mean() / 255 == pytest.approx(400 / 10_000, rel=0.05)  # 20x20 of a 100x100 crop


@pytest.mark.parametrize("mode", ["rgba", "rgb", "gray16"])
def test_read_grayscale_converts_png_modes(tmp_path: Path, mode: str) -> None:
    gray = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    image = {
        "rgba": cv2.cvtColor(gray, cv2.COLOR_GRAY2BGRA),
        "rgb": cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR),
        "gray16": gray.astype(np.uint16) * 257,
    }[mode]
    cv2.imwrite(str(tmp_path / "f.png"), image)
    out = read_grayscale(tmp_path / "f.png")
    assert out.dtype == np.uint8 and out.shape == (64, 64)
    assert np.corrcoef(out.ravel(), gray.ravel())[0, 1] > 0.99


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png"):
        read_grayscale(tmp_path / "bad.png")


def test_too_small_image_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="preprocessing.image_size=16"):
        PreprocessConfig(image_size=16)
