"""HTTP API through the in-process client: the issue's Done-when on ML-100K, plus every 4xx."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from recforge.registry import load_model
from recforge.serving.app import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def ml(make_client, ml100k_model_dir: Path, keys):
    """A fresh service (own event store) on the ML-100K artifact, with a read key."""
    client = make_client(ml100k_model_dir, keys_file=keys.file)
    client.headers["X-API-Key"] = keys.read
    return client


@pytest.fixture(scope="module")
def ml_ro(tmp_path_factory: pytest.TempPathFactory, ml100k_model_dir: Path, keys):
    """One service shared by the tests that only read (no events, no reloads)."""
    store = tmp_path_factory.mktemp("ro") / "events.db"
    with TestClient(create_app(ml100k_model_dir, f"sqlite:///{store}", keys.file)) as client:
        client.headers["X-API-Key"] = keys.read
        yield client


# ---------------------------------------------------------------------- Done when
def test_recommendations_are_k_unseen_items_with_titles(ml_ro, ml100k_model_dir: Path):
    model = load_model(ml100k_model_dir)
    r = ml_ro.get("/v1/users/1/recommendations", params={"k": 10})
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == "1" and body["fallback"] is None
    items = body["items"]
    assert len(items) == 10
    ids = [it["item_id"] for it in items]
    assert all(isinstance(i, str) for i in ids) and len(set(ids)) == 10
    seen = set(model.item_map_.to_ids(model.seen_[model.user_map_.to_idx(["1"])[0]].indices))
    assert not seen & set(ids)
    assert all(it["title"] for it in items)
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True)
    assert [it["rank"] for it in items] == list(range(1, 11))
    assert body["model"]["name"] == "itemknn" and body["model"]["n_items"] == model.n_items


def test_posted_event_removes_item_for_that_user_only(ml):
    before = [it["item_id"] for it in ml.get("/v1/users/1/recommendations?k=10").json()["items"]]
    other = [it["item_id"] for it in ml.get("/v1/users/2/recommendations?k=50").json()["items"]]
    top = before[0]
    r = ml.post("/v1/events", json={"events": [
        {"user_id": "1", "item_id": top, "rating": 5, "type": "rating", "timestamp": 881250949,
         "idempotency_key": "e-1"}]})
    assert r.status_code == 200 and r.json()["stored"] == 1
    after = [it["item_id"] for it in ml.get("/v1/users/1/recommendations?k=10").json()["items"]]
    assert top not in after and len(after) == 10
    assert after[:9] == before[1:10]  # the rest moves up; nothing else changes
    assert [it["item_id"] for it in ml.get("/v1/users/2/recommendations?k=50").json()["items"]] == other
    # exclude_seen=false brings it back
    with_seen = ml.get("/v1/users/1/recommendations?k=10&exclude_seen=false").json()["items"]
    assert top in [it["item_id"] for it in with_seen] or len(with_seen) == 10
    history = ml.get("/v1/users/1/history").json()
    assert history["items"][0] == {"item_id": top, "title": history["items"][0]["title"], "rating": 5.0,
                                   "source": "event", "type": "rating", "timestamp": 881250949}


def test_unknown_user_gets_popularity_fallback(ml):
    r = ml.get("/v1/users/no-such-user/recommendations?k=5")
    assert r.status_code == 200
    body = r.json()
    assert body["fallback"] == "popularity"
    assert [it["item_id"] for it in body["items"]][:1] == ["50"]  # Star Wars is the most rated
    # once they have events, those are folded into the model, and excluded
    ml.post("/v1/events", json={"events": [{"user_id": "no-such-user", "item_id": "50"}]})
    again = ml.get("/v1/users/no-such-user/recommendations?k=5").json()
    assert again["fallback"] == "fold_in"
    assert "50" not in [it["item_id"] for it in again["items"]] and len(again["items"]) == 5


def test_wrong_or_missing_key_is_401_and_wrong_scope_403(ml, keys):
    assert ml.get("/v1/users/1/recommendations", headers={"X-API-Key": "rfk_wrong"}).status_code == 401
    r = ml.get("/v1/users/1/recommendations", headers={"X-API-Key": ""})
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "APIKey"
    r = ml.post("/v1/admin/reload")
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert ml.post("/v1/admin/reload", headers={"X-API-Key": keys.admin}).status_code == 200
    # admin keys can read too
    assert ml.get("/v1/model", headers={"X-API-Key": keys.admin}).status_code == 200


def test_health_is_open_and_metrics_need_a_key(ml_ro):
    anon = {"X-API-Key": ""}
    assert ml_ro.get("/healthz", headers=anon).json() == {"status": "ok"}
    assert ml_ro.get("/readyz", headers=anon).json() == {"status": "ready"}
    assert ml_ro.get("/metrics", headers=anon).status_code == 401
    ml_ro.get("/v1/users/1/recommendations")
    ml_ro.get("/v1/items/nope")
    text = ml_ro.get("/metrics").text
    assert 'recforge_http_requests_total{method="GET",route="/v1/users/{user_id}/recommendations",status="200"}' in text
    assert 'recforge_http_errors_total{route="/v1/items/{item_id}",status="404"}' in text
    assert "recforge_http_request_duration_seconds_bucket" in text
    assert 'recforge_model_info{created=' in text and 'name="itemknn"' in text
    assert "recforge_events_stored_total" in text


def test_metrics_across_workers_need_the_variable_before_import(tmp_path: Path):
    """Without PROMETHEUS_MULTIPROC_DIR at import, values are per process: refuse to pretend."""
    from recforge.errors import ConfigError
    from recforge.serving.metrics import ServiceMetrics

    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR set before prometheus_client"):
        ServiceMetrics(tmp_path)
    assert b"recforge_workers 1.0" in ServiceMetrics().render()


def test_public_metrics(make_client, tiny_model_dir: Path, keys):
    client = make_client(tiny_model_dir, keys_file=keys.file, public_metrics=True)
    assert client.get("/metrics").status_code == 200
    assert client.get("/v1/model").status_code == 401


def test_new_keys_work_without_restart(ml, keys):
    from recforge.serving.auth import create_key, revoke_key

    new = create_key(keys.file, "late", "read")
    assert ml.get("/v1/model", headers={"X-API-Key": new}).status_code == 200
    revoke_key(keys.file, "late")
    assert ml.get("/v1/model", headers={"X-API-Key": new}).status_code == 401


# ---------------------------------------------------------------------- other endpoints
def test_items_similar_and_404(ml_ro):
    r = ml_ro.get("/v1/items/50")
    assert r.status_code == 200
    assert r.json()["title"] == "Star Wars (1977)" and r.json()["popularity"] > 0
    sim = ml_ro.get("/v1/items/50/similar?k=5").json()
    ids = [it["item_id"] for it in sim["items"]]
    assert len(ids) == 5 and "50" not in ids and "181" in ids  # Return of the Jedi
    assert all(it["title"] for it in sim["items"])
    for path in ("/v1/items/999999", "/v1/items/999999/similar"):
        r = ml_ro.get(path)
        assert r.status_code == 404 and r.json() == {"detail": "unknown item: 999999"}


def test_batch_and_session_recommendations(ml_ro, ml100k_model_dir: Path):
    r = ml_ro.post("/v1/recommendations", json={"user_ids": ["1", "2", "new-user"], "k": 3})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["user_id"] for x in results] == ["1", "2", "new-user"]
    assert [x["fallback"] for x in results] == [None, None, "popularity"]
    single = ml_ro.get("/v1/users/1/recommendations?k=3").json()["items"]
    assert results[0]["items"] == single

    r = ml_ro.post("/v1/recommendations", json={"items": ["50", "181", "unknown-item"], "k": 10,
                                             "explain": True})
    assert r.status_code == 200
    body = r.json()
    assert body["unknown_items"] == ["unknown-item"]
    session = body["results"][0]
    assert session["user_id"] is None and session["fallback"] is None
    ids = [it["item_id"] for it in session["items"]]
    assert "50" not in ids and "181" not in ids and "172" in ids  # The Empire Strikes Back
    assert session["items"][0]["explanation"]["reason"] == "similar_to_session"
    # the session is scored as the model scores a user with these items (item-kNN: x · W)
    model = load_model(ml100k_model_dir)
    folded = model.score_histories([model.item_map_.lookup(["50", "181"])])[0]
    assert [it["score"] for it in session["items"]] == pytest.approx(
        folded[model.item_map_.lookup(ids)].tolist(), rel=1e-5)

    cold = ml_ro.post("/v1/recommendations", json={"items": ["unknown-item"], "k": 3}).json()
    assert cold["results"][0]["fallback"] == "popularity"


def test_explanations_are_the_models_own(ml_ro, ml100k_model_dir: Path):
    """item-kNN: each named item is a training item of the user with its exact share of the score."""
    model = load_model(ml100k_model_dir)
    items = ml_ro.get("/v1/users/1/recommendations?k=3&explain=true").json()["items"]
    why = model.explain("1", [it["item_id"] for it in items], n=2)
    history = set(model.item_map_.to_ids(model.seen_[model.user_map_.to_idx(["1"])[0]].indices))
    for it in items:
        expl = it["explanation"]
        assert expl["reason"] == "history_contribution" and expl["because"]
        expected = why[why["item_id"] == it["item_id"]]
        assert [b["item_id"] for b in expl["because"]] == expected["source"].tolist()
        assert [b["contribution"] for b in expl["because"]] == pytest.approx(expected["contribution"].tolist(),
                                                                             abs=1e-6)
        for b in expl["because"]:
            assert b["item_id"] in history and b["title"] and b["contribution"] > 0 and b["similarity"] is None


def test_score_pairs(ml_ro):
    r = ml_ro.post("/v1/score", json={"pairs": [{"user_id": "1", "item_id": "50"},
                                             {"user_id": "ghost", "item_id": "50"},
                                             {"user_id": "1", "item_id": "ghost-item"}]})
    assert r.status_code == 200
    scores = r.json()["scores"]
    assert scores[0]["known_user"] and scores[0]["known_item"] and scores[0]["score"] > 0
    assert not scores[1]["known_user"] and not scores[2]["known_item"]


def test_users_listing_and_history(ml_ro):
    users = ml_ro.get("/v1/users?limit=3").json()
    assert users["users"] == ["1", "2", "3"] and users["total"] == 943
    history = ml_ro.get("/v1/users/1/history?limit=5").json()
    assert history["known"] and len(history["items"]) == 5
    assert all(h["source"] == "training" and h["title"] and h["rating"] for h in history["items"])
    assert ml_ro.get("/v1/users/ghost/history").json() == {"user_id": "ghost", "known": False, "items": []}


def test_duplicate_events_are_stored_once(ml):
    events = [{"user_id": "7", "item_id": "1", "idempotency_key": "dup-1"},
              {"user_id": "7", "item_id": "2", "idempotency_key": "dup-1"},
              {"user_id": "7", "item_id": "3"}]
    first = ml.post("/v1/events", json={"events": events}).json()
    assert first["stored"] == 2 and first["duplicates"] == 1
    assert [r["status"] for r in first["results"]] == ["stored", "duplicate", "stored"]
    second = ml.post("/v1/events", json={"events": events[:1]}).json()
    assert second == {"stored": 0, "duplicates": 1,
                      "results": [{"idempotency_key": "dup-1", "status": "duplicate"}]}


def test_openapi_documents_the_v1_endpoints(ml_ro):
    spec = ml_ro.get("/openapi.json").json()
    for path in ("/v1/users/{user_id}/recommendations", "/v1/recommendations",
                 "/v1/items/{item_id}/similar", "/v1/items/{item_id}", "/v1/score", "/v1/events",
                 "/v1/admin/reload", "/healthz", "/readyz", "/metrics"):
        assert path in spec["paths"], path
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]


def test_web_page_is_served_with_a_strict_csp(ml_ro):
    r = ml_ro.get("/", headers={"X-API-Key": ""})
    assert r.status_code == 200 and "recforge" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert ml_ro.get("/static/app.js").status_code == 200


# ---------------------------------------------------------------------- bad input → 4xx
@pytest.mark.parametrize(("method", "path", "kwargs", "status", "fragment"), [
    ("get", "/v1/users/1/recommendations?k=0", {}, 422, "k: Input should be greater than or equal to 1"),
    ("get", "/v1/users/1/recommendations?k=-5", {}, 422, "greater than or equal to 1"),
    ("get", "/v1/users/1/recommendations?k=1001", {}, 422, "less than or equal to 1000"),
    ("get", "/v1/users/1/recommendations?k=99999999999999999999999", {}, 422, "less than or equal"),
    ("get", "/v1/users/1/recommendations?k=ten", {}, 422, "valid integer"),
    ("get", "/v1/items/50/similar?k=100000", {}, 422, "less than or equal to 1000"),
    ("get", "/v1/users/" + "x" * 300 + "/recommendations", {}, 422, "at most 256 characters"),
    ("post", "/v1/events", {"content": b'{"events": [', "headers": {"content-type": "application/json"}},
     422, "malformed JSON"),
    ("post", "/v1/events", {"content": b"not json at all", "headers": {"content-type": "application/json"}},
     422, "malformed JSON"),
    ("post", "/v1/events", {"content": b'[1, 2]', "headers": {"content-type": "application/json"}},
     422, "must be a JSON object"),
    ("post", "/v1/events", {"json": {"events": []}}, 422, "at least 1 item"),
    ("post", "/v1/events", {"json": {"events": [{"user_id": "1"}]}}, 422, "events.0.item_id: Field required"),
    ("post", "/v1/events", {"json": {"events": [{"user_id": "1", "item_id": "2", "rating": "high"}]}},
     422, "events.0.rating"),
    ("post", "/v1/events", {"json": {"events": [{"user_id": "1", "item_id": "2", "ratting": 5}]}},
     422, "Extra inputs are not permitted"),
    ("post", "/v1/events", {"json": {"events": [{"user_id": "1", "item_id": ""}]}}, 422, "at least 1"),
    ("post", "/v1/events", {"json": {"events": [{"user_id": "1", "item_id": "2"}] * 1001}}, 422, "at most 1000"),
    ("post", "/v1/recommendations", {"json": {"k": 3}}, 422, "exactly one of"),
    ("post", "/v1/recommendations", {"json": {"user_ids": ["1"], "k": 5000}}, 422, "less than or equal to 1000"),
    ("post", "/v1/recommendations", {"json": {"user_ids": [str(i) for i in range(101)]}}, 422, "at most 100"),
    ("post", "/v1/score", {"json": {"pairs": [{"user_id": "1"}]}}, 422, "item_id: Field required"),
    # strict JSON types, the same in every endpoint: IDs are strings, integers integers
    ("post", "/v1/score", {"json": {"pairs": [{"user_id": "1", "item_id": 50}]}}, 422,
     "pairs.0.item_id: Input should be a valid string"),
    ("post", "/v1/events", {"json": {"events": [{"user_id": 1, "item_id": "2"}]}}, 422,
     "events.0.user_id: Input should be a valid string"),
    ("post", "/v1/recommendations", {"json": {"user_ids": ["1", 2]}}, 422,
     "user_ids.1: Input should be a valid string"),
    ("post", "/v1/events", {"json": {"events": [{"user_id": "1", "item_id": "2", "timestamp": False}]}}, 422,
     "events.0.timestamp: Input should be a valid integer"),
    ("post", "/v1/events", {"json": {"events": [{"user_id": "1", "item_id": "2", "timestamp": 1.5}]}}, 422,
     "events.0.timestamp: Input should be a valid integer"),
    ("post", "/v1/events", {"json": {"events": [{"user_id": "1", "item_id": "2", "rating": True}]}}, 422,
     "events.0.rating: Input should be a valid number"),
    ("post", "/v1/recommendations", {"json": {"user_ids": ["1"], "k": True}}, 422,
     "k: Input should be a valid integer"),
    ("post", "/v1/recommendations", {"json": {"user_ids": ["1"], "exclude_seen": "no"}}, 422,
     "exclude_seen: Input should be a valid boolean"),
    ("post", "/v1/recommendations", {"json": {"user_ids": ["1"], "items": ["50"]}}, 422, "exactly one of"),
    ("post", "/v1/recommendations", {"json": {"user_ids": None, "items": ["50"]}}, 422,
     "user_ids: Input should be a valid list"),
    # control characters (NUL included) in IDs: 422 everywhere, whatever the store
    ("get", "/v1/users/a%00b/recommendations", {}, 422, "user_id: must not contain control characters"),
    ("get", "/v1/users/a%00b/history", {}, 422, "user_id: must not contain control characters"),
    ("get", "/v1/items/a%00b", {}, 422, "item_id: must not contain control characters"),
    ("get", "/v1/items/a%1Fb/similar", {}, 422, "item_id: must not contain control characters"),
    ("post", "/v1/events", {"json": {"events": [{"user_id": "a\x00b", "item_id": "2"}]}}, 422,
     "events.0.user_id: must not contain control characters"),
    ("post", "/v1/score", {"json": {"pairs": [{"user_id": "1", "item_id": "\x00"}]}}, 422,
     "pairs.0.item_id: must not contain control characters"),
    ("get", "/v1/items/no-such-item", {}, 404, "unknown item: no-such-item"),
    ("get", "/v1/nothing-here", {}, 404, "Not Found"),
    ("delete", "/v1/events", {}, 405, "Method Not Allowed"),
])
def test_bad_input_gets_a_clear_4xx(ml_ro, method, path, kwargs, status, fragment):
    r = getattr(ml_ro, method)(path, **kwargs)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    assert fragment in detail


def test_body_size_is_limited(make_client, tiny_model_dir: Path):
    client = make_client(tiny_model_dir, max_body_bytes=2000)
    big = {"events": [{"user_id": "u1", "item_id": "a", "type": "x" * 20}] * 100}
    r = client.post("/v1/events", json=big)
    assert r.status_code == 413 and "2000 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit applies while the body streams in
        for _ in range(10):
            yield b" " * 500

    r = client.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_open_mode_without_keys(make_client, tiny_model_dir: Path):
    client = make_client(tiny_model_dir)
    assert client.get("/v1/users/u1/recommendations?k=2").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.post("/v1/admin/reload").status_code == 200


def test_k_larger_than_catalog_returns_what_exists(make_client, tiny_model_dir: Path):
    client = make_client(tiny_model_dir)
    items = client.get("/v1/users/u1/recommendations?k=1000").json()["items"]
    assert sorted(it["item_id"] for it in items) == list("cdefgh")  # 8 items, 2 seen
    assert all(it["title"] == f"Item {it['item_id']}" for it in items)


def test_store_outage_is_503_and_a_bug_is_a_bare_500(tiny_model_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    from recforge.serving.state import LoadedModel
    from recforge.serving.store import StoreError

    app = create_app(tiny_model_dir, f"sqlite:///{tmp_path / 'e.db'}")
    svc = app.state.service

    def down(*_args, **_kwargs):
        raise StoreError("event store unavailable: connection refused")

    with TestClient(app, raise_server_exceptions=False) as client:
        svc.store.add_events = down
        r = client.post("/v1/events", json={"events": [{"user_id": "u1", "item_id": "a"}]})
        assert r.status_code == 503 and r.json() == {"detail": "event store unavailable: connection refused"}
        svc.store.ping = down
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200

        def bug(*_args, **_kwargs):
            raise RuntimeError("secret internals")

        monkeypatch.setattr(LoadedModel, "recommend", bug)
        r = client.get("/v1/users/u1/recommendations")
        assert r.status_code == 500 and r.json() == {"detail": "internal error (logged by the server)"}
