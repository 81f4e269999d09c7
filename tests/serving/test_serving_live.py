"""Against real uvicorn processes: concurrent clients, several workers, SIGKILL, reload under load, metrics."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from recforge.serving.store import EventStore


def _stored_keys(url: str, prefix: str = "") -> list[str]:
    store = EventStore.open(url, table_prefix=prefix)
    try:
        with store.engine.connect() as conn:
            return list(conn.execute(sa.select(store.events.c.idempotency_key)).scalars())
    finally:
        store.close()


def _post_concurrently(base_url: str, key: str, n_keys: int, n_clients: int) -> list[tuple[int, int]]:
    """n_clients post n_keys keyed events at once, every key sent by n_clients // 4 of them."""
    barrier = threading.Barrier(n_clients)

    def client(c: int) -> tuple[int, int]:
        mine = [k for k in range(n_keys) if k % 4 == c % 4]
        stored = duplicates = 0
        with httpx.Client(base_url=base_url, headers={"X-API-Key": key}, timeout=60) as http:
            barrier.wait()
            for start in range(0, len(mine), 5):
                events = [{"user_id": f"user{k % 11}", "item_id": "abcdefgh"[k % 8], "rating": 4,
                           "idempotency_key": f"key-{k}"} for k in mine[start:start + 5]]
                r = http.post("/v1/events", json={"events": events})
                assert r.status_code == 200, r.text
                stored += r.json()["stored"]
                duplicates += r.json()["duplicates"]
        return stored, duplicates

    with ThreadPoolExecutor(n_clients) as pool:
        return list(pool.map(client, range(n_clients)))


def test_two_workers_and_many_clients_store_each_event_once(live_server, tiny_model_dir: Path,
                                                            tmp_path: Path, keys):
    """`recforge serve --workers 2` on one SQLite file: 16 clients race on 160 keys."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    server = live_server(tiny_model_dir, url, keys_file=keys.file, workers=2)
    results = _post_concurrently(server.url, keys.read, n_keys=160, n_clients=16)
    assert sum(s for s, _ in results) == 160
    assert sum(d for _, d in results) == 160 * 3
    assert sorted(_stored_keys(url)) == sorted(f"key-{k}" for k in range(160))


def test_many_clients_on_postgresql_store_each_event_once(thread_server, tiny_model_dir: Path,
                                                           pg_url: str, table_prefix: str, keys):
    from recforge.serving.app import create_app

    app = create_app(tiny_model_dir, pg_url, keys.file, table_prefix=table_prefix)
    try:
        results = _post_concurrently(thread_server(app), keys.read, n_keys=160, n_clients=16)
        assert sum(s for s, _ in results) == 160
        assert sorted(_stored_keys(pg_url, table_prefix)) == sorted(f"key-{k}" for k in range(160))
    finally:
        app.state.service.store.drop()


def test_sigkill_loses_no_acknowledged_event(live_server, tiny_model_dir: Path, tmp_path: Path):
    """Clients post until the server is SIGKILLed; after a restart every 2xx'd event is there."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    server = live_server(tiny_model_dir, url)
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def client(c: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for n in range(100_000):
                if stop.is_set():
                    return
                key = f"c{c}-{n}"
                try:
                    r = http.post("/v1/events", json={"events": [
                        {"user_id": f"u{c}", "item_id": "a", "idempotency_key": key}]})
                except httpx.HTTPError:
                    return  # the server is gone: this event was never acknowledged
                if r.status_code == 200:
                    with lock:
                        acked.append(key)
                        if len(acked) >= 150:
                            enough.set()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    assert enough.wait(timeout=120), "clients could not post events"
    server.kill()  # mid-stream: requests are in flight
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= 150

    restarted = live_server(tiny_model_dir, url)
    stored = set(_stored_keys(url))
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged events lost"
    # and retrying them is recognised: nothing stored twice
    with httpx.Client(base_url=restarted.url, timeout=30) as http:
        sample = acked[:50]
        r = http.post("/v1/events", json={"events": [
            {"user_id": "x", "item_id": "a", "idempotency_key": k} for k in sample]})
        assert r.json()["stored"] == 0 and r.json()["duplicates"] == len(sample)


def test_reload_under_load_never_fails_a_request(thread_server, tiny_model_dir: Path,
                                                 tiny_itemknn_dir: Path, tmp_path: Path, keys):
    from recforge.serving.app import create_app

    app = create_app(tiny_model_dir, f"sqlite:///{tmp_path / 'events.db'}", keys.file)
    base_url = thread_server(app)
    stop = threading.Event()
    statuses: list[int] = []
    models: set[str] = set()

    def reader() -> None:
        with httpx.Client(base_url=base_url, headers={"X-API-Key": keys.read}, timeout=30) as http:
            while not stop.is_set():
                r = http.get("/v1/users/u1/recommendations?k=3")
                statuses.append(r.status_code)
                if r.status_code == 200:
                    models.add(r.json()["model"]["name"])

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    with httpx.Client(base_url=base_url, headers={"X-API-Key": keys.admin}, timeout=30) as admin:
        for i in range(10):
            target = tiny_itemknn_dir if i % 2 == 0 else tiny_model_dir
            assert admin.post("/v1/admin/reload", json={"model_dir": str(target)}).status_code == 200
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert statuses and set(statuses) == {200}
    assert models <= {"popularity", "itemknn"}


def _total(text: str, sample: str, **labels: str) -> float:
    """Sum of the samples named `sample` whose labels include `labels`, in a /metrics text."""
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == sample and labels.items() <= s.labels.items())


def test_two_workers_report_totals_and_reload_together(live_server, tiny_model_dir: Path,
                                                       tiny_itemknn_dir: Path, tmp_path: Path):
    """`recforge serve --workers 2`: whichever worker answers /metrics, it counts every request;
    a reload answers `propagated: true` only once every worker serves the new model."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = live_server(tiny_model_dir, f"sqlite:///{tmp_path / 'events.db'}", workers=2,
                         env={"TMPDIR": str(temp)})
    assert len(list(temp.glob("recforge-metrics-*"))) == 1  # the launch's fresh directory
    n = 40

    def get(i: int) -> int:  # a new connection each time, so both workers take requests
        return httpx.get(f"{server.url}/v1/users/u{i % 6 + 1}/recommendations?k=2", timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(get, range(n))) == {200}
    route = "/v1/users/{user_id}/recommendations"
    for _ in range(6):  # new connections: several /metrics answers, all with the same totals
        text = httpx.get(f"{server.url}/metrics", timeout=30).text
        assert _total(text, "recforge_http_requests_total", route=route) == n
        assert _total(text, "recforge_http_request_duration_seconds_count", route=route) == n
        assert _total(text, "recforge_workers") == 2
    assert _total(text, "recforge_model_info", name="popularity") == 1

    r = httpx.post(f"{server.url}/v1/admin/reload", json={"model_dir": str(tiny_itemknn_dir)}, timeout=60)
    assert r.status_code == 200, r.text
    assert (r.json()["propagated"], r.json()["workers"], r.json()["serving"]) == (True, 2, 2)

    def model(_i: int) -> str:  # new connections again: both workers answer, at once
        return httpx.get(f"{server.url}/v1/model", timeout=30).json()["name"]

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(model, range(40))) == {"itemknn"}
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    served = {s.labels["name"] for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "recforge_model_info" and s.value == 1}
    assert served == {"itemknn"}  # no worker left on the old model
    assert _total(text, "recforge_ready") == 1
    server.stop()
    assert not list(temp.glob("recforge-metrics-*"))  # removed when the server stops

