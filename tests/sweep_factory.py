"""Fake but well-formed sweep directories (what ``python -m cxrad.run -m`` leaves), built in milliseconds."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml


def write_run(
    run_dir: Path,
    *,
    model: str = "patchcore",
    conditioning: str = "none",
    image_auroc: float = 0.8,
    fpr: float = 0.05,
    small_nodule_auroc: float | None = 0.7,
    small_n: int = 25,
    threshold_method: str = "percentile",
    overrides: tuple[str, ...] = (),
    seed: int = 0,
    val_image_auroc: float | None = None,
    val_fpr: float | None = None,
    val_nodule_auroc: float | None = None,
    val_view_shortcut: float = 0.05,
) -> Path:
    """One finished run: metrics.json, predictions.csv, val_scores.csv, .hydra/overrides.yaml, heatmaps/grid.png.

    Validation metrics (what selection reads) default to the test ones unless given.
    """
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True)
    metrics = {
        "model": model, "backbone": "resnet18", "metadata_conditioning": conditioning, "data": "synthetic",
        "threshold_method": threshold_method, "threshold_is_oracle": threshold_method == "f1_oracle",
        "threshold": 1.0, "image_auroc": image_auroc, "image_aupr": image_auroc, "fpr": fpr, "tpr": 0.5,
        "small_nodule_auroc": {"auroc": small_nodule_auroc, "n_positive": small_n if small_nodule_auroc else 0,
                               "n_normal": 40, "low_confidence": small_n < 20, "max_mm": 10.0},
        "nodule_auroc": {"auroc": 0.75, "n_positive": 30, "n_normal": 40, "low_confidence": False},
        "nodule_auroc_by_size": {
            "<10 mm": {"auroc": small_nodule_auroc, "n_positive": small_n, "n_normal": 40, "low_confidence": False},
            "10-20 mm": {"auroc": 0.8, "n_positive": 12, "n_normal": 40, "low_confidence": True},
            ">=20 mm": {"auroc": 0.9, "n_positive": 8, "n_normal": 40, "low_confidence": True},
            "n_unknown_size": 0,
        },
        "per_finding_auroc": {"Nodule": {"auroc": 0.75, "n_positive": 30}, "Mass": {"auroc": 0.9, "n_positive": 20}},
        "subgroups": {"view": {"PA": {"auroc": 0.8, "fpr": 0.04, "n": 50}, "AP": {"auroc": 0.7, "fpr": 0.1, "n": 30},
                               "unknown": {"auroc": None, "fpr": None, "n": 0}}},
        "pointing_game": {"rate": 0.4, "n_films": 30}, "box_hit_rate": {"rate": 0.3, "n_boxes": 40},
        "pixel_auroc": {"auroc": 0.85, "n_films": 30},
        "view_shortcut": 0.1,
        "ci": {"image_auroc": {"estimate": image_auroc, "low": image_auroc - 0.05, "high": image_auroc + 0.05}},
        "val_image_auroc": image_auroc if val_image_auroc is None else val_image_auroc,
        "val_fpr": fpr if val_fpr is None else val_fpr, "val_view_shortcut": val_view_shortcut,
        "val_n_test_normal": 20, "val_n_test_abnormal": 25,
        "val": {"selection_nodule_auroc": {
            "auroc": small_nodule_auroc if val_nodule_auroc is None else val_nodule_auroc, "band": "<10 mm",
            "n_positive": small_n, "note": "smallest nodule size band with >= 20 positives"}},
    }  # fmt: skip
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    n = 60
    label = np.r_[np.zeros(n // 2, int), np.ones(n // 2, int)]
    score = rng.normal(0, 1, n) + image_auroc * 2 * label
    view = np.where(np.arange(n) % 3 == 0, "AP", "PA")
    frame = pd.DataFrame({"label": label, "score": score, "pred_label": (score > 1).astype(int), "view": view})
    frame["image_path"] = [f"/films/{i:03d}.png" for i in range(n)]  # the same test films in every run
    frame["patient_id"] = [str(i // 2) for i in range(n)]
    frame.assign(age=50.0, sex="M", finding_labels=np.where(label == 1, "Nodule", "No Finding")).to_csv(
        run_dir / "predictions.csv", index=False
    )
    val = pd.DataFrame({"raw_score": rng.normal(0, 1, 40), "view": np.where(np.arange(40) % 2, "AP", "PA")})
    val = val.assign(score=val["raw_score"], pred_label=0, map_max=val["raw_score"], age=50.0, sex="F", label=0)
    val["val_role"] = "calibration"
    abnormal = pd.DataFrame({"raw_score": rng.normal(2, 1, 10), "view": "PA", "label": 1, "val_role": "selection"})
    abnormal = abnormal.assign(score=abnormal["raw_score"], pred_label=1, map_max=abnormal["raw_score"], age=60.0)
    val = pd.concat([val, abnormal.assign(sex="M")], ignore_index=True)
    val.to_csv(run_dir / "val_scores.csv", index=False)
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (run_dir / "heatmaps").mkdir()
    cv2.imwrite(str(run_dir / "heatmaps" / "grid.png"), np.full((40, 80, 3), 128, np.uint8))
    return run_dir
