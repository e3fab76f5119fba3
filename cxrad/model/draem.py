"""DRAEM (reconstruction + discriminative network trained on simulated anomalies); no backbone."""

from __future__ import annotations

from pathlib import Path

from anomalib.models import Draem

from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, pre_processor


def build_draem(
    image_size: int,
    texture_dir: str | Path,
    enable_sspcab: bool = False,
    beta: tuple[float, float] = (0.1, 1.0),
    seed: int = 0,
    conditioning: dict | None = None,
    backbone: object = None,
) -> Draem:
    """DRAEM with Perlin-noise anomalies from ``texture_dir``.

    anomalib downloads the DTD texture set whenever its directory does not exist; cxrad always passes an
    existing directory (empty by default: anomalib then uses Perlin noise only), so nothing is downloaded.
    """
    import torch

    del backbone  # DRAEM has no backbone; accepted so every builder has the same call shape.
    texture_dir = Path(texture_dir).expanduser()
    texture_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Draem(
            dtd_dir=texture_dir,
            enable_sspcab=enable_sspcab,
            beta=tuple(beta),
            pre_processor=pre_processor(image_size, None),
            **NO_ANOMALIB_POSTPROCESSING,
        )
