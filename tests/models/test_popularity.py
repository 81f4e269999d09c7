import numpy as np

from recforge.registry import create_model
from recforge.testing import tiny_interactions


def test_popularity_ranks_by_count():
    data, _ = tiny_interactions()
    model = create_model("popularity").fit(data)
    counts = data.item_counts()
    np.testing.assert_array_equal(model.score(np.array([0]))[0], counts)


def test_popularity_rating_is_damped_item_mean():
    data, _ = tiny_interactions()
    model = create_model("popularity", task="rating", damping=0.0).fit(data)
    item = 3
    mask = data.item_idx == item
    assert np.isclose(model.score(np.array([0]), np.array([item]))[0], data.ratings[mask].mean())
