"""Which part of a detector each ``metadata_conditioning`` option conditions.

``film_normative`` does both: FiLM on the backbone features (changes the ranking inside a metadata group) and the
normative standardisation of the anomaly map (removes what metadata still explains in the output).
"""

from __future__ import annotations

from collections.abc import Mapping

OPTIONS = ("none", "stratified", "film", "normative", "film_normative")
FEATURE_OPTIONS = ("film", "film_normative")
MAP_OPTIONS = ("normative", "film_normative")


def conditions_features(conditioning: Mapping[str, object] | None) -> bool:
    """Whether the option puts a FiLM on the model's features."""
    return bool(conditioning) and conditioning.get("name") in FEATURE_OPTIONS


def conditions_maps(conditioning: Mapping[str, object] | None) -> bool:
    """Whether the option standardises anomaly maps against normal films with the same metadata."""
    return bool(conditioning) and conditioning.get("name") in MAP_OPTIONS
