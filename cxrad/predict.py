"""``python -m cxrad.predict RUN_DIR INPUT``: score new films with a trained run, on the CPU by default.

``RUN_DIR`` is a finished run directory (``.hydra/config.yaml``, ``metrics.json`` with the threshold, the
anomalib checkpoint). ``INPUT`` is one film, a folder of films (PNG/JPEG/TIFF/DICOM, searched recursively) or a
CSV with an ``image_path`` column (optional ``age``, ``sex``, ``view``, ``label``). The model is rebuilt from the
run's config, its weights loaded with ``weights_only=True``, and films are checked and preprocessed exactly as in
the run. Metadata comes from the CSV, else DICOM tags; ``--age/--sex/--view`` override both (unknown is allowed
and encoded as unknown).

Writes ``predictions.csv`` (score, flag at the run's threshold, metadata, overlay path), ``skipped.csv`` and
``heatmaps/*.png`` to ``--out`` (default ``RUN_DIR/predict/<time>``) and prints a summary.

Example:
    python -m cxrad.predict outputs/runs/2026-01-01_12-00-00_patchcore_efficientnet_lite0 scans/ --sex F
"""

# ruff: noqa: E402 (the noise filters go in before anomalib and timm are imported: they warn while importing)
from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from cxrad.console import bars_shown, quiet_third_party

if __name__ == "__main__":
    quiet_third_party()

import pandas as pd
from anomalib.engine import Engine
from omegaconf import OmegaConf

from cxrad.aggregation import film_scoring
from cxrad.data.checks import DECODE_SKIP_LOG, ScanConfig, screen_samples, skip_counts, with_logged_skips
from cxrad.data.dataset import make_loader
from cxrad.data.folder import list_films
from cxrad.data.metadata import UNKNOWN, normalise_metadata, parse_age, parse_sex, parse_view
from cxrad.data.table import complete_columns
from cxrad.report.outputs import write_csv
from cxrad.report.prediction_writer import PredictionWriter, Rater
from cxrad.trained_run import TrainedRun, load_run_config, load_threshold, load_trained_run

log = logging.getLogger(__name__)
OUTPUT_COLUMNS = ("image_path", "score", "pred_label", "threshold", "age", "sex", "view", "heatmap")


def input_table(source: str | Path) -> tuple[pd.DataFrame, bool]:
    """One row per film of ``source`` (a film, a folder or a CSV); returns it and whether labels are known.

    Raises:
        FileNotFoundError: when ``source`` does not exist or holds no film.
    """
    source = Path(source).expanduser()
    if source.is_dir():
        frame = pd.DataFrame({"image_path": list_films(source)})
    elif source.suffix.lower() == ".csv" and source.is_file():
        frame = _read_input_csv(source)
    elif source.is_file():
        frame = pd.DataFrame({"image_path": [str(source.resolve())]})
    else:
        msg = f"input {source} does not exist; pass a film, a folder of films or a CSV with an image_path column"
        raise FileNotFoundError(msg)
    if frame.empty:
        msg = f"no films in {source} (looked for PNG/JPEG/TIFF/BMP/DICOM files, recursively)"
        raise FileNotFoundError(msg)
    for column in ("age", "sex", "view"):
        if column not in frame.columns:
            frame[column] = None
    known = "label" in frame.columns and pd.to_numeric(frame["label"], errors="coerce").isin([0, 1]).all()
    if "label" in frame.columns and not known:
        log.warning("%s: column 'label' is not all 0/1, so predictions carry no label", source)
    if not known:
        frame["label"] = 0  # a placeholder the dataset needs; not written out
    return frame, bool(known)


def _read_input_csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"sex": str, "view": str})
    if "image_path" not in frame.columns:
        msg = f"{path} has no 'image_path' column (columns: {list(frame.columns)})"
        raise ValueError(msg)
    frame["image_path"] = [str((path.parent / p).resolve()) if p else "" for p in frame["image_path"].fillna("")]
    return frame


def check_overrides(overrides: dict[str, str | None]) -> None:
    """Raise ``ValueError`` for an ``--age/--sex/--view`` value that would silently parse as unknown."""
    parsers = {"age": parse_age, "sex": parse_sex, "view": parse_view}
    allowed = {"age": "years (e.g. 63) or a DICOM age (063Y)", "sex": "M, F or unknown", "view": "PA, AP or unknown"}
    for column, value in overrides.items():
        if value is None or str(value).strip().lower() == UNKNOWN:
            continue
        parsed = parsers[column](value)
        if parsed == UNKNOWN or (isinstance(parsed, float) and math.isnan(parsed)):
            msg = f"--{column} {value!r} is not understood; use {allowed[column]}"
            raise ValueError(msg)


def prepare_films(
    run: TrainedRun, source: str | Path, overrides: dict[str, str | None]
) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """Input films screened like the run's, metadata resolved (CSV, tags, overrides) and normalised.

    Returns:
        The films (indexed 0..n-1), the skip table and whether labels are known.
    """
    check_overrides(overrides)
    checks = run.cfg.data.get("checks")
    config = ScanConfig.from_config(OmegaConf.to_container(checks) if checks else None, run.preprocess.image_size)
    frame, known = input_table(source)
    films, skipped = screen_samples(frame, config, source=str(source))
    for column, value in overrides.items():
        if value is not None:
            films[column] = value
    films = normalise_metadata(complete_columns(films, str(source)))
    films["split"] = "test"
    return films, skipped, known


