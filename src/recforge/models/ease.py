"""EASE^R: the closed-form shallow linear autoencoder of Steck (2019).

H. Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019. The item-item
weights ``B`` minimize ``‖X − XB‖² + λ‖B‖²`` subject to ``diag(B) = 0``, whose solution is
``B = I − P · diag(1 / diag(P))`` with ``P = (XᵀX + λI)⁻¹``. Scores are ``X_u · B``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.models.base import Recommender, history_matrix


class EASEConfig(ModelConfig):
    """Settings of `EASE`."""

    regularization: float = Field(600.0, gt=0.0)
    """λ: L2 penalty on the item-item weights (added to the Gram matrix's diagonal)."""
    implicit: bool = True
    """True: binary interactions; False: rating values as interaction weights (when present)."""


class EASE(Recommender):
    """Embarrassingly shallow autoencoder (Steck 2019): one dense item × item matrix.

    Training inverts the (n_items × n_items) Gram matrix once, so memory and time grow with
    n_items² and n_items³; it suits catalogues up to tens of thousands of items.

    >>> from recforge.testing import tiny_interactions
    >>> model = EASE(regularization=10.0).fit(tiny_interactions()[0])
    >>> model.weights_.shape
    (20, 20)
    """

    name = "ease"
    config_class = EASEConfig
    parallelism = "a closed-form solve: one item × item inverse, spread over the CPU's cores by the BLAS library"
    config: EASEConfig

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        self._x = X = self._input()
        gram = (X.T @ X).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.config.regularization
        P = np.linalg.inv(gram)
        B = P / -np.diag(P)[None, :]
        B[np.diag_indices_from(B)] = 0.0
        self.weights_ = B.astype(np.float32)

    def _input(self) -> sp.csr_matrix:
        """The users × items matrix X: binary, or ratings with ``implicit=False``."""
        X = self.seen_.astype(np.float32)
        if not self.config.implicit and self._train_ratings is not None:
            X.data = np.asarray(self._train_ratings, np.float32)
        return X

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        rows = self._x[np.asarray(user_idx, np.int64)]
        if item_idx is None:
            return np.asarray(rows @ self.weights_, np.float32)
        # paired scores: Σ_j x_uj B[j, i] over each user's stored entries only
        pair = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        item = np.asarray(item_idx, np.int64)[pair]
        vals = rows.data * self.weights_[rows.indices, item]
        return np.bincount(pair, vals, minlength=rows.shape[0]).astype(np.float32)

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        """Exact fold-in: ``x B`` for the binary history row x (what `score` does for a user)."""
        return np.asarray(history_matrix(histories, self.n_items) @ self.weights_, np.float32)

    def _history_contributions(self, user_idx: int, item_idx: np.ndarray) -> np.ndarray:
        x = self._x[[user_idx]].toarray()[0]
        return (x[None, :] * self.weights_[:, item_idx].T).astype(np.float32)

    def similar_idx(self, item_idx: np.ndarray) -> np.ndarray:
        """(len(item_idx), n_items): column i of B, the weights that predict item i."""
        return np.ascontiguousarray(self.weights_[:, np.asarray(item_idx, np.int64)].T)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.weights_ = state["weights"]
        self._x = self._input()
