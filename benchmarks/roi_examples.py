"""``python -m benchmarks.roi_examples``: contact sheet of the classical ROI on real NIH films (docs/roi_examples.jpg).

Six films of ``$CXRAD_SHARED_DATA/nih256_sample`` (the first three AP and three PA films by name, AP films
carrying most burned-in markers), each preprocessed like a run with ``preprocessing.center_crop=1.0`` so borders
stay visible: per film the preprocessed film with the markers found in red and the border in blue, and the
cleaned film with the thorax mask outlined in green (yellow when it fell back to the central ellipse).
``--summary`` also prints per-view statistics over all films of the sample (fallbacks, mask and border shares).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cxrad.preprocessing import PreprocessConfig, build_transform, read_grayscale
from cxrad.preprocessing.roi import Roi, find_roi
from cxrad.report.overlay import caption_band, outline_mask, to_rgb_uint8

REPO = Path(__file__).resolve().parents[1]


def pick_films(root: Path, per_view: int = 3) -> pd.DataFrame:
    """The first ``per_view`` AP and PA films of the sample by file name."""
    table = pd.read_csv(root / "Data_Entry_2017_v2020.csv").sort_values("Image Index")
    table = table[table["Image Index"].map(lambda name: (root / "images" / name).is_file())]
    return pd.concat([table[table["View Position"] == view].head(per_view) for view in ("AP", "PA")])


def panel(film: np.ndarray, roi: Roi, caption: str) -> np.ndarray:
    """Film with markers (red) and border (blue) | cleaned film with the thorax outline; caption below."""
    left = to_rgb_uint8(film)
    left[roi.border] = (left[roi.border] * 0.5 + np.array([0, 0, 255]) * 0.5).astype(np.uint8)
    outline_mask(left, roi.markers, 1, (255, 0, 0))
    right = to_rgb_uint8(roi.image)
    outline_mask(right, roi.thorax, 2, (255, 255, 0) if roi.fallback else (0, 255, 0))
    top = np.hstack([left, np.full((film.shape[0], 4, 3), 255, np.uint8), right])
    return np.vstack([top, caption_band([caption], top.shape[1])])


def summary(root: Path) -> pd.DataFrame:
    """Per view over every film of the sample (``center_crop=0.95``, the default): share of thorax fallbacks,
    median thorax share of the film, share of films with a marker found, mean border share."""
    logging.disable(logging.WARNING)  # one fallback warning per film is not news here
    transform = build_transform(PreprocessConfig(image_size=256, center_crop=0.95))
    table = pd.read_csv(root / "Data_Entry_2017_v2020.csv")
    rows = []
    for name, view in zip(table["Image Index"], table["View Position"], strict=True):
        if (root / "images" / name).is_file():
            roi = find_roi(transform(image=read_grayscale(root / "images" / name))["image"][..., 0])
            rows.append((view, roi.fallback, roi.thorax.mean(), roi.markers.any(), roi.border.mean()))
    films = pd.DataFrame(rows, columns=["view", "fallback", "thorax", "marker_found", "border"])
    return films.groupby("view").agg(
        films=("fallback", "size"),
        fallback=("fallback", "mean"),
        thorax_median=("thorax", "median"),
        marker_found=("marker_found", "mean"),
        border_mean=("border", "mean"),
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.roi_examples", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "roi_examples.jpg")
    parser.add_argument("--summary", action="store_true", help="also print per-view ROI statistics of all films")
    args = parser.parse_args(argv)
    root = Path(os.environ.get("CXRAD_SHARED_DATA", "/work/shared/data")) / "nih256_sample"
    if args.summary:
        print(summary(root).round(3).to_string())
    transform = build_transform(PreprocessConfig(image_size=256, center_crop=1.0))
    panels = []
    for _, row in pick_films(root).iterrows():
        film = transform(image=read_grayscale(root / "images" / row["Image Index"]))["image"][..., 0]
        roi = find_roi(film, row["Image Index"])
        caption = (
            f"{row['Image Index']} {row['View Position']} {row['Patient Age']}y: {roi.markers.sum()} marker px, "
            f"thorax {roi.thorax.mean():.0%}{' (fallback)' if roi.fallback else ''}"
        )
        panels.append(panel(film, roi, caption))
    height = max(p.shape[0] for p in panels)  # captions wrap to different heights
    panels = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0))) for p in panels]
    rows = [np.hstack(panels[i : i + 2]) for i in range(0, len(panels), 2)]
    sheet = np.vstack(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return args.out


if __name__ == "__main__":
    main()
