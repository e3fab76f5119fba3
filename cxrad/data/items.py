"""Typed items and batches that carry metadata next to the image through anomalib.

anomalib's ``ImageItem``/``ImageBatch`` have no metadata slot; these subclasses add one, so metadata rides in
the batch through ``Engine.fit``/``predict`` (device transfer and pre-processing included) without forking
anomalib.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from anomalib.data import ImageBatch, ImageItem


@dataclass
class CxrItem(ImageItem):
    """One film: image, label, mask, plus encoded metadata, its row index in the sample table and, with
    ``preprocessing.roi``, the thorax mask ``(H, W)`` bool that the anomaly map is scored inside."""

    metadata: torch.Tensor | None = None
    sample_index: torch.Tensor | None = None
    roi_mask: torch.Tensor | None = None


@dataclass
class CxrBatch(ImageBatch):
    """A batch of :class:`CxrItem`; ``metadata`` is ``(B, D)``, ``sample_index`` is ``(B,)``, ``roi_mask`` is
    ``(B, H, W)`` or None."""

    metadata: torch.Tensor | None = None
    sample_index: torch.Tensor | None = None
    roi_mask: torch.Tensor | None = None

    item_class: ClassVar[Callable] = CxrItem
