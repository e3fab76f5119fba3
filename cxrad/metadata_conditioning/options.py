"""Which part of a detector each ``metadata_conditioning`` option conditions.

``film_normative`` does both: FiLM on the backbone features (changes the ranking inside a metadata group) and the
normative standardisation of the anomaly map (removes what metadata still explains in the output).
``film_stratified`` puts the same FiLM on the features and calibrates the image scores per metadata group.
"""

from __future__ import annotations

from collections.abc import Mapping

OPTIONS = ("none", "stratified", "film", "normative", "film_normative", "film_stratified")
FEATURE_OPTIONS = ("film", "film_normative", "film_stratified")
MAP_OPTIONS = ("normative", "film_normative")
CALIBRATION_OPTIONS = ("stratified", "film_stratified")
# Conditioning wholly inside the model: its raw score is already the score the threshold was fitted on.
MODEL_OPTIONS = tuple(option for option in OPTIONS if option not in MAP_OPTIONS + CALIBRATION_OPTIONS)


def conditions_features(conditioning: Mapping[str, object] | None) -> bool:
    """Whether the option puts a FiLM on the model's features."""
    return bool(conditioning) and conditioning.get("name") in FEATURE_OPTIONS


def conditions_maps(conditioning: Mapping[str, object] | None) -> bool:
    """Whether the option standardises anomaly maps against normal films with the same metadata."""
    return bool(conditioning) and conditioning.get("name") in MAP_OPTIONS


def calibrates_scores(conditioning: Mapping[str, object] | None) -> bool:
    """Whether the option calibrates image scores per metadata group against the normal validation films."""
    return bool(conditioning) and conditioning.get("name") in CALIBRATION_OPTIONS
