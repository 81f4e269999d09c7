"""What a model can do beyond the `Recommender` contract, declared once per class.

A model class lists its capabilities in ``capabilities``; callers ask `Recommender.supports`
(the one place they are checked) instead of probing for methods. The base class grants
`FOLD_IN` and `EXPLAIN` to every model (a generic fold-in and nearest-item explanations);
feature models add `COLD_USERS` and `COLD_ITEMS`; sequence models add `SEQUENCES` (histories
are read in order, and a known user's new events continue their sequence); a composite model
narrows its answer to what its parts can do.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Capability"]


class Capability(StrEnum):
    """A capability a model class may declare.

    >>> Capability("cold_users").describe()
    'rank users unknown to it from their features'
    """

    FOLD_IN = "fold_in"
    EXPLAIN = "explain"
    COLD_USERS = "cold_users"
    COLD_ITEMS = "cold_items"
    SEQUENCES = "sequences"

    def describe(self) -> str:
        """What the capability lets a model do, as a verb phrase for messages."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Capability.FOLD_IN: "score users known only by their items (fold-in)",
    Capability.EXPLAIN: "explain its recommendations",
    Capability.COLD_USERS: "rank users unknown to it from their features",
    Capability.COLD_ITEMS: "score items unknown to it from their features",
    Capability.SEQUENCES: "rank from a user's ordered history (sequence models)",
}
