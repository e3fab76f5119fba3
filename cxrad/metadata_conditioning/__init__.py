"""Conditioning detectors on patient metadata (age, sex, view): FiLM layers and stratified baselines."""

from cxrad.metadata_conditioning.film import FiLM, MLPFiLM, NormativeFiLM

__all__ = ["FiLM", "MLPFiLM", "NormativeFiLM"]
