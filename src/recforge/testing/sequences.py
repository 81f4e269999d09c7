"""Known-answer sequence data: the next item is determined by the last one.

`chain_sequences` lays the items on one random cycle ``f`` (item → next item). Each user's
time-ordered sequence is made of short walks along the cycle ("chains"), started at random
places that neither overlap nor touch, so the user's next item is ``f(last item)``, an item
the user has not seen. A sequence model learns
``f`` from the transitions inside the chains and finds that item first; an order-free model
sees only the set of items, where both neighbours of every chain — about two per chain —
are equally plausible, so it cannot tell which one comes next.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recforge.data.interactions import Interactions

__all__ = ["chain_sequences", "tiny_sequences"]


def chain_sequences(
    n_users: int = 200, n_items: int = 100, n_chains: int = 10, max_length: int = 4, seed: int = 0
) -> tuple[Interactions, np.ndarray]:
    """Sequences of chains along a random item cycle, and each user's determined next item.

    Returns (interactions, next_item): ``next_item[u]`` is the item index that follows user
    ``u``'s last item on the cycle (never one of the user's items). Every user has
    `n_chains` chains of 2 to `max_length` items (random lengths, so the last chain looks
    like any other) in random order; timestamps give the order. IDs are zero-padded, so
    indices are the numbers in the IDs.
    """
    if max_length < 2 or n_items < n_chains * (max_length + 1):
        raise ValueError(f"{n_items} items cannot hold {n_chains} chains of up to {max_length} items apart")
    rng = np.random.default_rng(seed)
    cycle = rng.permutation(n_items)  # f(cycle[p]) = cycle[p + 1 mod n]
    users, items, nxt = [], [], np.empty(n_users, np.int64)
    for u in range(n_users):
        lengths = rng.integers(2, max_length + 1, n_chains)
        spare = n_items - int(lengths.sum()) - n_chains  # one unseen item after each chain at least
        extra = np.bincount(rng.integers(0, n_chains, spare), minlength=n_chains)
        sizes = lengths + 1 + extra  # chain c, then its gap, in order around the cycle
        starts = rng.integers(n_items) + np.concatenate([[0], np.cumsum(sizes)[:-1]])
        for c in rng.permutation(n_chains):  # the order in time
            pos = (starts[c] + np.arange(lengths[c])) % n_items
            items.append(cycle[pos])
        nxt[u] = cycle[(pos[-1] + 1) % n_items]
        users.append(np.full(int(lengths.sum()), u))
    width = len(str(max(n_users, n_items) - 1))
    frame = pd.DataFrame({"user_id": [f"u{u:0{width}d}" for u in np.concatenate(users)],
                          "item_id": [f"i{i:0{width}d}" for i in np.concatenate(items)]})
    frame["timestamp"] = np.arange(len(frame), dtype=np.int64) + 1_000_000
    inter = Interactions.from_frame(frame)
    if inter.n_items != n_items:  # indices equal the numbers in the IDs only when every item occurs
        raise ValueError("some items never occur: use more users or fewer items")
    return inter, nxt


def tiny_sequences(seed: int = 0) -> tuple[Interactions, np.ndarray]:
    """The conformance suite's sequence data: 24 users, 20 items, three chains of 2–4 items
    each (see `chain_sequences`)."""
    return chain_sequences(n_users=24, n_items=20, n_chains=3, max_length=4, seed=seed)
