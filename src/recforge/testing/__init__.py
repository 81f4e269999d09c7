"""Test helpers shipped with recforge: tiny known-answer data and the model conformance suite."""

from recforge.testing.conformance import check_recommender, tiny_interactions

__all__ = ["check_recommender", "tiny_interactions"]
