"""Request and response models of the HTTP API, with every size bounded, and the body limit.

IDs are strings on the wire (JSON integers are accepted on input and turned into strings),
1-256 characters without control characters. Unknown fields are refused, so a misspelt
field is a 422 rather than silently ignored.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from starlette.exceptions import HTTPException

MAX_K = 1000
MAX_BATCH_USERS = 100
MAX_SESSION_ITEMS = 500
MAX_EVENTS = 1000
MAX_PAIRS = 1000
MAX_FEATURES = 32
#: default request body limit: 1 MiB holds 1000 events comfortably
MAX_BODY_BYTES = 1 << 20


def _coerce_id(value: Any) -> Any:
    """JSON integers become strings; anything else is left to validation."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Id = Annotated[
    str,
    BeforeValidator(_coerce_id),
    StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$"),
]
Key = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
EventType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,32}$")]
K = Annotated[int, Field(ge=1, le=MAX_K, description=f"number of items, 1..{MAX_K}")]
FeatureName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]


def _feature_value(value: Any) -> Any:
    """A user feature value: a string (at most 256 characters, no control characters) or a finite number."""
    if isinstance(value, str):
        if len(value) > 256 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError("a feature string must have at most 256 characters and no control characters")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if abs(value) > 1e15 or not math.isfinite(value):
            raise ValueError("a feature number must be finite and at most 1e15 in size")
        return value
    kind = {bool: "true/false", type(None): "null", dict: "an object", list: "an array"}.get(type(value), "that")
    raise ValueError(f"a feature must be a string or a number, not {kind}")


