"""anomalib detectors configured for chest films: PatchCore, PaDiM, FastFlow, DRAEM.

Each builder returns a real anomalib ``AnomalibModule`` with cxrad's pre-processing (resize + the backbone's
normalisation), anomalib's post-processing and metrics switched off (cxrad scores raw outputs itself, see
NOTES: anomalib's AUROC applies a sigmoid to raw scores), and backbone weights loaded by
:mod:`cxrad.backbone`.
"""

from cxrad.model.draem import build_draem
from cxrad.model.fastflow import CxrFastflow, build_fastflow
from cxrad.model.padim import build_padim
from cxrad.model.patchcore import CxrPatchcore, build_patchcore

__all__ = [
    "CxrFastflow",
    "CxrPatchcore",
    "build_draem",
    "build_fastflow",
    "build_padim",
    "build_patchcore",
]
