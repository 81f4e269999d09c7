"""Request and response models of the HTTP API, with every size bounded (pydantic only: the
client `recforge.client` reads its answers with them without the server's dependencies).

Input is read strictly, as the OpenAPI document describes it: IDs are JSON strings (a JSON
integer is refused, the same in every endpoint: IDs such as ``"0042"`` and ``"42"`` differ),
1-256 characters without control characters; an integer field takes only a JSON integer
(``"timestamp": false``, ``"7"`` or ``1.5`` is refused; ``7.0`` is 7, as JSON Schema has it), a
boolean only ``true``/``false``, a number an integer or a decimal. Unknown fields and query
parameters are refused, so a misspelt name is a 422 rather than silently ignored.
"""

from __future__ import annotations

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
from pydantic.json_schema import WithJsonSchema

MAX_K = 1000
MAX_BATCH_USERS = 100
MAX_SESSION_ITEMS = 500
MAX_EVENTS = 1000
MAX_PAIRS = 1000
MAX_FEATURES = 32


#: an ID: no control characters (PostgreSQL cannot store NUL; the others are never intended)
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=ID_PATTERN)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
EventType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,32}$")]


def _json_integer(value: Any) -> Any:
    """A JSON Schema integer: an int, or a float without a fraction (``7.0``); never a bool."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: integer fields of request bodies (strict: ``true`` and ``"7"`` are refused); the bounds come
#: before the validator so that the OpenAPI document states them as minimum/maximum
K = Annotated[int, Field(ge=1, le=MAX_K, description=f"number of items, 1..{MAX_K}"),
              BeforeValidator(_json_integer)]
Timestamp = Annotated[int, Field(ge=0, le=2**53), BeforeValidator(_json_integer)]
FEATURE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
FeatureName = Annotated[str, StringConstraints(pattern=FEATURE_NAME_PATTERN)]


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
#: user features as the OpenAPI document states them: names by pattern, strings or bounded numbers
Features = Annotated[dict[FeatureName, FeatureValue], WithJsonSchema({
    "type": "object", "maxProperties": MAX_FEATURES, "additionalProperties": False,
    "patternProperties": {FEATURE_NAME_PATTERN: {"anyOf": [
        {"type": "string", "maxLength": 256, "pattern": "^[^\\x00-\\x1f\\x7f]*$"},
        {"type": "number", "minimum": -1e15, "maximum": 1e15}]}},
})]


class Strict(BaseModel):
    """A request body: unknown fields refused, JSON types taken as declared (no coercion)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# ---------------------------------------------------------------------- requests
class EventIn(Strict):
    """An interaction; only the two IDs are required."""

    user_id: Id
    item_id: Id
    rating: float | None = Field(None, ge=-1e9, le=1e9, allow_inf_nan=False)
    type: EventType = "interaction"
    timestamp: Timestamp | None = Field(None, description="Unix seconds")
    idempotency_key: Key | None = Field(
        None, description="Client-chosen unique key: an event with a stored key is not stored again")


class EventsIn(Strict):
    events: list[EventIn] = Field(..., min_length=1, max_length=MAX_EVENTS)


class RecommendationsIn(Strict):
    """Either a batch of known or new users, or an anonymous session of item IDs."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["user_ids"]},
                                                           {"required": ["items"]}]})

    user_ids: list[Id] = Field(
        default_factory=list, min_length=1, max_length=MAX_BATCH_USERS,
        description="A batch of users, known to the model or not; give this or `items`, not both")
    items: list[Id] = Field(
        default_factory=list, min_length=1, max_length=MAX_SESSION_ITEMS,
        description="Anonymous session: its items folded into the model (Recommender.score_histories), "
                    "or ranked by the request's features for a feature model; give this or "
                    "`user_ids`, not both")
    k: K = 10
    exclude_seen: bool = True
    explain: bool = False
    features: Features | None = Field(
        None, max_length=MAX_FEATURES,
        description="User features (strings or numbers, e.g. age, gender, occupation, zip) of the users "
                    "in this request unknown to the model: a feature model ranks them by these "
                    "(fallback \"features\"); other models ignore them")

    @model_validator(mode="after")
    def _one_of(self) -> RecommendationsIn:
        if ("user_ids" in self.model_fields_set) == ("items" in self.model_fields_set):
            raise ValueError("give exactly one of 'user_ids' (a batch of users) or 'items' (a session)")
        return self


class Pair(Strict):
    user_id: Id
    item_id: Id


class ScoreIn(Strict):
    pairs: list[Pair] = Field(..., min_length=1, max_length=MAX_PAIRS)


class ReloadIn(Strict):
    model_dir: str | None = Field(
        None, min_length=1, max_length=4096, pattern=ID_PATTERN,
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
    propagated: bool = Field(description="Every worker of this launch serves the new model (false when "
                                         "some did not within the timeout, or the store was unreachable)")
    workers: int = Field(1, description="Worker processes of this launch (`recforge serve --workers N`)")
    serving: int = Field(1, description="How many of them serve the new model as this answer is sent")


class ErrorOut(BaseModel):
    detail: str
