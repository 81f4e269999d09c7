"""Every registered model runs every property of the Recommender contract, each its own test.

Nothing to opt into: a model added to the registry is collected here with its
`TINY_SETTINGS` (or its defaults), and so is each configuration listed in `TINY_VARIANTS`.
Each (model, variant, task) is fitted once per module. Test IDs read
``test_conformance[ease-no_seen_items]``; a variant or the rating task is added to the model
part: ``[ncf.gmf-known_answer]``, ``[mf-rating-rating_clipping]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from recforge.models.popularity import Popularity
from recforge.registry import get_model_class
from recforge.testing.conformance import (
    PROPERTIES,
    Case,
    check_property,
    check_recommender,
    conformance_cases,
    fit_case,
)

Fitted = Callable[[str, str, str], Case]


def _params() -> list:
    params = []
    for name, variant, task in conformance_cases():
        cls = get_model_class(name)
        prefix = "-".join(p for p in (f"{name}.{variant}" if variant else name, task) if p != "topn")
        params += [pytest.param(name, variant, task, prop, id=f"{prefix}-{prop}")
                   for prop, spec in PROPERTIES.items() if spec.applies(cls, task)]
    return params


PARAMS = _params()


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    """Fitted tiny-data cases by (model name, variant, task), each fitted on first use."""
    cache: dict[tuple[str, str, str], Case] = {}

    def get(name: str, variant: str, task: str) -> Case:
        if (name, variant, task) not in cache:
            cache[name, variant, task] = fit_case(name, task, variant)
        return cache[name, variant, task]

    return get


@pytest.mark.parametrize(("name", "variant", "task", "prop"), PARAMS)
def test_conformance(fitted: Fitted, name: str, variant: str, task: str, prop: str) -> None:
    check_property(fitted(name, variant, task), prop)


def test_every_registered_model_and_property_is_collected() -> None:
    ids = {p.id for p in PARAMS}
    assert {"ease-no_seen_items", "mf-rating-rating_clipping", "ncf.gmf-known_answer",
            "autorec.user-rating-save_load_identical", "transition-sequence_known_answer"} <= ids
    # properties that do not concern a model are left out, not skipped
    assert not {"popularity-known_answer", "ease-rating_clipping", "mf.bce-rating-no_seen_items",
                "transition-known_answer", "ease-sequence_known_answer"} & ids
    assert {name for name, _, _ in conformance_cases()} >= {"popularity", "ease", "hybrid", "two_tower", "deepfm"}


class _Careless(Popularity):
    """Popularity that breaks the contract: noisy scores, seen items recommended."""

    def score(self, user_idx, item_idx=None):
        scores = super().score(user_idx, item_idx)
        return scores + np.random.default_rng().random(scores.shape, dtype=np.float32)

    def recommend_idx(self, user_idx, k=10, exclude_seen=True, candidates=None, extra_seen=None, exact=False):
        return super().recommend_idx(user_idx, k, False, candidates)


def test_a_careless_model_fails_every_property_it_breaks_and_says_which() -> None:
    with pytest.raises(AssertionError) as failure:
        check_recommender(_Careless)
    message = str(failure.value)
    for prop in ("no_seen_items", "deterministic_refit", "paired_scores_match_rows",
                 "scores_independent_of_batch", "save_load_identical"):
        assert f"popularity (topn) fails {prop!r}" in message
    assert "'shapes_and_finite'" not in message and "'config_round_trip'" not in message


def test_a_model_declared_personalized_must_pass_the_known_answer() -> None:
    with pytest.raises(AssertionError, match=r"fails 'known_answer'.*held-out"):
        check_recommender(Popularity, personalized=True)
    check_recommender(Popularity)
