"""Cold-start splits: hold out whole users or whole items.

`cold_user_split` moves every interaction of a seeded random `test_ratio` share of the users
to test; `cold_item_split` does the same for items. Like the other splits they return
``(train, test)`` on the input's ID maps (so files and indices line up). A model must not
know the held-out users/items, so train on ``train.compact()`` — it drops them from the ID
space — and reach them through their features (``recommend_cold`` / ``score_new_items``).

`cold_user_folds` / `cold_item_folds` give k disjoint held-out groups (k-fold
cross-validation over users or items), for paired tests with every user evaluated once.
"""

from __future__ import annotations

import numpy as np

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError

__all__ = ["COLD_METHODS", "cold_item_folds", "cold_item_split", "cold_split", "cold_user_folds", "cold_user_split",
           "held_out_ids"]

Split = tuple[Interactions, Interactions]
COLD_METHODS = ("cold-users", "cold-items")


def _held_out(n: int, active: np.ndarray, test_ratio: float, seed: int) -> np.ndarray:
    """Boolean mask over `n` entities: a random share of the active ones (at least one)."""
    if not 0.0 < test_ratio < 1.0:
        raise ConfigError(f"test ratio must be between 0 and 1 (exclusive), got {test_ratio}")
    candidates = np.flatnonzero(active)
    n_test = int(np.rint(len(candidates) * test_ratio))
    n_test = min(max(n_test, 1), max(len(candidates) - 1, 0))
    chosen = np.random.default_rng(seed).permutation(candidates)[:n_test]
    mask = np.zeros(n, bool)
    mask[chosen] = True
    return mask


def cold_user_split(inter: Interactions, test_ratio: float = 0.15, seed: int = 42) -> Split:
    """All interactions of a random `test_ratio` share of the users (at least one) go to test.

    Only users with interactions are drawn; at least one user stays in train.
    """
    held = _held_out(inter.n_users, inter.user_counts() > 0, test_ratio, seed)
    test = held[inter.user_idx]
    return inter.subset(~test), inter.subset(test)


def cold_item_split(inter: Interactions, test_ratio: float = 0.15, seed: int = 42) -> Split:
    """All interactions with a random `test_ratio` share of the items (at least one) go to test."""
    held = _held_out(inter.n_items, inter.item_counts() > 0, test_ratio, seed)
    test = held[inter.item_idx]
    return inter.subset(~test), inter.subset(test)


def _folds(n: int, active: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    if k < 2:
        raise ConfigError(f"need at least 2 folds, got {k}")
    order = np.random.default_rng(seed).permutation(np.flatnonzero(active))
    masks = []
    for part in np.array_split(order, k):
        mask = np.zeros(n, bool)
        mask[part] = True
        masks.append(mask)
    return masks


def cold_user_folds(inter: Interactions, k: int = 5, seed: int = 42) -> list[Split]:
    """k cold-user splits whose held-out user groups partition the active users."""
    return [(inter.subset(~m[inter.user_idx]), inter.subset(m[inter.user_idx]))
            for m in _folds(inter.n_users, inter.user_counts() > 0, k, seed)]


def cold_item_folds(inter: Interactions, k: int = 5, seed: int = 42) -> list[Split]:
    """k cold-item splits whose held-out item groups partition the active items."""
    return [(inter.subset(~m[inter.item_idx]), inter.subset(m[inter.item_idx]))
            for m in _folds(inter.n_items, inter.item_counts() > 0, k, seed)]


def held_out_ids(train: Interactions, test: Interactions, side: str = "user") -> np.ndarray:
    """External IDs present in `test` but absent from `train` (the cold users or items)."""
    if side not in ("user", "item"):
        raise ConfigError(f"side must be 'user' or 'item', got {side!r}")
    if side == "user":
        in_test, in_train = test.user_counts() > 0, train.user_counts() > 0
        ids = test.user_map.ids
    else:
        in_test, in_train = test.item_counts() > 0, train.item_counts() > 0
        ids = test.item_map.ids
    return ids[in_test & ~in_train]


def cold_split(inter: Interactions, method: str, test_ratio: float = 0.15, seed: int = 42) -> Split:
    """Dispatch by name: ``cold-users`` or ``cold-items``."""
    if method == "cold-users":
        return cold_user_split(inter, test_ratio, seed)
    if method == "cold-items":
        return cold_item_split(inter, test_ratio, seed)
    raise ConfigError(f"unknown cold split {method!r} (use {', '.join(COLD_METHODS)})")
