"""Synthetic interaction logs with known structure, from toy size to tens of millions of rows.

Tests, demos and speed benchmarks need data that is free to ship, as large as asked and has
something to learn: users and items get latent topic vectors, items a Zipf-like popularity,
and each interaction picks among popular candidates by affinity. Ratings follow the latent
score; features (genres, year, a text blurb tied to the topics, demographics) are generated
from the same topics so that content-aware models have signal too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recforge.data.interactions import IdMap, Interactions
from recforge.errors import ConfigError

GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
    "Western", "Noir",
)
_ADJECTIVES = (
    "dark", "funny", "tender", "epic", "quiet", "violent", "strange", "hopeful", "bleak",
    "playful", "tense", "dreamy", "gritty", "whimsical", "haunting", "bold",
)
_SETTINGS = (
    "space", "city", "desert", "small-town", "ocean", "jungle", "school", "courtroom",
    "frontier", "palace", "subway", "arctic", "village", "casino", "hospital", "castle",
)
_KINDS = (  # one per genre, in the order of GENRES
    "action film", "adventure", "animated tale", "family film", "comedy", "crime story",
    "documentary", "drama", "fantasy", "horror story", "musical", "mystery", "romance",
    "science fiction", "thriller", "war story", "western", "noir",
)
_NOUNS = (
    "robots", "detectives", "pirates", "twins", "ghosts", "spies", "dragons", "lovers",
    "outlaws", "scientists", "soldiers", "chefs", "wizards", "astronauts", "orphans", "kings",
)
_OCCUPATIONS = (
    "student", "engineer", "artist", "writer", "educator", "programmer", "doctor", "lawyer",
    "scientist", "salesman", "retired", "other",
)
_RATING_SHARES = np.array([0.06, 0.11, 0.27, 0.34, 0.22])  # MovieLens-like 1..5 histogram
_CANDIDATES = 8
_CHUNK = 1 << 17
_T0 = 1_420_070_400  # 2015-01-01 UTC
_DAY = 86_400


def make_synthetic(
    n_users: int,
    n_items: int,
    n_interactions: int,
    seed: int = 0,
    rank: int = 16,
    with_features: bool = True,
) -> Interactions:
    """A seeded synthetic log of about `n_interactions` distinct (user, item) pairs.

    Every user has at least one interaction when ``n_interactions >= n_users``. User and item
    IDs are ``"1".."n"``. Memory stays near the output's size (items are drawn in chunks),
    so 2e7 interactions fit a laptop. The same arguments always give the same data.
    """
    if n_users < 1 or n_items < 1 or n_interactions < 1 or rank < 1:
        raise ConfigError("n_users, n_items, n_interactions and rank must all be positive")
    if n_interactions > n_users * n_items:
        raise ConfigError(
            f"{n_interactions} interactions cannot be distinct among {n_users} users × "
            f"{n_items} items"
        )
    rng = np.random.default_rng(seed)
    users_f, user_topics = _latent(rng, n_users, rank)
    items_f, item_topics = _latent(rng, n_items, rank)
    popularity = _Zipf(rng, n_items, exponent=0.9)
    activity = rng.lognormal(0.0, 1.0, n_users)
    activity /= activity.sum()

    users = _first_round_users(rng, n_users, n_items, n_interactions, activity)
    items = _pick_items(rng, users, users_f, items_f, popularity)
    users, items = _distinct(users, items, n_items)
    for attempt in range(10):
        missing = n_interactions - len(users)
        if missing <= 0:
            break
        size = int(missing * 1.25 * 2**attempt) + 16
        extra_users = rng.choice(n_users, size=size, p=activity)
        extra_items = _pick_items(rng, extra_users, users_f, items_f, popularity)
        users, items = _distinct(np.concatenate([users, extra_users]),
                                 np.concatenate([items, extra_items]), n_items)
    if len(users) > n_interactions:
        users, items = _trim(rng, users, items, n_interactions)

    ratings = _ratings(rng, users, items, users_f, items_f)
    starts = rng.integers(_T0, _T0 + 3 * 365 * _DAY, n_users)
    timestamps = starts[users] + rng.exponential(60 * _DAY, len(users)).astype(np.int64)

    user_ids = np.arange(1, n_users + 1).astype(str)
    item_ids = np.arange(1, n_items + 1).astype(str)
    return Interactions(
        user_map=IdMap(user_ids),
        item_map=IdMap(item_ids),
        user_idx=users.astype(np.int32),
        item_idx=items.astype(np.int32),
        ratings=ratings,
        timestamps=timestamps.astype(np.int64),
        user_features=_user_features(rng, user_ids, user_topics) if with_features else None,
        item_features=_item_features(rng, item_ids, item_topics) if with_features else None,
    )


def _latent(rng: np.random.Generator, n: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Factors (n, rank): noise plus a main and a side topic; returns (factors, topics (n, 2))."""
    topics = rng.integers(0, rank, size=(n, 2))
    factors = rng.normal(0.0, 0.3, size=(n, rank)).astype(np.float32)
    rows = np.arange(n)
    factors[rows, topics[:, 0]] += 1.0
    factors[rows, topics[:, 1]] += 0.5
    return factors, topics


