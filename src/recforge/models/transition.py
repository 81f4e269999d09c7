"""First-order Markov transitions: the next item predicted from the last one.

The baseline of sequential recommendation (e.g. the Markov-chain half of Rendle et al.,
"Factorizing Personalized Markov Chains for Next-Basket Recommendation", WWW 2010, without
the factorization). From each user's time-ordered training sequence it counts the
transitions ``c(i, j)``: item ``i`` directly followed by item ``j``. The score of item ``j``
after a sequence whose last item is ``i`` is the transition probability smoothed towards
the popularity distribution ``p(j)`` (a Dirichlet prior of `smoothing` pseudo-counts)::

    score(j | i) = (c(i, j) + β · p(j)) / (c(i) + β),    c(i) = Σ_j c(i, j)

so an item never followed by anything (``c(i) = 0``) and an empty history score ``p(j)``,
the most-popular ranking. Only the last item matters: earlier items of the history do not
change the scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.models.base import EXPLAIN_COLUMNS, as_list
from recforge.models.sequences import SequenceModel, last_items

__all__ = ["Transition", "TransitionConfig", "transition_counts"]


class TransitionConfig(ModelConfig):
    """Settings of `Transition`."""

    smoothing: float = Field(10.0, gt=0.0)
    """β: pseudo-counts of the popularity prior added to each item's transition counts."""


class Transition(SequenceModel):
    """First-order "last item → next item" counts backed off to popularity (see the module).

    >>> from recforge.testing import tiny_interactions
    >>> model = Transition().fit(tiny_interactions()[0])
    >>> model.counts_.shape
    (20, 20)
    """

    name = "transition"
    parallelism = "counting transitions is one pass over the data"
    config_class = TransitionConfig
    config: TransitionConfig

    counts_: sp.csr_matrix
    out_counts_: np.ndarray
    prior_: np.ndarray

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        self._keep_sequences(interactions)
        self.counts_ = transition_counts(self.sequence_indptr_, self.sequence_items_, self.n_items)
        self._prepare()

    def _prepare(self) -> None:
        """Row sums and the popularity prior (derived from the counts and the training data)."""
        self.out_counts_ = np.asarray(self.counts_.sum(axis=1), np.float64).ravel()
        pop = np.asarray(self.item_popularity_, np.float64)
        self.prior_ = pop / pop.sum() if pop.sum() > 0 else np.full(self.n_items, 1.0 / self.n_items)

    def score_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        return self.next_item_scores(last_items(sequences))

    def next_item_scores(self, last: np.ndarray) -> np.ndarray:
        """(len(last), n_items) float32 scores after each last item (-1: no history)."""
        beta = self.config.smoothing
        last = np.asarray(last, np.int64)
        out = np.broadcast_to(self.prior_, (len(last), self.n_items)).astype(np.float64)
        has = np.flatnonzero(last >= 0)
        if len(has):
            src = last[has]
            counts = self.counts_[src].toarray()
            out[has] = (counts + beta * self.prior_[None, :]) / (self.out_counts_[src] + beta)[:, None]
        return out.astype(np.float32)

    def explain(self, user_id: Any, item_ids: Any, n: int = 3) -> pd.DataFrame:
        """Why `user_id` gets each of `item_ids`: the last item of their training sequence.

        One ``kind="item"`` row per item, naming the last training item and its contribution
        by removal: the score minus the score of the sequence without that last event (whose
        last item is then the one before it; popularity when none is left). Removing it
        therefore changes the score by exactly ``-contribution``; a negative contribution
        means the last item made the recommended item less likely than the one before did.
        Earlier items do not change a first-order score, so they are never named (`n` is
        accepted for the common signature).
        """
        self._check_fitted()
        u = int(self.user_map_.to_idx([str(user_id)], what="user")[0])
        items = self.item_map_.to_idx([str(i) for i in as_list(item_ids)], what="item")
        history = self.user_history(u)
        if not len(history) or not len(items):
            return pd.DataFrame([], columns=EXPLAIN_COLUMNS)
        before, after = self.score_sequences([history[:-1], history])
        source = str(self.item_map_.ids[history[-1]])
        title = self.item_titles().get(source, "")
        rows = [(str(self.item_map_.ids[i]), "item", source, title, float(after[i] - before[i]), 1) for i in items]
        return pd.DataFrame(rows, columns=EXPLAIN_COLUMNS)

    def _get_state(self) -> dict[str, np.ndarray]:
        c = self.counts_
        return {"counts_data": c.data, "counts_indices": c.indices, "counts_indptr": c.indptr,
                **self._sequence_state()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        n = self.seen_.shape[1]
        self.counts_ = sp.csr_matrix((state["counts_data"], state["counts_indices"], state["counts_indptr"]),
                                     shape=(n, n))
        self._restore_sequences(state)
        self._prepare()


def transition_counts(indptr: np.ndarray, items: np.ndarray, n_items: int) -> sp.csr_matrix:
    """(n_items, n_items) float32 CSR: entry (i, j) counts item i directly followed by item j.

    `indptr`, `items`: CSR-style sequences (user u's items are ``items[indptr[u]:indptr[u+1]]``).

    >>> transition_counts(np.array([0, 3, 5]), np.array([0, 1, 0, 1, 2]), 3).toarray().tolist()
    [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    """
    indptr = np.asarray(indptr, np.int64)
    items = np.asarray(items, np.int64)
    follows = np.ones(len(items), bool)  # position p is followed by p + 1 in the same sequence
    ends = indptr[1:][np.diff(indptr) > 0] - 1
    follows[ends] = False
    src = np.flatnonzero(follows)
    counts = sp.csr_matrix((np.ones(len(src), np.float32), (items[src], items[src + 1])),
                           shape=(n_items, n_items))
    counts.sum_duplicates()
    return counts
