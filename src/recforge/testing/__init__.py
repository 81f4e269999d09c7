"""Test helpers shipped with recforge: tiny known-answer data and the model conformance suite."""

from recforge.testing.conformance import (
    PROPERTIES,
    TINY_SETTINGS,
    TINY_VARIANTS,
    Case,
    Property,
    check_property,
    check_recommender,
    conformance_cases,
    fit_case,
    tiny_interactions,
    tiny_model,
)
from recforge.testing.sequences import chain_sequences, tiny_sequences

__all__ = [
    "PROPERTIES", "TINY_SETTINGS", "TINY_VARIANTS", "Case", "Property", "chain_sequences", "check_property",
    "check_recommender", "conformance_cases", "fit_case", "tiny_interactions", "tiny_model", "tiny_sequences",
]
