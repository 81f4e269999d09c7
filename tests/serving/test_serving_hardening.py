"""Found by probing the running service: NUL bytes, non-finite weights, reload answers, paths."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from recforge.errors import DataError
from recforge.models import artifact
from recforge.serving.store import Event, EventStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, table prefix) of an empty store on each backend; PostgreSQL tables dropped after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}", ""
        return
    url, prefix = request.getfixturevalue("pg_url"), request.getfixturevalue("table_prefix")
    yield url, prefix
    cleanup = EventStore(url, table_prefix=prefix)
    cleanup.drop()
    cleanup.close()


@pytest.fixture
def served(tmp_path: Path, tiny_model_dir: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "served"))


# ---------------------------------------------------------------------- NUL bytes
@pytest.mark.parametrize("path", ["/v1/users/a%00b/recommendations", "/v1/users/a%00b/history",
                                  "/v1/users/%00/recommendations?explain=true", "/v1/items/a%00b",
                                  "/v1/items/a%00b/similar", "/v1/users/a%0Ab/history", "/v1/items/%0A"])
def test_nul_or_newline_in_a_path_id_is_422_on_every_store(make_client, tiny_model_dir: Path, store_url, path: str):
    url, prefix = store_url
    client = make_client(tiny_model_dir, store_url=url, table_prefix=prefix)
    r = client.get(path)
    assert r.status_code == 422, r.text
    assert "must not contain control characters" in r.json()["detail"]


def test_nul_in_bodies_is_422_on_every_store(make_client, tiny_model_dir: Path, store_url):
    url, prefix = store_url
    client = make_client(tiny_model_dir, store_url=url, table_prefix=prefix)
    for body in ({"events": [{"user_id": "a\x00", "item_id": "a"}]},
                 {"events": [{"user_id": "a", "item_id": "\x00"}]},
                 {"events": [{"user_id": "a", "item_id": "a", "idempotency_key": "k\x00"}]},
                 {"events": [{"user_id": "a", "item_id": "a", "type": "x\x00"}]}):
        assert client.post("/v1/events", json=body).status_code == 422
    assert client.post("/v1/recommendations", json={"user_ids": ["a\x00b"]}).status_code == 422
    assert client.post("/v1/recommendations", json={"items": ["a\x00b"]}).status_code == 422
    assert client.post("/v1/score", json={"pairs": [{"user_id": "\x00", "item_id": "a"}]}).status_code == 422
    # the store still answers normally afterwards
    assert client.post("/v1/events", json={"events": [{"user_id": "a", "item_id": "b"}]}).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_the_store_itself_treats_nul_alike_on_every_backend(store_url):
    url, prefix = store_url
    store = EventStore.open(url, table_prefix=prefix)
    try:
        with pytest.raises(DataError, match="user_id contains a NUL character"):
            store.add_events([Event("ok", "a"), Event("a\x00b", "a")])
        assert store.count() == 0  # nothing of the batch was stored
        store.add_events([Event("u", "a")])
        assert store.items_for_users(["u", "u\x00"]) == {"u": ["a"]}
        assert store.user_events("u\x00") == []
    finally:
        store.close()


# ---------------------------------------------------------------------- reload
def _nan_weights(src: Path, dst: Path) -> Path:
    """A copy of `src` whose float weights are all NaN, with every checksum recomputed."""
    bad = Path(shutil.copytree(src, dst))
    arrays = artifact.read_npz(bad / "weights.npz")
    artifact.write_npz(bad / "weights.npz", {k: np.full_like(v, np.nan) if v.dtype.kind == "f" else v
                                             for k, v in arrays.items()})
    meta = json.loads((bad / "meta.json").read_text())
    meta["files"]["weights.npz"] = artifact.sha256_file(bad / "weights.npz")
    (bad / "meta.json").write_text(json.dumps(meta))
    return bad


def test_reload_refuses_nan_weights_and_keeps_the_old_model(make_client, served: Path, tiny_itemknn_dir: Path,
                                                            tmp_path: Path):
    client = make_client(served)
    before = client.get("/v1/model").json()
    recs = client.get("/v1/users/u1/recommendations?k=3").json()["items"]
    bad = _nan_weights(tiny_itemknn_dir, tmp_path / "nan")
    r = client.post("/v1/admin/reload", json={"model_dir": str(bad)})
    assert r.status_code == 422
    assert "non-finite value(s) (NaN or infinity)" in r.json()["detail"]
    assert client.get("/v1/model").json() == before
    assert client.get("/v1/users/u1/recommendations?k=3").json()["items"] == recs


def test_reload_errors_never_show_server_paths(make_client, served: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch):
    client = make_client(served)
    monkeypatch.chdir(tmp_path)
    _nan_weights(served, tmp_path / "models" / "nan")
    r = client.post("/v1/admin/reload", json={"model_dir": "models/nan"})  # relative to the server's cwd
    detail = r.json()["detail"]
    assert r.status_code == 422 and "models/nan is corrupt: weights.npz" in detail
    assert str(tmp_path) not in detail
    r = client.post("/v1/admin/reload", json={"model_dir": "models/missing"})
    assert r.status_code == 422 and str(tmp_path) not in r.json()["detail"]
    assert "models/missing does not exist" in r.json()["detail"]
    (served / "item_ids.json").write_text("[")  # the served artifact itself damaged on disk
    r = client.post("/v1/admin/reload")
    detail = r.json()["detail"]
    assert r.status_code == 422 and str(tmp_path) not in detail and "served is corrupt" in detail
    assert client.get("/v1/users/u1/recommendations?k=2").status_code == 200


# ---------------------------------------------------------------------- propagation
def test_reload_answers_propagated_only_when_every_worker_serves_it(make_client, tmp_path: Path,
                                                                    tiny_model_dir: Path, tiny_itemknn_dir: Path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a = make_client(tiny_model_dir, store_url=url, launch_id="L", workers=2, sync_interval=0.05)
    b = make_client(tiny_model_dir, store_url=url, launch_id="L", workers=2, sync_interval=0.05)
    r = a.post("/v1/admin/reload", json={"model_dir": str(tiny_itemknn_dir)})
    assert r.status_code == 200
    assert (r.json()["propagated"], r.json()["workers"], r.json()["serving"]) == (True, 2, 2)
    assert b.get("/v1/model").json()["name"] == "itemknn"  # already, without waiting
    # and back, the other way round
    r = b.post("/v1/admin/reload", json={"model_dir": str(tiny_model_dir)})
    assert r.json()["propagated"] is True
    assert a.get("/v1/model").json()["name"] == "popularity"


def test_a_missing_worker_makes_propagated_false(make_client, tmp_path: Path, tiny_model_dir: Path,
                                                 tiny_itemknn_dir: Path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a = make_client(tiny_model_dir, store_url=url, launch_id="L", workers=2, sync_interval=0.05,
                    propagation_timeout=0.3)
    r = a.post("/v1/admin/reload", json={"model_dir": str(tiny_itemknn_dir)})
    assert r.status_code == 200 and a.get("/v1/model").json()["name"] == "itemknn"
    assert (r.json()["propagated"], r.json()["serving"]) == (False, 1)


def test_a_worker_that_cannot_load_makes_propagated_false(make_client, tmp_path: Path, tiny_model_dir: Path,
                                                          tiny_itemknn_dir: Path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a = make_client(tiny_model_dir, store_url=url, launch_id="L", workers=2, sync_interval=0.05,
                    propagation_timeout=60)
    b = make_client(tiny_model_dir, store_url=url, launch_id="L", workers=2, sync_interval=0.05)

    def cannot(_directory: object = None) -> None:
        raise OSError("permission denied")

    b.app.state.service.holder.reload = cannot  # type: ignore[attr-defined]
    r = a.post("/v1/admin/reload", json={"model_dir": str(tiny_itemknn_dir)})
    assert (r.json()["propagated"], r.json()["serving"]) == (False, 1)  # b said so: no 60 s wait
    assert b.get("/v1/model").json()["name"] == "popularity"
    assert 'recforge_model_reloads_total{result="failed"} 1.0' in b.get("/metrics").text


# ---------------------------------------------------------------------- IDs with "/"
def test_ids_with_slashes_work_in_paths(make_client, tmp_path: Path):
    import pandas as pd

    from recforge.data.interactions import Interactions
    from recforge.registry import create_model

    rows = [("shop/1", "cat/a"), ("shop/1", "cat/b"), ("shop/2", "cat/a"), ("shop/2", "cat/c"), ("u", "cat/b")]
    data = Interactions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id"]))
    client = make_client(create_model("itemknn").fit(data).save(tmp_path / "m"))
    r = client.get("/v1/users/shop%2F1/recommendations?k=2")
    assert r.status_code == 200 and r.json()["user_id"] == "shop/1" and r.json()["fallback"] is None
    assert [i["item_id"] for i in r.json()["items"]] == ["cat/c"]
    assert client.get("/v1/items/cat%2Fa").json()["item_id"] == "cat/a"
    r = client.get("/v1/items/cat%2Fa/similar?k=1")
    assert r.json()["item_id"] == "cat/a" and r.json()["items"][0]["item_id"] in {"cat/b", "cat/c"}
    client.post("/v1/events", json={"events": [{"user_id": "new/1", "item_id": "cat/a"}]})
    assert [i["item_id"] for i in client.get("/v1/users/new%2F1/history").json()["items"]] == ["cat/a"]
    assert "{user_id}" in str(client.get("/openapi.json").json()["paths"])
    assert ":path" not in str(client.get("/openapi.json").json()["paths"])
    route = "/v1/users/{user_id}/recommendations"
    assert f'route="{route}"' in client.get("/metrics").text
