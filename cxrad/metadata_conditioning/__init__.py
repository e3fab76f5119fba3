"""Conditioning detectors on patient metadata (age, sex, view): FiLM layers and stratified baselines."""

from cxrad.metadata_conditioning.film import FiLM, MLPFiLM, NormativeFiLM
from cxrad.metadata_conditioning.normative import (
    REFERENCE_FILE,
    GridMapCollector,
    NormativeMap,
    normal_films,
    normative_map_collector,
    reference_scores,
    require_normal_validation,
    save_reference,
)
from cxrad.metadata_conditioning.stratified import GroupCalibration, calibrate_scores

__all__ = [
    "REFERENCE_FILE",
    "FiLM",
    "GridMapCollector",
    "GroupCalibration",
    "NormativeMap",
    "MLPFiLM",
    "NormativeFiLM",
    "calibrate_scores",
    "normal_films",
    "normative_map_collector",
    "reference_scores",
    "require_normal_validation",
    "save_reference",
]
