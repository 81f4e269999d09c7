"""A served sequence model (`transition`): stored events continue a known user's sequence at
once, and a session's order is its sequence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.registry import create_model, load_model

# a → b and d → e twice each; u9 has seen g then a. Items by popularity: a, then b–f, then g.
SEQUENCES = {"u1": "abc", "u2": "abc", "u3": "def", "u4": "def", "u9": "ga"}


@pytest.fixture(scope="module")
def transition_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [(u, item, t) for u, seq in SEQUENCES.items() for t, item in enumerate(seq)]
    data = Interactions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    return create_model("transition").fit(data).save(tmp_path_factory.mktemp("seq") / "transition")


def _ids(result: dict) -> list[str]:
    return [it["item_id"] for it in result["items"]]


def test_an_event_changes_a_known_users_next_items_at_once(make_client, transition_dir: Path):
    client = make_client(transition_dir)
    model = load_model(transition_dir)
    before = client.get("/v1/users/u9/recommendations?k=3").json()
    assert _ids(before) == ["b", "c", "d"]              # after a comes b, then the popular c, d
    client.post("/v1/events", json={"events": [{"user_id": "u9", "item_id": "d"}]})
    after = client.get("/v1/users/u9/recommendations?k=3").json()
    assert after["fallback"] is None and _ids(after)[0] == "e"   # after d comes e: not the old list's next
    expected = model.score_histories([model.item_map_.lookup(list("gad"))])[0]
    assert [it["score"] for it in after["items"]] == pytest.approx(
        expected[model.item_map_.lookup(_ids(after))].tolist(), rel=1e-5)
    # the event continues the sequence whether or not seen items are excluded, and in batches
    kept = client.get("/v1/users/u9/recommendations?k=3&exclude_seen=false").json()
    assert _ids(kept)[0] == "e"
    batch = client.post("/v1/recommendations", json={"user_ids": ["u9", "u1"], "k": 3}).json()["results"]
    assert _ids(batch[0]) == _ids(after) and batch[1]["fallback"] is None


def test_explanations_follow_the_sequence_that_was_ranked(make_client, transition_dir: Path):
    client = make_client(transition_dir)

    def top_explanation() -> dict:
        return client.get("/v1/users/u9/recommendations?k=1&explain=true").json()["items"][0]["explanation"]

    # the model's own: the last training item a raised b's score
    assert top_explanation()["reason"] == "history_contribution"
    assert [b["item_id"] for b in top_explanation()["because"]] == ["a"]
    client.post("/v1/events", json={"events": [{"user_id": "u9", "item_id": "d"}]})
    # e now follows the event d: the training-only explanation would be stale, so d is named
    after = top_explanation()
    assert after["reason"] == "similar_to_history" and after["because"][0]["item_id"] == "d"


def test_a_sessions_order_is_its_sequence(make_client, transition_dir: Path):
    client = make_client(transition_dir)

    def top(items: list[str]) -> str:
        result = client.post("/v1/recommendations", json={"items": items, "k": 1}).json()["results"][0]
        assert result["fallback"] is None
        return _ids(result)[0]

    assert (top(["a", "d"]), top(["d", "a"])) == ("e", "b")
