"""Conditioning detectors on patient metadata (age, sex, view): FiLM layers and stratified baselines."""

from cxrad.metadata_conditioning.apply import calibrate_scores
from cxrad.metadata_conditioning.film import FiLM, MLPFiLM, NormativeFiLM
from cxrad.metadata_conditioning.normative import (
    REFERENCE_FILE,
    GridMapCollector,
    NormativeMap,
    normative_map_collector,
    reference_scores,
    require_normal_validation,
    save_reference,
)
from cxrad.metadata_conditioning.reference import (
    CALIBRATION,
    REFERENCE,
    ROLE_COLUMN,
    SELECTION,
    assign_val_roles,
    calibration_rows,
    films_with_role,
    role_counts,
)
from cxrad.metadata_conditioning.stratified import GroupCalibration, used_covariates

__all__ = [
    "used_covariates",
    "CALIBRATION",
    "REFERENCE",
    "ROLE_COLUMN",
    "SELECTION",
    "assign_val_roles",
    "calibration_rows",
    "films_with_role",
    "role_counts",
    "REFERENCE_FILE",
    "FiLM",
    "GridMapCollector",
    "GroupCalibration",
    "NormativeMap",
    "MLPFiLM",
    "NormativeFiLM",
    "calibrate_scores",
    "normative_map_collector",
    "reference_scores",
    "require_normal_validation",
    "save_reference",
]
