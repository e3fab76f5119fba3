"""``python -m cxrad.heatmap <run_dir> <image_path | sample index> [--out file.png]``: one film's anomaly map.

Rebuilds the run's trained detector (:mod:`cxrad.trained_run`), preprocesses the film exactly like the run
(crop, resize, CLAHE), scores it and writes a two-panel figure for a radiologist: the film alone on the left,
the anomaly map over it on the right with any ground-truth lesion outlined, and a caption with the score, the
run's threshold and decision, the truth when known and the metadata.

A sample index is a row of the run's ``samples.csv``; an image path is looked up there too (for its metadata
and ground truth), else scored with the metadata given by ``--age/--sex/--view`` (unknown by default).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from cxrad.aggregation import AggregationConfig, score_maps
from cxrad.data.dataset import CxrDataset
from cxrad.data.items import CxrBatch
from cxrad.data.metadata import parse_age, parse_sex, parse_view
from cxrad.metadata_conditioning.reference import calibration_rows
from cxrad.metrics.localization import map_threshold_by_fpr, scores_are_map_maxima
from cxrad.metrics.nodules import nodule_size_mm
from cxrad.model.conditioning import metadata_of
from cxrad.preprocessing import PreprocessConfig
from cxrad.report.overlay import caption_band, overlay_heatmap, to_rgb_uint8
from cxrad.trained_run import TrainedRun, load_trained_run, to_threshold_units

log = logging.getLogger(__name__)
DISPLAY_SIZE = 512
TABLE_TEXT_COLUMNS = ("finding_labels", "mask_path", "boxes", "lesion_sizes_mm", "sex", "view")


def read_samples_table(run_dir: Path) -> pd.DataFrame:
    """The run's ``samples.csv`` (empty when absent), with blank text cells as ``''``."""
    path = run_dir / "samples.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["image_path", "label", "age", "sex", "view"])
    table = pd.read_csv(path)
    for column in TABLE_TEXT_COLUMNS:
        if column in table.columns:
            table[column] = table[column].fillna("").astype(str)
    return table


def film_row(table: pd.DataFrame, target: str, age: float, sex: str, view: str) -> tuple[pd.Series, bool]:
    """The film to render as a sample-table row, and whether its label is known (it is in the table).

    Raises:
        IndexError: for a sample index outside the table; FileNotFoundError for a missing image path.
    """
    if target.isdigit():
        index = int(target)
        if index >= len(table):
            msg = f"sample index {index} is outside the run's samples.csv (0..{len(table) - 1}); pass a row number"
            raise IndexError(msg)
        return table.iloc[index], True
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        msg = f"{target} is neither a sample index nor an existing image file; pass a row of samples.csv or a path"
        raise FileNotFoundError(msg)
    known = table[table["image_path"].map(lambda p: Path(str(p)).resolve() == path)]
    if len(known):
        return known.iloc[0], True
    row = {"image_path": str(path), "label": 0, "age": age, "sex": sex, "view": view, "mask_path": "", "boxes": ""}
    return pd.Series({**row, "boxes_frame": 0, "finding_labels": ""}, name=0), False


def score_film(trained: TrainedRun, row: pd.Series) -> tuple[float, np.ndarray, torch.Tensor]:
    """Raw image score, anomaly map and encoded metadata ``(1, M)`` of one film, preprocessed like the run."""
    item = CxrDataset(pd.DataFrame([row]).reset_index(drop=True), trained.preprocess)[0]
    batch = CxrBatch.collate([item])
    with torch.no_grad(), metadata_of(trained.model.model, batch):
        output = trained.model(batch.image)
    if output.anomaly_map is None:
        msg = (
            f"model {type(trained.model).__name__} returns no anomaly map; heatmaps need PatchCore/PaDiM/FastFlow/DRAEM"
        )
        raise ValueError(msg)
    config = AggregationConfig.from_config(trained.cfg.get("aggregation"))  # the run's ROI and film score
    score, scored_map = score_maps(output.pred_score, output.anomaly_map, batch.roi_mask, config)
    anomaly_map = scored_map.reshape(scored_map.shape[-2:]).numpy()
    return float(score.reshape(-1)[0]), anomaly_map, batch.metadata


