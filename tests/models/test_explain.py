"""Explanations reflect the real computation: removing the named item lowers the score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.models.base import EXPLAIN_COLUMNS
from recforge.registry import create_model
from recforge.testing import tiny_interactions


@pytest.mark.parametrize("name", ["ease", "itemknn"])
def test_removing_the_top_contributor_lowers_the_score_by_its_share(name: str):
    data, _ = tiny_interactions()
    model = create_model(name).fit(data)
    user = data.user_map.ids[0]
    top = model.recommend([user], k=1)["item_id"].iloc[0]
    why = model.explain(user, [top], n=3)
    assert (why["kind"] == "item").all() and len(why) >= 1
    assert (np.diff(why["contribution"].to_numpy()) <= 0).all()
    named = why["source"].iloc[0]
    before = model.predict([user], [top])[0]
    frame = data.to_frame()
    keep = ~((frame["user_id"] == user) & (frame["item_id"] == named))
    data_without = type(data).from_frame(frame[keep], user_map=data.user_map, item_map=data.item_map)
    # the fitted weights stay fixed: only the user's history changes
    model.seen_ = data_without.csr(binary=True)
    if name == "ease":
        model._x = model.seen_.astype(np.float32)
    else:
        model._prepare_values()
        model._prepare_operands()
    after = model.predict([user], [top])[0]
    assert after < before
    assert after == pytest.approx(before - why["contribution"].iloc[0], abs=1e-5)


def test_other_models_name_the_nearest_items_of_the_history():
    data, _ = tiny_interactions()
    model = create_model("popularity").fit(data)
    user = data.user_map.ids[0]
    why = model.explain(user, ["i05"], n=2)
    assert (why["kind"] == "similar_item").all()
    history = set(data.to_frame().query("user_id == @user")["item_id"])
    assert set(why["source"]) <= history
    assert isinstance(why, pd.DataFrame) and list(why.columns) == EXPLAIN_COLUMNS
