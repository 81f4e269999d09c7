"""POST /v1/admin/reload: atomic swap, and a bad artifact leaves the old model serving."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recforge.models import artifact


@pytest.fixture
def served(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A private copy of the tiny artifact, so tests may damage it."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "served"))


def _corrupt(directory: Path, name: str = "weights.npz") -> None:
    path = directory / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_reload_to_a_new_artifact_swaps_model(make_client, served: Path, tiny_itemknn_dir: Path):
    client = make_client(served)
    before = client.get("/v1/model").json()
    r = client.post("/v1/admin/reload", json={"model_dir": str(tiny_itemknn_dir)})
    assert r.status_code == 200
    assert r.json()["previous"] == before and r.json()["model"]["name"] == "itemknn"
    assert client.get("/v1/model").json()["name"] == "itemknn"
    assert client.get("/v1/users/u1/recommendations?k=2").json()["model"]["name"] == "itemknn"
    assert 'name="itemknn"' in client.get("/metrics").text
    assert 'name="popularity"' not in client.get("/metrics").text


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "delete", "not_a_model"])
def test_bad_artifact_on_reload_keeps_the_old_model(make_client, served: Path, tmp_path: Path, damage: str):
    client = make_client(served)
    before = client.get("/v1/model").json()
    recs = client.get("/v1/users/u1/recommendations?k=3").json()["items"]
    bad = Path(shutil.copytree(served, tmp_path / "bad"))
    if damage == "corrupt":
        _corrupt(bad)
    elif damage == "truncate":
        (bad / "train.npz").write_bytes((bad / "train.npz").read_bytes()[:100])
    elif damage == "delete":
        (bad / "item_ids.json").unlink()
    else:
        shutil.rmtree(bad)
        bad.mkdir()
        (bad / "meta.json").write_text("{not json")
    r = client.post("/v1/admin/reload", json={"model_dir": str(bad)})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith(f"reload failed; still serving model popularity version {before['version']}")
    assert "\n" not in detail
    assert client.get("/v1/model").json() == before
    assert client.get("/v1/users/u1/recommendations?k=3").json()["items"] == recs
    assert 'recforge_model_reloads_total{result="failed"} 1.0' in client.get("/metrics").text


def test_in_place_corruption_then_reload_keeps_serving(make_client, served: Path):
    client = make_client(served)
    before = client.get("/v1/model").json()
    _corrupt(served)
    r = client.post("/v1/admin/reload")
    assert r.status_code == 422 and "does not match its checksum" in r.json()["detail"]
    assert client.get("/v1/model").json() == before
    assert client.get("/v1/items/a/similar?k=2").status_code == 200


def test_artifact_that_loads_but_cannot_score_is_refused(make_client, served: Path, tmp_path: Path):
    client = make_client(served)
    broken = Path(shutil.copytree(served, tmp_path / "broken"))
    artifact.write_npz(broken / "weights.npz", {"item_scores": np.ones(3, np.float32)})  # 8 items
    meta = json.loads((broken / "meta.json").read_text())
    meta["files"]["weights.npz"] = artifact.sha256_file(broken / "weights.npz")
    (broken / "meta.json").write_text(json.dumps(meta))
    r = client.post("/v1/admin/reload", json={"model_dir": str(broken)})
    assert r.status_code == 422 and "failed validation" in r.json()["detail"]
    assert client.get("/v1/users/u1/recommendations?k=2").status_code == 200


def test_missing_directory_is_a_clear_error(make_client, served: Path):
    client = make_client(served)
    r = client.post("/v1/admin/reload", json={"model_dir": "/no/such/model"})
    assert r.status_code == 422 and "model directory /no/such/model does not exist" in r.json()["detail"]
    r = client.post("/v1/admin/reload", json={"model_dir": ""})
    assert r.status_code == 422 and "model_dir" in r.json()["detail"]


def test_reload_reaches_every_worker_sharing_the_store(make_client, tmp_path: Path, tiny_model_dir: Path,
                                                        tiny_itemknn_dir: Path):
    import time

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a = make_client(tiny_model_dir, store_url=url, launch_id="launch-1", sync_interval=0.05)
    b = make_client(tiny_model_dir, store_url=url, launch_id="launch-1", sync_interval=0.05)
    r = a.post("/v1/admin/reload", json={"model_dir": str(tiny_itemknn_dir)})
    assert r.status_code == 200 and r.json()["propagated"] is True
    deadline = time.monotonic() + 30
    while b.get("/v1/model").json()["name"] != "itemknn":
        assert time.monotonic() < deadline, "the other worker never followed the reload"
        time.sleep(0.05)
    assert 'name="itemknn"' in b.get("/metrics").text
    # a worker restarted within the same launch serves the reloaded model from the start
    restarted = make_client(tiny_model_dir, store_url=url, launch_id="launch-1")
    assert restarted.get("/v1/model").json()["name"] == "itemknn"
    # a new launch serves the model it was started with
    fresh = make_client(tiny_model_dir, store_url=url, launch_id="launch-2")
    assert fresh.get("/v1/model").json()["name"] == "popularity"
