"""recforge.client against the app (in process) and against scripted transports (retries)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from recforge.client import ApiError, AsyncClient, Client, Retry
from recforge.serving import schemas as s

NO_WAIT = Retry(retries=3, backoff=0.0)


@pytest.fixture
def rf(make_client, tiny_itemknn_dir: Path, keys) -> Client:
    """A client with the admin key on an in-process app (its own SQLite store)."""
    return Client(api_key=keys.admin, http=make_client(tiny_itemknn_dir, keys_file=keys.file), retry=NO_WAIT)


def test_every_endpoint_answers_typed_models(rf: Client, tiny_itemknn_dir: Path):
    assert rf.healthz() == s.Status(status="ok") and rf.ready() is True
    assert "recforge_http_requests_total" in rf.metrics()
    model = rf.model()
    assert isinstance(model, s.ModelInfo) and model.name == "itemknn" and model.n_items == 8
    assert rf.users(offset=1, limit=2).users == ["u2", "u3"]
    recs = rf.recommendations("u1", k=3, explain=True)
    assert isinstance(recs, s.Recommendations) and len(recs.items) == 3
    assert {"a", "b"}.isdisjoint(i.item_id for i in recs.items)  # u1's own items excluded
    assert recs.items[0].explanation is not None
    batch = rf.recommend_users(["u1", "stranger"], k=3)
    assert [r.fallback for r in batch.results] == [None, "popularity"]
    assert [i.item_id for i in batch.results[0].items] == [i.item_id for i in recs.items]
    session = rf.recommend_session(["a", "zzz"], k=2)
    assert session.unknown_items == ["zzz"] and len(session.results[0].items) == 2
    assert rf.item("a").title == "Item a"
    similar = rf.similar("a", k=2)
    assert similar.item_id == "a" and len(similar.items) == 2
    scores = rf.score([("u1", "c"), ("nobody", "a")])
    assert [(p.known_user, p.known_item) for p in scores.scores] == [(True, True), (False, True)]
    assert rf.history("u1").known is True
    reloaded = rf.reload(str(tiny_itemknn_dir))
    assert reloaded.propagated is True and reloaded.model.version == model.version


def test_events_get_keys_once_and_ids_are_path_safe(rf: Client):
    sent = rf.send_events([{"user_id": "a/b c?", "item_id": "a", "rating": 4},
                           s.EventIn(user_id="a/b c?", item_id="c")])
    assert sent.stored == 2 and all(r.idempotency_key for r in sent.results)
    again = rf.send_events([{"user_id": "a/b c?", "item_id": "a", "idempotency_key": sent.results[0].idempotency_key}])
    assert (again.stored, again.duplicates) == (0, 1)
    history = rf.history("a/b c?")  # the "/" and "?" travel percent-encoded in the path
    assert history.user_id == "a/b c?" and {i.item_id for i in history.items} == {"a", "c"}
    assert rf.send_event("a/b c?", "d", rating=3.5, timestamp=100).stored == 1
    for odd in ("..", "."):  # these would be normalized away if sent as they are
        rf.send_event(odd, "b")
        assert rf.history(odd).user_id == odd and rf.recommendations(odd, k=1).user_id == odd
    many = rf.send_events({"user_id": f"bulk{i}", "item_id": "a"} for i in range(1001))  # two requests
    assert many.stored == 1001 and len({r.idempotency_key for r in many.results}) == 1001


def test_errors_raise_api_error_without_retrying(rf: Client):
    with pytest.raises(ApiError) as err:
        rf.item("no-such-item")
    assert err.value.status == 404 and err.value.detail == "unknown item: no-such-item"
    with pytest.raises(ApiError) as err:
        rf.reload("/no/such/model")
    assert err.value.status == 422 and "still serving" in err.value.detail
    with pytest.raises(ApiError) as err:
        rf.recommendations("u1", k=0)
    assert err.value.status == 422 and err.value.errors
    with pytest.raises(ApiError) as err:
        Client(api_key="wrong", http=rf._http).model()
    assert err.value.status == 401


def test_client_side_checks_refuse_bad_events_before_sending(rf: Client):
    with pytest.raises(ValueError, match="user_id"):
        rf.send_events([{"user_id": 7, "item_id": "a"}])
    with pytest.raises(ValueError, match="no events"):
        rf.send_events([])


# ---------------------------------------------------------------------- retries
class Script:
    """A transport answering from a script: statuses (or exceptions) in turn; records bodies."""

    def __init__(self, *steps: int | Exception) -> None:
        self.steps = list(steps)
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content) if request.content else {})
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if step == 503:
            return httpx.Response(503, json={"detail": "event store unavailable: down"}, headers={"Retry-After": "0"})
        events = self.bodies[-1].get("events", [])
        return httpx.Response(step, json={"stored": len(events), "duplicates": 0, "results": [
            {"idempotency_key": e["idempotency_key"], "status": "stored"} for e in events]})


def _scripted(script: Script, retries: int = 3) -> Client:
    return Client(http=httpx.Client(base_url="http://x", transport=httpx.MockTransport(script)),
                  retry=Retry(retries=retries, backoff=0.0))


def test_503_is_retried_with_the_same_idempotency_keys():
    script = Script(503, 503, 200)
    out = _scripted(script).send_events([{"user_id": "u", "item_id": "a"}, {"user_id": "u", "item_id": "b"}])
    assert out.stored == 2 and len(script.bodies) == 3
    keys = [[e["idempotency_key"] for e in body["events"]] for body in script.bodies]
    assert keys[0] == keys[1] == keys[2] and len(set(keys[0])) == 2


def test_retries_are_bounded():
    script = Script(503)
    with pytest.raises(ApiError) as err:
        _scripted(script, retries=2).send_event("u", "a")
    assert err.value.status == 503 and len(script.bodies) == 3  # the first try and two retries


def test_connection_errors_are_retried_then_raised():
    script = Script(httpx.ConnectError("refused"), 200)
    assert _scripted(script).send_event("u", "a").stored == 1 and len(script.bodies) == 2
    script = Script(httpx.ConnectError("refused"))
    with pytest.raises(httpx.ConnectError):
        _scripted(script, retries=1).send_event("u", "a")
    assert len(script.bodies) == 2


def test_ready_is_false_on_503_without_retrying():
    script = Script(503)
    assert _scripted(script).ready() is False and len(script.bodies) == 1


def test_backoff_grows_is_capped_and_honours_retry_after():
    retry = Retry(retries=5, backoff=0.1, max_backoff=0.3)
    waits = [retry.delay(a, None) for a in range(5)]
    for attempt, wait in enumerate(waits):
        most = min(0.1 * 2**attempt, 0.3)  # grows, capped; jitter takes up to half of it off
        assert wait is not None and 0.5 * most <= wait <= most
    assert retry.delay(5, None) is None
    answer = httpx.Response(503, headers={"Retry-After": "60"})
    assert retry.delay(0, answer) == 0.3  # capped at max_backoff
    assert 0.05 <= retry.delay(0, httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})) <= 0.1


# ---------------------------------------------------------------------- async
def test_async_client_on_the_app(tiny_itemknn_dir: Path, tmp_path: Path, keys):
    from recforge.serving.app import create_app

    app = create_app(tiny_itemknn_dir, f"sqlite:///{tmp_path / 'events.db'}", keys.file)

    async def main() -> None:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")
        async with AsyncClient(api_key=keys.read, http=http, retry=NO_WAIT) as rf:
            assert (await rf.model()).name == "itemknn"
            recs, similar = await asyncio.gather(rf.recommendations("u2", k=2), rf.similar("b", k=3))
            assert len(recs.items) == 2 and len(similar.items) == 3
            sent = await rf.send_events([{"user_id": "new", "item_id": "a"}])
            assert sent.stored == 1
            # "%" travels encoded (starlette's TestClient would decode it twice; httpx's ASGI
            # transport decodes once, as uvicorn does)
            for odd in ("%2F", "50%", "a/../b"):
                await rf.send_event(odd, "c")
                assert [i.item_id for i in (await rf.history(odd)).items] == ["c"]
            after = await rf.recommendations("new", k=2)
            assert after.fallback == "fold_in" and "a" not in {i.item_id for i in after.items}
            with pytest.raises(ApiError) as err:
                await rf.reload()
            assert err.value.status == 403  # a read key
        await http.aclose()

    try:
        asyncio.run(main())
    finally:
        app.state.service.store.close()
