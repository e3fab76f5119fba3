"""What the command line shows: known third-party noise filtered, progress bars on request, a closing summary.

The entry points (``cxrad.run``, ``cxrad.select``, ``cxrad.predict``) call :func:`quiet_third_party` once; library
code never changes warning filters or logger levels. Progress bars inside cxrad go through :func:`progress`, which
follows the run's ``progress_bar`` setting (:func:`progress_bars`).
"""

from __future__ import annotations

import logging
import math
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

from rich import box
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from cxrad.config_errors import DataError

T = TypeVar("T")

# (message regex, category) of warnings that say nothing a cxrad user can act on.
KNOWN_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"Importing from timm\.models\.layers is deprecated", FutureWarning),
    (r"The anomalib\.models\.components\.dinov2 package is deprecated", FutureWarning),
    (r".*`validation_step` but have no `val_dataloader`", UserWarning),
    (r".*`LightningModule\.configure_optimizers` returned `None`", UserWarning),
    (r".*module\(s\) in eval mode", UserWarning),
    (r".*isinstance\(treespec, LeafSpec\)", Warning),
    (r".*does not have many workers which may be a bottleneck", UserWarning),
    (r".*The number of training batches .* is smaller than the logging interval", UserWarning),
    (r".*torch\.cuda\.amp\.", FutureWarning),
    # anomalib's trained models (STFPM, CFLOW, ...) log their loss to the trainer's logger; cxrad runs have none.
    (r".*You called `self\.log\(.*but have no logger configured", UserWarning),
    (r".*Trying to infer the `batch_size` from an ambiguous collection", UserWarning),
)
# Loggers whose INFO lines are Lightning/anomalib chatter (device banners, tips, model init, timers); their
# warnings still show, except the ones in QUIET_LOG_MESSAGES.
QUIET_LOGGERS = (  # Lightning's rank-zero messages go through whichever of these was imported last
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
    "lightning.fabric.utilities.seed",
    "lightning.pytorch.accelerators.cuda",
    "anomalib",
)
# Warnings anomalib logs on every predict call of a model passed in memory (the weights are already loaded).
QUIET_LOG_MESSAGES = ("ckpt_path is not provided", "will override existing callbacks passed to Trainer")

_PROGRESS: ContextVar[bool] = ContextVar("cxrad_progress", default=True)


class _DropMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(part in message for part in QUIET_LOG_MESSAGES)


_DROP = _DropMessages()


def quiet_third_party() -> None:
    """Hide the known third-party warnings and chatter; cxrad's own log lines and unknown warnings still show.

    Call it before anomalib and timm are imported (they warn while importing) and again once Hydra has set up
    logging (its setup resets logger levels). Calling it twice adds nothing twice.
    """
    for pattern, category in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("anomalib.engine.engine", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DROP)


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Within the block, :func:`progress` shows bars only when ``enabled`` (the run's ``progress_bar``)."""
    token = _PROGRESS.set(enabled)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def bars_shown(progress_bar: bool) -> bool:
    """Whether a progress bar is drawn: the run asks for one and stderr is a terminal (a log file gets no bars)."""
    return progress_bar and sys.stderr.isatty()


def progress(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterable[T]:
    """``items`` with a tqdm bar when progress bars are on (and stderr is a terminal), else ``items`` itself."""
    if not _PROGRESS.get():
        return items
    return tqdm(items, desc=desc, unit=unit, total=total, disable=None)  # None: no bar when not a terminal


# (label, metrics.json key) of the closing summary, in order.
SUMMARY_ROWS: tuple[tuple[str, str], ...] = (
    ("val image AUROC", "val_image_auroc"),
    ("test image AUROC", "image_auroc"),
    ("test AUPR", "image_aupr"),
    ("pixel AUROC", "pixel_auroc"),
    ("FPR on normal test films", "fpr"),
    ("TPR on abnormal test films", "tpr"),
    ("view shortcut", "view_shortcut"),
    ("view-only AUROC", "view_only_auroc"),
    ("view-stratified AUROC", "view_stratified_auroc"),
    ("normal view leakage AUROC", "normal_view_leakage_auroc"),
)


def _number(value: object) -> float | None:
    """A metric's headline number: plain, or the ``auroc``/``rate`` of a dict entry (``pixel_auroc``)."""
    if isinstance(value, dict):
        value = value.get("auroc", value.get("rate"))
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def _value(metrics: dict, key: str) -> str:
    value = _number(metrics.get(key))
    if value is None:
        return "n/a"
    interval = (metrics.get("ci") or {}).get(key) or {}
    low, high = _number(interval.get("low")), _number(interval.get("high"))
    return f"{value:.3f}" if low is None or high is None else f"{value:.3f}  [{low:.3f}, {high:.3f}]"


def summary_table(metrics: dict) -> Table:
    """The run's headline metrics, with 95% bootstrap CIs where ``metrics['ci']`` has them."""
    title = " | ".join(str(metrics[k]) for k in ("model", "backbone", "metadata_conditioning") if k in metrics)
    table = Table(title=title or None, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("metric")
    table.add_column("value [95% CI]")
    for label, key in SUMMARY_ROWS:
        if key in metrics:
            table.add_row(label, _value(metrics, key))
    return table


@contextmanager
def exit_on_config_error(only: type[ValueError] = ValueError) -> Iterator[None]:
    """Turn a config error (``ValueError``, or only ``only``) inside the block into one line on stderr and exit 2.

    Only for checks that run before any work, so that every ``ValueError`` there is about the config; a
    :class:`~cxrad.config_errors.DataError` (the films the config names) is reported as a data error.
    """
    try:
        yield
    except only as error:
        kind = "data" if isinstance(error, DataError) else "config"
        sys.stderr.write(f"cxrad: {kind} error: {error}\n")
        raise SystemExit(2) from None


def print_summary(metrics: dict, out_dir: str | Path, console: Console | None = None) -> None:
    """Print :func:`summary_table` and the run directory (unwrapped, to copy): the last lines a run shows."""
    console = console or Console()
    console.print(summary_table(metrics))
    console.print(f"run directory: {out_dir}", soft_wrap=True, highlight=False)
