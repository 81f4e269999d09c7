"""Users unknown to the model (fold-in of their events, feature models) and the models' own explanations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.registry import create_model, load_model
from recforge.testing import tiny_interactions


def featured_tiny() -> Interactions:
    """Two communities (users u00-u11 like i00-i09, u12-u23 like i10-i19); gender F/M follows them."""
    data, _ = tiny_interactions()
    items = pd.DataFrame({"title": [f"Item {i}" for i in data.item_map.ids],
                          "genre_A": [1] * 10 + [0] * 10, "genre_B": [0] * 10 + [1] * 10},
                         index=data.item_map.ids)
    users = pd.DataFrame({"gender": ["F"] * 12 + ["M"] * 12, "age": [20, 40] * 12}, index=data.user_map.ids)
    return Interactions.from_frame(data.to_frame(), user_features=users, item_features=items)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    data = featured_tiny()
    root = tmp_path_factory.mktemp("fold")
    out = {}
    for name in ("ease", "ials", "demographic_popularity", "content"):
        config = {"embedding_dim": 8, "epochs": 5} if name == "ials" else {}
        out[name] = create_model(name, **config).fit(data).save(root / name)
    return out


def _ids(body: dict) -> list[str]:
    return [it["item_id"] for it in body["items"]]


# ---------------------------------------------------------------------- fold-in
@pytest.mark.parametrize("name", ["ease", "ials"])
def test_unknown_user_with_events_is_folded_in(make_client, artifacts: dict[str, Path], name: str):
    client = make_client(artifacts[name])
    model = load_model(artifacts[name])
    assert client.get("/v1/users/newbie/recommendations?k=5").json()["fallback"] == "popularity"
    events = ["i00", "i01", "i02", "i03"]
    client.post("/v1/events", json={"events": [{"user_id": "newbie", "item_id": i} for i in events]
                                    + [{"user_id": "newbie", "item_id": "not-in-the-model"}]})
    body = client.get("/v1/users/newbie/recommendations?k=5").json()
    assert body["fallback"] == "fold_in"
    ids = _ids(body)
    assert len(ids) == 5 and not set(ids) & set(events)
    assert set(ids[:3]) <= {f"i{i:02d}" for i in range(4, 10)}  # the rest of the community comes first
    expected = model.score_histories([model.item_map_.lookup(events)])[0]
    assert [it["score"] for it in body["items"]] == pytest.approx(expected[model.item_map_.lookup(ids)].tolist(),
                                                                  rel=1e-5)
    # explanations name their own events; exclude_seen=false lets them back into the ranking
    explained = client.get("/v1/users/newbie/recommendations?k=5&explain=true").json()["items"]
    assert all(it["explanation"]["reason"] == "similar_to_history" for it in explained)
    assert {b["item_id"] for it in explained for b in it["explanation"]["because"]} <= set(events)
    with_seen = client.get("/v1/users/newbie/recommendations?k=5&exclude_seen=false").json()["items"]
    assert with_seen[0]["score"] == pytest.approx(float(expected.max()), rel=1e-5)
    # the batch endpoint agrees, and counts the fallback
    batch = client.post("/v1/recommendations", json={"user_ids": ["newbie", "u00"], "k": 5}).json()
    assert [r["fallback"] for r in batch["results"]] == ["fold_in", None]
    assert _ids(batch["results"][0]) == ids
    assert 'recforge_recommendation_fallbacks_total{kind="fold_in"} 4.0' in client.get("/metrics").text  # 3 GETs + 1


def test_session_is_the_models_fold_in(make_client, artifacts: dict[str, Path]):
    client = make_client(artifacts["ease"])
    model = load_model(artifacts["ease"])
    body = client.post("/v1/recommendations", json={"items": ["i10", "i11"], "k": 3}).json()
    result = body["results"][0]
    weights = model.weights_
    expected = weights[10] + weights[11]  # EASE: x · B
    expected[[10, 11]] = -np.inf
    assert result["fallback"] is None
    assert _ids(result) == [model.item_map_.ids[i] for i in np.argsort(-expected, kind="stable")[:3]]


# ---------------------------------------------------------------------- feature models
def test_feature_model_ranks_a_new_user_by_request_features(make_client, artifacts: dict[str, Path]):
    client = make_client(artifacts["demographic_popularity"])
    model = load_model(artifacts["demographic_popularity"])
    features = {"gender": "M", "age": 40}
    client.post("/v1/events", json={"events": [{"user_id": "newbie", "item_id": "i10"}]})
    r = client.post("/v1/recommendations", json={"user_ids": ["newbie", "u00", "stranger"], "k": 4,
                                                  "features": features, "explain": True})
    assert r.status_code == 200, r.text
    newbie, known, stranger = r.json()["results"]
    assert newbie["fallback"] == "features" and known["fallback"] is None and stranger["fallback"] == "features"
    expected = model.recommend_cold(pd.DataFrame([features], index=["newbie"]), k=4, seen_items=["i10"])
    assert _ids(newbie) == expected["item_id"].tolist() and "i10" not in _ids(newbie)
    assert all(i in {f"i{k}" for k in range(11, 20)} for i in _ids(newbie))  # the M community's items
    assert newbie["items"][0]["explanation"]["reason"] == "similar_to_history"  # named after their event
    assert stranger["items"][0]["explanation"] == {"reason": "user_features", "because": [],
                                                   "popularity": stranger["items"][0]["explanation"]["popularity"]}
    # without features the same user is folded in; other models ignore features
    plain = client.post("/v1/recommendations", json={"user_ids": ["newbie"], "k": 4}).json()["results"][0]
    assert plain["fallback"] == "fold_in"
    ease = make_client(artifacts["ease"]).post("/v1/recommendations", json={
        "user_ids": ["stranger"], "k": 4, "features": features}).json()
    assert ease["results"][0]["fallback"] == "popularity"


def test_feature_session(make_client, artifacts: dict[str, Path]):
    client = make_client(artifacts["content"])
    r = client.post("/v1/recommendations", json={"items": ["i00"], "k": 3, "features": {"gender": "F"}})
    result = r.json()["results"][0]
    assert result["fallback"] == "features" and "i00" not in _ids(result)
    assert set(_ids(result)) <= {f"i{k:02d}" for k in range(1, 10)}


@pytest.mark.parametrize(("features", "fragment"), [
    ({"agee": 30}, "unknown user feature 'agee' (the model knows: age, gender)"),
    ({"age": [30]}, "features.age: Value error, a feature must be a string or a number, not an array"),
    ({"age": {"years": 30}}, "not an object"),
    ({"age": True}, "not true/false"),
    ({"age": None}, "not null"),
    ({"gender": "x" * 300}, "at most 256 characters"),
    ({"1st": "a"}, "features.1st.[key]: String should match pattern"),
    ({f"f{i}": 1 for i in range(33)}, "at most 32 items"),
])
def test_bad_features_are_a_422(make_client, artifacts: dict[str, Path], features: dict, fragment: str):
    client = make_client(artifacts["demographic_popularity"])
    r = client.post("/v1/recommendations", json={"user_ids": ["newbie"], "features": features})
    assert r.status_code == 422, r.text
    assert fragment in r.json()["detail"] and "\n" not in r.json()["detail"]


def test_odd_feature_values_never_fail(make_client, artifacts: dict[str, Path]):
    """Unseen categories and non-numeric ages are 'unknown' to the model, not a 500."""
    for name in ("demographic_popularity", "content"):
        client = make_client(artifacts[name])
        r = client.post("/v1/recommendations", json={"user_ids": ["x"], "k": 3,
                                                      "features": {"age": "old", "gender": 7}})
        assert r.status_code == 200 and r.json()["results"][0]["fallback"] == "features"
        assert len(r.json()["results"][0]["items"]) == 3


# ---------------------------------------------------------------------- the models' own explanations
def test_ease_explanation_is_the_exact_score_drop(make_client, artifacts: dict[str, Path]):
    """Removing the named history item lowers the item's score by exactly its contribution."""
    client = make_client(artifacts["ease"])
    model = load_model(artifacts["ease"])
    body = client.get("/v1/users/u03/recommendations?k=3&explain=true").json()
    history = model.seen_[model.user_map_.to_idx(["u03"])[0]].indices
    why = model.explain("u03", _ids(body), n=2)
    for it in body["items"]:
        expl = it["explanation"]
        assert expl["reason"] == "history_contribution"
        expected = why[(why["item_id"] == it["item_id"]) & (why["contribution"] > 0)]
        assert [b["item_id"] for b in expl["because"]] == expected["source"].tolist()
        i = model.item_map_.to_idx([it["item_id"]])[0]
        full = model.score_histories([history])[0, i]
        assert it["score"] == pytest.approx(float(full), abs=1e-5)
        for b in expl["because"]:
            j = model.item_map_.to_idx([b["item_id"]])[0]
            without = model.score_histories([history[history != j]])[0, i]
            assert b["contribution"] == pytest.approx(float(full - without), abs=1e-5)
            assert b["title"] == f"Item {b['item_id']}"


def test_content_explanation_names_items_and_features(make_client, artifacts: dict[str, Path]):
    client = make_client(artifacts["content"])
    items = client.get("/v1/users/u00/recommendations?k=2&explain=true").json()["items"]
    for it in items:
        because = it["explanation"]["because"]
        assert it["explanation"]["reason"] == "history_contribution"
        kinds = ["item" if b["item_id"] else "feature" for b in because]
        assert kinds == sorted(kinds, key=["item", "feature"].index)  # items first, then features
        assert all(b["contribution"] > 0 for b in because)
    # u00's community shares genre A: that feature explains the in-community item
    assert any(b["feature"] == "genre=A" for it in items for b in it["explanation"]["because"])
