"""Feature pipeline: encodings, unknown values, state round-trip, cold rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recforge.data.features import FeaturePipeline, age_bucket, entity_features, infer_columns, tokenize
from recforge.errors import ConfigError


@pytest.fixture()
def users() -> pd.DataFrame:
    return pd.DataFrame({
        "age": [15, 23, 41, 67],
        "gender": ["F", "M", "M", "F"],
        "occupation": ["student", "writer", "writer", None],
        "zip": ["90210", "10001", "T8H1N", "9"],
    }, index=["u1", "u2", "u3", "u4"])


@pytest.fixture()
def items() -> pd.DataFrame:
    return pd.DataFrame({
        "title": ["Toy Story (1995)", "Heat (1995)", "Toy Soldiers (1991)"],
        "year": [1990.0, 2000.0, np.nan],
        "genre_Action": [0, 1, 1],
        "genre_Comedy": [1, 0, 0],
        "release_date": pd.to_datetime(["1995-01-01", "1995-01-01", None]),
    }, index=["1", "2", "3"])


def test_infer_columns(users, items):
    assert infer_columns(users) == {"age": "age", "gender": "categorical", "occupation": "categorical",
                                    "zip": "zip"}
    assert infer_columns(items) == {"title": "text", "year": "numeric", "genre": "multihot"}


def test_categorical_one_hot_with_unknown_slot(users):
    pipe = FeaturePipeline({"gender": "categorical", "occupation": "categorical"}).fit(users)
    assert pipe.feature_names() == ["gender=<unknown>", "gender=F", "gender=M",
                                    "occupation=<unknown>", "occupation=student", "occupation=writer"]
    X = pipe.transform(users).toarray()
    np.testing.assert_array_equal(X[0], [0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(X[3], [0, 1, 0, 1, 0, 0])  # missing occupation → unknown
    new = pd.DataFrame({"gender": ["X"], "occupation": ["astronaut"]}, index=["n"])
    np.testing.assert_array_equal(pipe.transform(new).toarray()[0], [1, 0, 0, 1, 0, 0])


def test_age_buckets_and_zip_prefix(users):
    assert age_bucket(15) == "<18" and age_bucket(24) == "18-24" and age_bucket(56) == "56+"
    assert age_bucket(None) == "<unknown>"
    pipe = FeaturePipeline({"age": "age", "zip": "zip"}, zip_prefix=1).fit(users)
    names = pipe.feature_names()
    assert names[:4] == ["age=<unknown>", "age=18-24", "age=35-44", "age=56+"] or "age=<18" in names
    X = pipe.transform(users).toarray()
    assert X[:, names.index("zip=9")].tolist() == [1, 0, 0, 1]
    assert X[:, names.index("zip=T")].tolist() == [0, 0, 1, 0]
    assert X.sum(axis=1).tolist() == [2, 2, 2, 2]  # one slot per field per row


def test_missing_columns_and_rows_go_unknown(users):
    pipe = FeaturePipeline().fit(users)
    X = pipe.transform(pd.DataFrame(index=["a"]))  # no columns at all
    names = pipe.feature_names()
    assert {names[j] for j in X.indices} == {"age=<unknown>", "gender=<unknown>", "occupation=<unknown>",
                                             "zip=<unknown>"}
    rows = pipe.transform(users, index=["u2", "nobody"]).toarray()
    np.testing.assert_array_equal(rows[0], pipe.transform(users.loc[["u2"]]).toarray()[0])
    assert rows[1, [names.index("gender=<unknown>")]] == 1


def test_multihot_numeric_and_text(items):
    pipe = FeaturePipeline().fit(items)
    names = pipe.feature_names()
    X = pipe.transform(items).toarray()
    assert X[:, names.index("genre=Action")].tolist() == [0, 1, 1]
    year = X[:, names.index("year")]
    np.testing.assert_allclose(year[:2], [-1.0, 1.0])  # z-score: mean 1995, std 5
    assert year[2] == 0.0  # missing → the mean
    text = X[:, [j for j, n in enumerate(names) if n.startswith("title:")]]
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)
    assert text[0] @ text[2] > 0 and text[0] @ text[1] == 0  # "toy" shared; no shared word
    assert tokenize("Toy Story (1995)") == ["toy", "story"]


def test_multihot_from_strings():
    frame = pd.DataFrame({"genres": ["Action|Comedy", "Drama", None]}, index=["a", "b", "c"])
    pipe = FeaturePipeline().fit(frame)
    assert pipe.feature_names() == ["genres=Action", "genres=Comedy", "genres=Drama"]
    X = pipe.transform(pd.DataFrame({"genres": ["Comedy|Western"]}, index=["n"])).toarray()
    np.testing.assert_array_equal(X[0], [0, 1, 0])


def test_normalize_fields_gives_unit_blocks(items):
    pipe = FeaturePipeline(normalize_fields=True).fit(items)
    X = pipe.transform(items).toarray()
    field = pipe.field_of_column()
    for k, f in enumerate(pipe.fields_):
        if f.kind in ("multihot", "text"):
            np.testing.assert_allclose(np.linalg.norm(X[:, field == k], axis=1), 1.0, rtol=1e-5)


def test_state_round_trip_without_pickle(users, items):
    for frame in (users, items):
        pipe = FeaturePipeline().fit(frame)
        arrays = pipe.to_arrays("p.")
        assert all(a.dtype == np.uint8 for a in arrays.values())
        again = FeaturePipeline.from_arrays(arrays, "p.")
        assert (abs(again.transform(frame) - pipe.transform(frame))).max() == 0
        assert again.feature_names() == pipe.feature_names()
    assert FeaturePipeline.from_arrays({}, "p.") is None


def test_entity_features_fits_on_given_ids_only(users):
    pipe, X = entity_features(users, ["u1", "u2", "ghost"], zip_prefix=1)
    assert X.shape == (3, pipe.n_features) and sp.issparse(X)
    assert "occupation=writer" in pipe.feature_names()
    assert entity_features(None, ["u1"]) == (None, None)


def test_bad_config():
    with pytest.raises(ConfigError):
        FeaturePipeline({"a": "nonsense"})
    with pytest.raises(ConfigError):
        FeaturePipeline().transform(pd.DataFrame())


def test_ml100k_features(ml100k_raw):
    from recforge.data.movielens import load_movielens

    data = load_movielens("movielens-100k", data_dir=ml100k_raw)
    pipe, X = entity_features(data.item_features, data.item_map.ids)
    assert X.shape[0] == data.n_items and [f.name for f in pipe.fields_] == ["title", "year", "genre"]
    _upipe, U = entity_features(data.user_features, data.user_map.ids)
    assert U.shape[0] == data.n_users and (np.asarray(U.sum(axis=1)).ravel() == 4).all()
