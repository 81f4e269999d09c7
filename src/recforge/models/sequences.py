"""What every sequence model shares: each user's training items in time order.

`SequenceModel` is the base of models that read a user's behaviour as an ordered sequence
(`transition`, `gru4rec`, `sasrec`). It declares `Capability.SEQUENCES`, so histories given
to `score_histories` keep their order (oldest first, repeats included) and a known user's
events since training continue their sequence in `recommend` and in the service. At `fit`
it keeps each user's training sequence (`Interactions.sequences`: by timestamp, then item
index) in `sequence_indptr_` / `sequence_items_`, saved with the weights; `user_history(u)`
returns it. A subclass scores users from their sequences (`score_sequences`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from recforge.data.interactions import Interactions
from recforge.models.base import Recommender
from recforge.models.capabilities import Capability

__all__ = ["SequenceModel", "last_items"]


class SequenceModel(Recommender):
    """Base of sequence models: ordered training histories, and scores from sequences."""

    capabilities: ClassVar[frozenset[Capability]] = Recommender.capabilities | {Capability.SEQUENCES}

    sequence_indptr_: np.ndarray
    sequence_items_: np.ndarray

    def _keep_sequences(self, interactions: Interactions) -> None:
        """Store the users' time-ordered training items (call from `_fit`)."""
        self.sequence_indptr_, self.sequence_items_ = interactions.sequences()
        self.sequence_items_ = self.sequence_items_.astype(np.int64)

    def user_history(self, user_idx: int) -> np.ndarray:
        """The user's training items, oldest first."""
        return self.sequence_items_[self.sequence_indptr_[user_idx]:self.sequence_indptr_[user_idx + 1]]

    def user_sequences(self, user_idx: np.ndarray) -> list[np.ndarray]:
        """The training sequences of several users."""
        return [self.user_history(int(u)) for u in np.asarray(user_idx, np.int64)]

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        user_idx = np.asarray(user_idx, np.int64)
        if item_idx is not None:
            return self._score_pairs_via_rows(user_idx, np.asarray(item_idx, np.int64))
        return np.asarray(self.score_sequences(self.user_sequences(user_idx)), np.float32)

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        return self.score_sequences(histories)

    def score_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        """(len(sequences), n_items) scores of the next item after each ordered sequence."""
        raise NotImplementedError

    def _sequence_state(self) -> dict[str, np.ndarray]:
        return {"sequence_indptr": self.sequence_indptr_, "sequence_items": self.sequence_items_}

    def _restore_sequences(self, state: dict[str, Any]) -> None:
        self.sequence_indptr_ = np.asarray(state["sequence_indptr"], np.int64)
        self.sequence_items_ = np.asarray(state["sequence_items"], np.int64)
        if len(self.sequence_indptr_) != self.n_users + 1 or self.sequence_indptr_[-1] != len(self.sequence_items_):
            raise ValueError("stored sequences do not match the users")


def last_items(sequences: list[np.ndarray]) -> np.ndarray:
    """The last item of each sequence, -1 for an empty one.

    >>> last_items([np.array([3, 1]), np.array([], np.int64)]).tolist()
    [1, -1]
    """
    return np.array([s[-1] if len(s) else -1 for s in sequences], np.int64)