class _Zipf:
    """Zipf-like popularity over items in random order: P(popularity rank r) ∝ r^-a.

    Sampled through the inverse CDF of the continuous power law, which costs a few array
    operations per draw instead of a search over n items.
    """

    def __init__(self, rng: np.random.Generator, n: int, exponent: float = 0.9) -> None:
        self.order = rng.permutation(n)
        self.power = 1.0 - exponent
        self.span = (n + 1.0) ** self.power - 1.0

    def sample(self, rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
        x = (1.0 + rng.random(size) * self.span) ** (1.0 / self.power)
        rank = np.minimum(x.astype(np.int64) - 1, len(self.order) - 1)
        return self.order[rank]


def _first_round_users(
    rng: np.random.Generator, n_users: int, n_items: int, n: int, activity: np.ndarray
) -> np.ndarray:
    """User of each interaction slot, user-major: one per user, the rest by activity."""
    base = 1 if n >= n_users else 0
    counts = base + rng.multinomial(n - base * n_users, activity)
    counts = np.minimum(counts, n_items)
    return np.repeat(np.arange(n_users), counts)


def _pick_items(
    rng: np.random.Generator,
    users: np.ndarray,
    users_f: np.ndarray,
    items_f: np.ndarray,
    popularity: _Zipf,
) -> np.ndarray:
    """Per slot: draw candidates by popularity, keep one by softmax over affinity (Gumbel-max)."""
    out = np.empty(len(users), dtype=np.int64)
    for start in range(0, len(users), _CHUNK):
        u = users[start:start + _CHUNK]
        cand = popularity.sample(rng, (len(u), _CANDIDATES))
        scores = np.einsum("nr,nkr->nk", users_f[u], items_f[cand], optimize=False)
        scores *= 3.0
        scores += rng.gumbel(size=scores.shape).astype(np.float32)
        out[start:start + len(u)] = cand[np.arange(len(u)), scores.argmax(axis=1)]
    return out


def _distinct(users: np.ndarray, items: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs in user-major, item-minor order."""
    keys = users.astype(np.int64) * n_items + items
    keys.sort()
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    return keys // n_items, keys % n_items


def _trim(
    rng: np.random.Generator, users: np.ndarray, items: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop random rows down to `n`, never a user's first row (so nobody is left empty)."""
    first = np.ones(len(users), dtype=bool)
    first[1:] = users[1:] != users[:-1]
    droppable = np.flatnonzero(~first)
    drop = rng.choice(droppable, size=min(len(users) - n, len(droppable)), replace=False)
    keep = np.ones(len(users), dtype=bool)
    keep[drop] = False
    return users[keep], items[keep]


def _ratings(
    rng: np.random.Generator,
    users: np.ndarray,
    items: np.ndarray,
    users_f: np.ndarray,
    items_f: np.ndarray,
) -> np.ndarray:
    """1..5 stars: latent affinity + user and item biases + noise, cut at fixed shares."""
    user_bias = rng.normal(0.0, 0.3, len(users_f)).astype(np.float32)
    item_bias = rng.normal(0.0, 0.3, len(items_f)).astype(np.float32)
    score = np.empty(len(users), dtype=np.float32)
    for start in range(0, len(users), _CHUNK):
        u, i = users[start:start + _CHUNK], items[start:start + _CHUNK]
        score[start:start + len(u)] = np.einsum("nr,nr->n", users_f[u], items_f[i])
    score += user_bias[users] + item_bias[items]
    score += rng.normal(0.0, 0.4, len(score)).astype(np.float32)
    sample = score[:: max(1, len(score) // 1_000_000)]
    cuts = np.quantile(sample, np.cumsum(_RATING_SHARES)[:-1])
    return (np.searchsorted(cuts, score) + 1).astype(np.float32)


def _user_features(
    rng: np.random.Generator, user_ids: np.ndarray, topics: np.ndarray
) -> pd.DataFrame:
    """Age, gender and occupation, loosely tied to each user's topics."""
    n = len(user_ids)
    age = np.clip(rng.normal(34, 12, n), 16, 75).astype(np.int64)
    p_male = np.where(topics[:, 0] % 2 == 0, 0.65, 0.4)
    gender = np.where(rng.random(n) < p_male, "M", "F")
    occ_idx = np.where(rng.random(n) < 0.6, topics[:, 1], rng.integers(0, 99, n))
    occupation = np.asarray(_OCCUPATIONS)[occ_idx % len(_OCCUPATIONS)]
    return pd.DataFrame({"age": age, "gender": gender, "occupation": occupation},
                        index=pd.Index(user_ids, dtype=object, name="user_id"))


def _item_features(
    rng: np.random.Generator, item_ids: np.ndarray, topics: np.ndarray
) -> pd.DataFrame:
    """Title, year, genres (multi-hot ``genre_<Name>`` + ``"A|B"``) and a text blurb."""
    n = len(item_ids)
    main, side = topics[:, 0], topics[:, 1]
    genre_of = np.asarray(GENRES)
    g_main, g_side = main % len(GENRES), side % len(GENRES)
    multi_hot = np.zeros((n, len(GENRES)), dtype=np.int8)
    multi_hot[np.arange(n), g_main] = 1
    has_side = (g_side != g_main) & (rng.random(n) < 0.5)
    multi_hot[np.flatnonzero(has_side), g_side[has_side]] = 1
    genres = pd.Series(genre_of[g_main], dtype=object)
    lo, hi = np.minimum(g_main, g_side), np.maximum(g_main, g_side)
    both = pd.Series(genre_of[lo]) + "|" + pd.Series(genre_of[hi])
    genres[has_side] = both[has_side]

    year = (1950 + 70 * rng.beta(4.0, 1.5, n)).astype(np.int64)
    adj = pd.Series(np.asarray(_ADJECTIVES)[main % len(_ADJECTIVES)])
    setting = pd.Series(np.asarray(_SETTINGS)[side % len(_SETTINGS)])
    kind = pd.Series(np.asarray(_KINDS)[g_main])
    noun = pd.Series(np.asarray(_NOUNS)[rng.integers(0, len(_NOUNS), n)])
    text = adj + " " + setting + " " + kind + " with " + noun
    title = ("The " + adj.str.title() + " " + noun.str.title() + " "
             + pd.Series(np.arange(1, n + 1)).astype(str)
             + " (" + pd.Series(year).astype(str) + ")")
    frame = pd.DataFrame(
        {"title": title.to_numpy(), "year": year.astype(np.float64),
         "genres": genres.to_numpy(), "text": text.to_numpy()},
        index=pd.Index(item_ids, dtype=object, name="item_id"),
    )
    hot = pd.DataFrame(multi_hot, columns=[f"genre_{g}" for g in GENRES], index=frame.index)
    return pd.concat([frame, hot], axis=1)
