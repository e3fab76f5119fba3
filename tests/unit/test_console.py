"""The command line's helpers: noise filters, progress bars that follow ``progress_bar``, the closing summary."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator

import pytest
from rich.console import Console

from cxrad.console import QUIET_LOGGERS, print_summary, progress, progress_bars, quiet_third_party

METRICS = {
    "model": "patchcore",
    "backbone": "efficientnet_lite0",
    "metadata_conditioning": "film_normative",
    "val_image_auroc": 0.9667,
    "image_auroc": 0.8997,
    "fpr": 0.04,
    "view_shortcut": 0.125,
    "view_only_auroc": 0.56,
    "view_stratified_auroc": 0.9136,
    "normal_view_leakage_auroc": None,
    "pixel_auroc": {"auroc": 0.9744, "n_films": 25},
    "ci": {"image_auroc": {"estimate": 0.8997, "low": 0.7831, "high": 0.9898, "n_valid": 1000}},
}


def _summary(metrics: dict, out_dir: str = "/runs/x") -> list[str]:
    buffer = io.StringIO()
    print_summary(metrics, out_dir, Console(file=buffer, width=100))
    return buffer.getvalue().rstrip().splitlines()


def test_the_summary_shows_headline_metrics_with_their_ci_and_ends_with_the_run_directory() -> None:
    lines = _summary(METRICS)
    text = "\n".join(lines)
    assert "patchcore | efficientnet_lite0 | film_normative" in lines[0]
    assert "0.900  [0.783, 0.990]" in next(line for line in lines if "test image AUROC" in line)
    assert "0.040" in next(line for line in lines if "FPR on normal test films" in line)
    assert "0.974" in next(line for line in lines if "pixel AUROC" in line)  # a dict entry's auroc
    assert "n/a" in next(line for line in lines if "normal view leakage AUROC" in line)
    for label in ("view shortcut", "view-only AUROC", "view-stratified AUROC"):
        assert label in text
    assert "TPR" not in text  # rows only for metrics the run has
    assert lines[-1] == "run directory: /runs/x"


def test_the_run_directory_is_never_wrapped() -> None:
    long_dir = "/outputs/runs/" + "a" * 150
    assert _summary(METRICS, long_dir)[-1] == f"run directory: {long_dir}"


def test_progress_bars_follow_the_setting() -> None:
    items = [1, 2, 3]
    with progress_bars(False):
        assert progress(items, "films") is items  # no bar object at all
    with progress_bars(True):
        assert list(progress(items, "films")) == items


@pytest.fixture
def restored_loggers() -> Iterator[None]:
    """Undo :func:`quiet_third_party`'s logger levels and filters after the test."""
    names = [*QUIET_LOGGERS, "anomalib.engine.engine"]
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).filters)) for name in names}
    yield
    for name, (level, filters) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).filters = filters


@pytest.mark.usefixtures("restored_loggers")
def test_known_noise_is_filtered_and_the_rest_still_shows(caplog: pytest.LogCaptureFixture) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        timm = "Importing from timm.models.layers is deprecated, please import via timm.layers"
        lightning = "You defined a `validation_step` but have no `val_dataloader`. Skipping val loop."
        warnings.warn(timm, FutureWarning, stacklevel=2)
        warnings.warn(lightning, UserWarning, stacklevel=2)
        warnings.warn("something cxrad users should see", UserWarning, stacklevel=2)
    assert [str(w.message) for w in caught] == ["something cxrad users should see"]
    with caplog.at_level(logging.INFO):
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
        engine_log = logging.getLogger("anomalib.engine.engine")
        engine_log.warning("ckpt_path is not provided. Model weights will not be loaded.")
        engine_log.warning("a real anomalib warning")
    assert [r.getMessage() for r in caplog.records] == ["a real anomalib warning"]