def display_film(
    row: pd.Series, preprocess: PreprocessConfig, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The film, its lesion mask and its thorax mask (None without ``preprocessing.roi``) through the run's crop,
    CLAHE and ROI at ``size`` pixels (same field of view)."""
    larger = PreprocessConfig(**{**vars(preprocess), "image_size": size})
    item = CxrDataset(pd.DataFrame([row]).reset_index(drop=True), larger)[0]
    roi_mask = None if item.roi_mask is None else item.roi_mask.numpy().astype(np.uint8)
    return (item.image[0].numpy() * 255).round().astype(np.uint8), item.gt_mask.numpy().astype(np.uint8), roi_mask


def decision_line(trained: TrainedRun, score: float, row: pd.Series) -> str:
    """``'threshold 1.23 (percentile q=95): FLAGGED'`` for the film's cut."""
    threshold = trained.threshold
    cut = float(threshold.cuts(pd.DataFrame([row]))[0])
    params = ", ".join(f"{k}={v:g}" for k, v in threshold.params.items())
    verdict = "FLAGGED as abnormal" if score >= cut else "not flagged"
    oracle = " ORACLE" if threshold.is_oracle else ""
    return f"threshold {cut:.4g} ({threshold.method}{oracle}{' ' + params if params else ''}): {verdict}"


def read_val_scores(run_dir: Path) -> pd.DataFrame | None:
    """The run's ``val_scores.csv`` (None when the run has none)."""
    path = run_dir / "val_scores.csv"
    return pd.read_csv(path) if path.is_file() else None


def map_scale(val: pd.DataFrame | None, trained: TrainedRun, row: pd.Series) -> tuple[float, float] | None:
    """Fixed colour scale in map units: (typical normal peak, threshold), from the run's ``val_scores.csv``.

    The low end is the median map maximum of the normal validation films; the high end is the run's threshold
    in map units, as in :mod:`cxrad.metrics.localization` (the image cut when scores are map maxima, else the
    validation-FPR-matched map threshold). None when the run has no usable ``val_scores.csv``.
    """
    if val is None or "map_max" not in val.columns:
        return None
    val = calibration_rows(val)
    if val["map_max"].isna().any() or val.empty:
        return None
    if scores_are_map_maxima(val["score"].to_numpy(np.float64), val["map_max"].to_numpy(np.float64)):
        high = float(trained.threshold.cuts(pd.DataFrame([row]))[0])
    else:
        high = map_threshold_by_fpr(val["map_max"].to_numpy(), val["pred_label"].to_numpy() == 1)
    low = float(val["map_max"].median())
    return (low, high) if high > low else None


def color_key(width: int, scale: tuple[float, float] | None) -> np.ndarray:
    """A labelled JET gradient strip explaining the overlay colours."""
    ramp = np.tile(np.linspace(0, 255, width - 16, dtype=np.float32), (14, 1)).astype(np.uint8)
    strip = np.zeros((14 + 32, width, 3), dtype=np.uint8)
    strip[4:18, 8:-8] = cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    if scale is None:
        left, right = "lowest in this film", "highest in this film"
    else:
        left = f"{scale[0]:.4g}: typical normal film's peak (transparent below)"
        right = f"{scale[1]:.4g}: run threshold in map units (white outline)"
    font_scale = max(0.45, width / 1800)
    cv2.putText(strip, left, (8, 40), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    text_width = cv2.getTextSize(right, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0]
    origin = (width - 8 - text_width, 40)
    cv2.putText(strip, right, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return strip


def render(
    trained: TrainedRun, row: pd.Series, known: bool, run_dir: Path, size: int = DISPLAY_SIZE, relative: bool = False
) -> np.ndarray:
    """Side-by-side RGB figure: film | film with the anomaly map and the lesion outline; key and caption below.

    Colours use the run's fixed scale (:func:`map_scale`) so films compare; ``relative`` (or a run without
    ``val_scores.csv``) scales each map to its own min-max instead.
    """
    raw, anomaly_map, metadata = score_film(trained, row)
    frame = pd.DataFrame([row])[["age", "sex", "view"]]
    raw_series = pd.Series([raw], index=frame.index)
    maps = torch.from_numpy(anomaly_map)[None]
    val = read_val_scores(run_dir)
    score = recorded_validation_score(val, row) if known else None
    if score is None:
        score = float(to_threshold_units(run_dir, trained.cfg, raw_series, frame, maps, metadata).iloc[0])
    film, mask, roi_mask = display_film(row, trained.preprocess, size)
    scale = None if relative else map_scale(val, trained, row)
    overlay = overlay_heatmap(
        film,
        anomaly_map,
        mask=mask if mask.any() else None,
        alpha=0.6 if scale else 0.4,
        value_range=scale,
        fade=scale is not None,
        contour_level=scale[1] if scale else None,
        roi_mask=roi_mask,
    )[:size]
    top = np.hstack([to_rgb_uint8(film), np.full((size, 8, 3), 255, dtype=np.uint8), overlay])
    cfg = trained.cfg
    lines = [
        f"{Path(str(row['image_path'])).name} | {cfg.model.name}, {cfg.backbone.name}, "
        f"conditioning {cfg.metadata_conditioning.name}",
        *caption_lines(row, known, score),
        decision_line(trained, score, row),
        f"left: the film as the model saw it (crop, CLAHE). right: anomaly map (peak {anomaly_map.max():.4g}); "
        "lesion ground truth outlined green",
    ]
    log.info("%s | %s", lines[1], lines[3])
    return np.vstack([top, color_key(top.shape[1], scale), caption_band(lines, top.shape[1])])


def recorded_validation_score(val: pd.DataFrame | None, row: pd.Series) -> float | None:
    """The score the run recorded (``val``: its ``val_scores.csv``) for one of its own validation films (None for
    any other film).

    Re-scoring a validation film would fit the normative reference or the group calibration on the film itself
    (an in-sample, too small score); the run's ``val_scores.csv`` holds the score its fitted model gave the film.
    """
    if str(row.get("split", "")) != "val" or val is None:
        return None
    if not {"sample_index", "score"} <= set(val.columns):  # a file from before the columns existed
        return None
    scores = val.set_index("sample_index")["score"].dropna()  # reference films have no out-of-sample score
    return float(scores.at[int(row.name)]) if int(row.name) in scores.index else None


def caption_lines(row: pd.Series, known: bool, score: float) -> list[str]:
    """Score, ground truth (with nodule size when known) and metadata lines."""
    age = pd.to_numeric(row.get("age"), errors="coerce")
    sizes = str(row.get("lesion_sizes_mm", "") or "").replace(";", ", ").replace(":", " ")
    sizes = f" ({sizes} mm)" if sizes else ""
    box_size = nodule_size_mm(pd.DataFrame([row])).iloc[0]
    if not sizes and pd.notna(box_size):
        sizes = f" (Nodule {box_size:.1f} mm from its box)"  # NIH: mean box side x pixel spacing
    if not known:
        truth = "truth unknown (image not in the run's samples.csv)"
    elif int(row["label"]) == 0:
        truth = "truth: normal"
    else:
        truth = f"truth: {row.get('finding_labels', 'abnormal')}{sizes}"
    age_text = "age unknown" if pd.isna(age) else f"{float(age):.0f} y"
    return [f"anomaly score {score:.4g} | {truth}", f"{age_text}, sex {row['sex']}, view {row['view']}"]


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the written file."""
    parser = argparse.ArgumentParser(prog="python -m cxrad.heatmap", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished cxrad run directory")
    parser.add_argument("target", help="row number in the run's samples.csv, or an image path")
    parser.add_argument("--out", type=Path, default=None, help="output PNG (default <run_dir>/heatmaps/on_demand/)")
    parser.add_argument("--age", default=None, help="age in years, for an image not in samples.csv")
    parser.add_argument("--sex", default=None, help="M or F, for an image not in samples.csv")
    parser.add_argument("--view", default=None, help="PA or AP, for an image not in samples.csv")
    parser.add_argument("--size", type=int, default=DISPLAY_SIZE, help="display size of each panel in pixels")
    parser.add_argument("--relative", action="store_true", help="scale colours to this map's own min-max")
    args = parser.parse_args(argv)
    trained = load_trained_run(args.run_dir)
    metadata = (parse_age(args.age), parse_sex(args.sex), parse_view(args.view))
    row, known = film_row(read_samples_table(args.run_dir.resolve()), args.target, *metadata)
    figure = render(trained, row, known, args.run_dir.resolve(), args.size, args.relative)
    out = args.out or args.run_dir / "heatmaps" / "on_demand" / f"{Path(str(row['image_path'])).stem}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR))
    log.info("wrote %s", out)
    print(out)
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
