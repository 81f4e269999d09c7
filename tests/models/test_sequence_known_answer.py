"""Sequences whose next item is determined by the last one: order is the whole signal.

`chain_sequences` (200 users, 100 items, walks along one random item cycle): every model
with `Capability.SEQUENCES` — registered now or later, with its `TINY_SETTINGS` — must put
the determined next item in its top 10 for nearly every user, while order-free models,
which see each user's items as a set, cannot tell which end of which chain comes next.
"""

import numpy as np
import pytest

from recforge.data.interactions import Interactions
from recforge.models.base import Recommender
from recforge.models.capabilities import Capability
from recforge.registry import available_models, get_model_class
from recforge.testing import chain_sequences, tiny_model

SEQUENCE_MODELS = sorted(n for n in available_models() if Capability.SEQUENCES in get_model_class(n).capabilities)


@pytest.fixture(scope="module")
def chains() -> tuple[Interactions, np.ndarray]:
    return chain_sequences(seed=0)


def _hr10(model: Recommender, data: Interactions, following: np.ndarray) -> float:
    items, _ = model.recommend_idx(np.arange(data.n_users), k=10)
    return float(np.mean((items == following[:, None]).any(axis=1)))


def test_the_data_has_a_known_answer_the_users_have_not_seen(chains):
    data, following = chains
    seen = data.csr(binary=True).toarray() > 0
    assert not seen[np.arange(data.n_users), following].any()
    assert "transition" in SEQUENCE_MODELS


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_sequence_models_find_the_item_that_follows_the_last_one(chains, name):
    data, following = chains
    assert _hr10(tiny_model(name).fit(data), data, following) >= 0.9


@pytest.mark.parametrize("name", ["ease", "itemknn", "ials"])
def test_order_free_models_cannot(chains, name):
    data, following = chains
    assert _hr10(tiny_model(name).fit(data), data, following) <= 0.6