def predict(
    run_dir: str | Path,
    source: str | Path,
    out_dir: str | Path | None = None,
    overrides: dict[str, str | None] | None = None,
    device: str = "cpu",
    heatmaps: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """Score every film of ``source`` with the run in ``run_dir``; return (predictions, skipped, out dir)."""
    run_dir = Path(run_dir).expanduser().resolve()
    out = _output_dir(run_dir, out_dir)
    run = load_trained_run(run_dir)
    films, skipped, known = prepare_films(run, source, overrides or {})
    out.mkdir(parents=True, exist_ok=True)
    loader = make_loader(films, run.preprocess, int(run.cfg.data.batch_size), 0, False, 0, out / DECODE_SKIP_LOG)
    writer = PredictionWriter(Rater(run_dir, run, films), run.preprocess, out / "heatmaps" if heatmaps else None)
    callbacks = [film_scoring(run.cfg), writer]  # the run's ROI restriction and film-score aggregation first
    engine = Engine(
        accelerator=device,
        devices=1,
        logger=False,
        default_root_dir=out,
        callbacks=callbacks,
        enable_progress_bar=bars_shown(True),  # on a terminal only, as in cxrad.run; a pipe or log gets none
        enable_model_summary=False,
    )
    engine.predict(model=run.model, dataloaders=loader, return_predictions=False)
    scored = films.join(writer.table(), how="inner")
    columns = [*OUTPUT_COLUMNS, *(["label"] if known else [])]
    predictions = scored[columns].sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    skipped = with_logged_skips(skipped, out / DECODE_SKIP_LOG)
    write_csv(out / "predictions.csv", predictions)
    write_csv(out / "skipped.csv", skipped)
    return predictions, skipped, out


def _output_dir(run_dir: Path, out_dir: str | Path | None) -> Path:
    out = Path(out_dir) if out_dir else run_dir / "predict" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    if (out / "predictions.csv").exists():
        msg = f"{out} already holds predictions.csv and cxrad never overwrites results; pass another --out"
        raise FileExistsError(msg)
    return out


def summary(run_dir: Path, predictions: pd.DataFrame, skipped: pd.DataFrame, out: Path) -> str:
    """A readable report of one prediction job: counts, the five highest scores, where the files are."""
    cfg, threshold = load_run_config(run_dir), load_threshold(run_dir)
    groups = f", per {'/'.join(threshold.group_by)}" if threshold.group_by else ""
    lines = [
        f"cxrad.predict: {len(predictions)} film(s) scored with {run_dir}",
        f"  model {cfg.model.name}/{cfg.backbone.name}, conditioning {cfg.metadata_conditioning.name}, "
        f"threshold {threshold.value:.4g} ({threshold.method}{groups})",
        f"  flagged abnormal: {int(predictions['pred_label'].sum())} of {len(predictions)}",
    ]
    if len(skipped):
        reasons = skip_counts(skipped)["skipped_by_reason"]
        lines.append(f"  skipped: {len(skipped)} {reasons} -> {out / 'skipped.csv'}")
    lines.append("  highest scores:")
    for row in predictions.head(5).itertuples():
        flag = "ABNORMAL" if row.pred_label else "normal"
        age = "?" if pd.isna(row.age) else f"{row.age:.0f}"
        lines.append(f"    {row.score:10.4g}  {flag:8s}  {age:>3s} {row.sex:7s} {row.view:7s}  {row.image_path}")
    heatmaps = f", {out / 'heatmaps'}/" if (out / "heatmaps").is_dir() else ""
    lines.append(f"  wrote {out / 'predictions.csv'}{heatmaps}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cxrad.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a finished cxrad run directory")
    parser.add_argument("input", help="a film (PNG/JPEG/DICOM), a folder of films, or a CSV with image_path")
    parser.add_argument("--out", help="output directory (default: RUN_DIR/predict/<time>)")
    parser.add_argument("--age", help="age of every film, e.g. 63 or 063Y (overrides CSV and DICOM tags)")
    parser.add_argument("--sex", help="M, F or unknown (overrides CSV and DICOM tags)")
    parser.add_argument("--view", help="PA, AP or unknown (overrides CSV and DICOM tags)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu", "auto"), help="default: cpu")
    parser.add_argument("--no-heatmaps", action="store_true", help="write no overlay images")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2, with a one-line error, for bad inputs)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_third_party()
    overrides = {"age": args.age, "sex": args.sex, "view": args.view}
    heatmaps = not args.no_heatmaps
    try:
        predictions, skipped, out = predict(args.run_dir, args.input, args.out, overrides, args.device, heatmaps)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"cxrad.predict: error: {error}", file=sys.stderr)
        return 2
    print(summary(Path(args.run_dir).expanduser().resolve(), predictions, skipped, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