FeatureValue = Annotated[Any, AfterValidator(_feature_value)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------- requests
class EventIn(Strict):
    """An interaction; only the two IDs are required."""

    user_id: Id
    item_id: Id
    rating: float | None = Field(None, ge=-1e9, le=1e9, allow_inf_nan=False)
    type: EventType = "interaction"
    timestamp: int | None = Field(None, ge=0, le=2**53, description="Unix seconds")
    idempotency_key: Key | None = Field(
        None, description="Client-chosen unique key: an event with a stored key is not stored again")


class EventsIn(Strict):
    events: list[EventIn] = Field(..., min_length=1, max_length=MAX_EVENTS)


class RecommendationsIn(Strict):
    """Either a batch of known or new users, or an anonymous session of item IDs."""

    user_ids: list[Id] | None = Field(None, min_length=1, max_length=MAX_BATCH_USERS)
    items: list[Id] | None = Field(
        None, min_length=1, max_length=MAX_SESSION_ITEMS,
        description="Anonymous session: its items folded into the model (Recommender.score_histories), "
                    "or ranked by the request's features for a feature model")
    k: K = 10
    exclude_seen: bool = True
    explain: bool = False
    features: dict[FeatureName, FeatureValue] | None = Field(
        None, max_length=MAX_FEATURES,
        description="User features (strings or numbers, e.g. age, gender, occupation, zip) of the users "
                    "in this request unknown to the model: a feature model ranks them by these "
                    "(fallback \"features\"); other models ignore them")

    @model_validator(mode="after")
    def _one_of(self) -> RecommendationsIn:
        if (self.user_ids is None) == (self.items is None):
            raise ValueError("give exactly one of 'user_ids' (a batch of users) or 'items' (a session)")
        return self


class Pair(Strict):
    user_id: Id
    item_id: Id


class ScoreIn(Strict):
    pairs: list[Pair] = Field(..., min_length=1, max_length=MAX_PAIRS)


class ReloadIn(Strict):
    model_dir: str | None = Field(
        None, min_length=1, max_length=4096,
        description="Artifact directory to serve; default: reload the current one from disk")


# ---------------------------------------------------------------------- responses
class ModelInfo(BaseModel):
    name: str
    version: str = Field(description="Identifies this artifact: a hash of its meta.json")
    fingerprint: str = Field(description="Hash of the training data")
    created: str
    task: str
    n_users: int
    n_items: int
    recforge_version: str
    runtime: str = Field("torch", description="What computes the scores: torch, or onnx (onnxruntime)")


class Because(BaseModel):
    """One reason: a history item (`item_id`) or a user/item feature (`feature`) and its weight."""

    item_id: str | None = None
    feature: str | None = None
    title: str | None = None
    contribution: float = Field(description="Share of the score (history_contribution, feature_match) "
                                            "or cosine similarity (similar_to_*)")
    similarity: float | None = Field(None, description="The cosine similarity, for similarity-based reasons")


class Explanation(BaseModel):
    reason: Literal["history_contribution", "feature_match", "similar_to_history", "similar_to_session",
                    "user_features", "popular", "model_score"] = Field(
        description="history_contribution: removing a named item lowers the score by its contribution; "
                    "feature_match: per-feature terms of the score; similar_to_*: the history or session "
                    "items nearest to the item; user_features: ranked from the request's features; "
                    "popular: the popularity fallback")
    because: list[Because] = []
    popularity: int | None = Field(None, description="Training interactions of the item")


class RecItem(BaseModel):
    item_id: str
    score: float | None = Field(description="The model's score (higher ranks first; its scale is the model's). "
                                            "With fallback popularity: the share of training users who "
                                            "interacted with the item, 0 to 1")
    rank: int
    title: str | None = None
    explanation: Explanation | None = None


class UserRecommendations(BaseModel):
    user_id: str | None
    items: list[RecItem]
    fallback: Literal["popularity", "fold_in", "features"] | None = Field(
        None, description="For users unknown to the model: features (a feature model and the request's "
                          "features), fold_in (their stored events folded into the model) or popularity")


class Recommendations(UserRecommendations):
    model: ModelInfo


class BatchRecommendations(BaseModel):
    results: list[UserRecommendations]
    unknown_items: list[str] = Field([], description="Session items unknown to the model (ignored)")
    model: ModelInfo


class SimilarItem(BaseModel):
    item_id: str
    score: float | None
    rank: int
    title: str | None = None


class Similar(BaseModel):
    item_id: str
    title: str | None
    items: list[SimilarItem]
    model: ModelInfo


class Item(BaseModel):
    item_id: str
    title: str | None
    popularity: int
    features: dict[str, Any]


class PairScore(BaseModel):
    user_id: str
    item_id: str
    score: float | None
    known_user: bool
    known_item: bool


class Scores(BaseModel):
    scores: list[PairScore]
    model: ModelInfo


class EventResult(BaseModel):
    idempotency_key: str | None
    status: Literal["stored", "duplicate"]


class EventsOut(BaseModel):
    stored: int
    duplicates: int
    results: list[EventResult]


class HistoryItem(BaseModel):
    item_id: str
    title: str | None
    rating: float | None
    source: Literal["training", "event"]
    type: str | None = None
    timestamp: int | None = None


class History(BaseModel):
    user_id: str
    known: bool = Field(description="Whether the model was trained on this user")
    items: list[HistoryItem]


class Users(BaseModel):
    users: list[str]
    total: int
    offset: int
    limit: int


class Status(BaseModel):
    status: str


class Reloaded(BaseModel):
    model: ModelInfo
    previous: ModelInfo
    propagated: bool = Field(description="Published to the other workers sharing the store")


class ErrorOut(BaseModel):
    detail: str


# ---------------------------------------------------------------------- body size limit
class BodyTooLarge(HTTPException):
    """Raised while the body streams in; an HTTPException so FastAPI's body parsing passes it on."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=f"request body over {max_bytes} bytes")


class BodySizeLimitMiddleware:
    """Answer 413 to request bodies over `max_bytes`, declared or streamed (pure ASGI)."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reject(send, 400, "invalid Content-Length header")
                    return
                if declared > self.max_bytes:
                    await _reject(send, 413, f"request body over {self.max_bytes} bytes")
                    return
        received = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reject(send, 413, f"request body over {self.max_bytes} bytes")


async def _reject(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
