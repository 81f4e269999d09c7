"""Evaluation metrics as small pure numpy functions; no metric ever calls a model.

Three families:

* rating prediction: `rmse`, `mae` on aligned true / predicted arrays;
* classification of "liked" (rating >= threshold): `accuracy`, `precision`, `recall`,
  `f1_score` on boolean arrays, `auc_roc` (rank-based, ties averaged) and `log_loss` on scores;
* ranking at K on a *hit matrix*: ``hits`` is (n_users, K) bool in rank order (``hits[u, r]``
  is True when the item at rank ``r + 1`` of user ``u``'s list is one of the user's test
  items; padding is False) and ``n_relevant`` (n_users,) counts each user's test items,
  including test items the model cannot rank. Each ``*_at_k`` function returns the per-user
  vector (so two models can be compared with a paired test); the reported figure is its mean.
  Definitions follow the benchmark protocol (``shared/PROTOCOL.md``);
* beyond accuracy, on recommended item-index lists ``items`` (n_users, K) with -1 padding:
  `catalog_coverage`, `novelty`, `intra_list_diversity`, `average_popularity`, `gini_exposure`.

A list shorter than K is a list padded with misses: Precision@K always divides by K.
"""

from __future__ import annotations

import numpy as np

from recforge.linalg import Matrix, unit_rows

# ----------------------------------------------------------------------------- rating


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error; NaN for empty input.

    >>> rmse([4.0, 2.0, 5.0], [3.0, 2.0, 5.0])  # √(1/3)
    0.57735
    """
    t, p = _aligned(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2))) if len(t) else float("nan")


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error; NaN for empty input."""
    t, p = _aligned(y_true, y_pred)
    return float(np.mean(np.abs(t - p))) if len(t) else float("nan")


def _aligned(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"arrays differ in length ({len(a)} vs {len(b)})")
    return a, b


# ----------------------------------------------------------------------------- classification


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of boolean truth vs boolean prediction."""
    t = np.asarray(y_true, bool).ravel()
    p = np.asarray(y_pred, bool).ravel()
    if t.shape != p.shape:
        raise ValueError(f"arrays differ in length ({len(t)} vs {len(p)})")
    tp = int(np.sum(t & p))
    fp = int(np.sum(~t & p))
    fn = int(np.sum(t & ~p))
    tn = int(np.sum(~t & ~p))
    return tp, fp, fn, tn


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of correct boolean predictions."""
    tp, fp, fn, tn = confusion(y_true, y_pred)
    n = tp + fp + fn + tn
    return (tp + tn) / n if n else float("nan")


def precision(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """tp / (tp + fp); 0 when nothing is predicted positive."""
    tp, fp, _, _ = confusion(y_true, y_pred)
    return tp / (tp + fp) if tp + fp else 0.0


def recall(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """tp / (tp + fn); 0 when there is no positive."""
    tp, _, fn, _ = confusion(y_true, y_pred)
    return tp / (tp + fn) if tp + fn else 0.0


def f1_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Harmonic mean of `precision` and `recall`: 2tp / (2tp + fp + fn)."""
    tp, fp, fn, _ = confusion(y_true, y_pred)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def auc_roc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann–Whitney U) formula, ties counted half.

    AUC = (Σ rank(positives) − P(P+1)/2) / (P·N) with average ranks; NaN when one class is
    empty.

    Of the 2 × 2 positive/negative pairs, one is ordered wrongly and one is tied:

    >>> auc_roc([True, False, True, False], [0.9, 0.9, 0.4, 0.6])
    0.375
    >>> auc_roc([True, True], [0.2, 0.3])
    nan
    """
    t = np.asarray(y_true, bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    if t.shape != s.shape:
        raise ValueError(f"arrays differ in length ({len(t)} vs {len(s)})")
    n_pos = int(t.sum())
    n_neg = len(t) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata  # lazy: scipy.stats is slow to import

    ranks = rankdata(s)
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y_true: np.ndarray, prob: np.ndarray, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy of probabilities `prob` (clipped to [eps, 1 − eps])."""
    t = np.asarray(y_true, bool).ravel()
    p = np.clip(np.asarray(prob, np.float64).ravel(), eps, 1 - eps)
    if t.shape != p.shape:
        raise ValueError(f"arrays differ in length ({len(t)} vs {len(p)})")
    if len(t) == 0:
        return float("nan")
    return float(-np.mean(np.where(t, np.log(p), np.log1p(-p))))


def user_auc(scores: np.ndarray, relevant: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Per-user AUC from full score rows (optional ranking metric).

    `scores`, `relevant` and `eligible` are (n_users, n_items); only eligible items are ranked
    (e.g. not the user's training items). A user's AUC is the chance that a relevant eligible
    item outscores a non-relevant eligible one (ties half); NaN without both kinds.
    """
    s = np.asarray(scores, np.float64)
    rel = np.asarray(relevant, bool) & np.asarray(eligible, bool)
    elig = np.asarray(eligible, bool)
    # ineligible items sink below every eligible one and so shift eligible ranks by m_u
    low = np.nanmin(np.where(elig, s, np.inf), axis=1, keepdims=True) - 1.0
    s = np.where(elig, s, np.where(np.isfinite(low), low, 0.0))
    from scipy.stats import rankdata  # lazy: scipy.stats is slow to import

    ranks = rankdata(s, axis=1)
    m = (~elig).sum(axis=1)
    n_pos = rel.sum(axis=1)
    n_neg = elig.sum(axis=1) - n_pos
    rank_sum = np.where(rel, ranks, 0.0).sum(axis=1) - m * n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


# ----------------------------------------------------------------------------- ranking @K


def _hits(hits: np.ndarray, n_relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(hits, bool)
    if h.ndim != 2:
        raise ValueError(f"hits must be (n_users, K), got shape {h.shape}")
    n = np.asarray(n_relevant, np.int64).ravel()
    if len(n) != h.shape[0]:
        raise ValueError(f"n_relevant has {len(n)} users, hits has {h.shape[0]}")
    return h, n


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def precision_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """hits in the top K / K."""
    h, _ = _hits(hits, n_relevant)
    return h.sum(axis=1) / h.shape[1] if h.shape[1] else np.zeros(h.shape[0])


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """hits in the top K / |test items of the user| (0 for a user without test items)."""
    h, n = _hits(hits, n_relevant)
    return _safe_div(h.sum(axis=1), n)


def f1_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Per-user harmonic mean of Precision@K and Recall@K (0 when both are 0)."""
    p = precision_at_k(hits, n_relevant)
    r = recall_at_k(hits, n_relevant)
    return _safe_div(2 * p * r, p + r)


def hit_rate_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """1 if any of the top K is a test item, else 0."""
    h, _ = _hits(hits, n_relevant)
    return np.asarray(h.any(axis=1), np.float64)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """DCG / IDCG with DCG = Σ_r hit_r / log2(r + 1), IDCG over min(K, |test items|) hits.

    One user hits at ranks 1 and 3 of 3 with two test items; one has no test item:

    >>> ndcg_at_k([[True, False, True], [False, False, False]], [2, 0])  # (1 + 1/2) / (1 + 1/log2 3)
    array([0.91972, 0.     ])
    """
    h, n = _hits(hits, n_relevant)
    k = h.shape[1]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = h @ discount
    ideal = np.concatenate([[0.0], np.cumsum(discount)])
    idcg = ideal[np.minimum(n, k)]
    return _safe_div(dcg, idcg)


def average_precision_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """AP@K = Σ_r precision@r · hit_r / min(K, |test items|); its mean is MAP@K."""
    h, n = _hits(hits, n_relevant)
    k = h.shape[1]
    prec_at_r = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    return _safe_div((prec_at_r * h).sum(axis=1), np.minimum(n, k))


def reciprocal_rank_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """1 / rank of the first hit in the top K, 0 if none; its mean is MRR@K.

    >>> reciprocal_rank_at_k([[False, False, True], [False, False, False]], [1, 1])
    array([0.33333, 0.     ])
    """
    h, _ = _hits(hits, n_relevant)
    any_hit = h.any(axis=1)
    first = np.argmax(h, axis=1) + 1
    return np.where(any_hit, 1.0 / first, 0.0)


#: ranking metric name -> per-user function of (hits, n_relevant)
RANKING_METRICS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "f1": f1_at_k,
    "ndcg": ndcg_at_k,
    "hr": hit_rate_at_k,
    "map": average_precision_at_k,
    "mrr": reciprocal_rank_at_k,
}


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Every ranking metric at `k` (the first `k` columns of `hits`): name -> per-user vector."""
    h, n = _hits(hits, n_relevant)
    if k > h.shape[1]:
        raise ValueError(f"k={k} exceeds the list depth {h.shape[1]}")
    sub = h[:, :k]
    return {name: fn(sub, n) for name, fn in RANKING_METRICS.items()}


# ----------------------------------------------------------------------------- beyond accuracy


def _valid(items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    it = np.asarray(items, np.int64)
    if it.ndim != 2:
        raise ValueError(f"items must be (n_users, K), got shape {it.shape}")
    return it, it >= 0


def catalog_coverage(items: np.ndarray, n_items: int) -> float:
    """Distinct items recommended to anyone / items in the catalog (the training items)."""
    it, valid = _valid(items)
    if n_items <= 0:
        return float("nan")
    return len(np.unique(it[valid])) / n_items


def exposure(items: np.ndarray, n_items: int) -> np.ndarray:
    """(n_items,) how many lists each item appears in."""
    it, valid = _valid(items)
    return np.bincount(it[valid], minlength=n_items)


def gini_exposure(items: np.ndarray, n_items: int) -> float:
    """Gini index of item exposure over the whole catalog: 0 = even, → 1 = a few items only.

    G = Σ_i (2i − n − 1) x_(i) / (n Σ x) with the counts x sorted ascending, i = 1..n.
    """
    x = np.sort(exposure(items, n_items)).astype(np.float64)
    n = len(x)
    total = x.sum()
    if n == 0 or total == 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def _row_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean of `values` over the valid cells of each row; NaN for an empty row."""
    count = valid.sum(axis=1)
    total = np.where(valid, values, 0.0).sum(axis=1)
    out = np.full(len(count), np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def novelty(items: np.ndarray, item_popularity: np.ndarray, n_users: int) -> np.ndarray:
    """Per-user mean self-information −log2(pop_i / n_users) of the recommended items.

    `item_popularity` is the number of training users of each item (clipped to ≥ 1 so an
    item nobody used is as novel as an item one user used). NaN for an empty list.
    """
    it, valid = _valid(items)
    pop = np.maximum(np.asarray(item_popularity, np.float64), 1.0)
    info = -np.log2(pop / max(n_users, 1))
    return _row_mean(info[np.where(valid, it, 0)], valid)


def average_popularity(items: np.ndarray, item_popularity: np.ndarray) -> np.ndarray:
    """Per-user mean training popularity of the recommended items (NaN for an empty list)."""
    it, valid = _valid(items)
    pop = np.asarray(item_popularity, np.float64)
    return _row_mean(pop[np.where(valid, it, 0)], valid)


def intra_list_diversity(
    items: np.ndarray, item_vectors: Matrix, max_block: int = 4096
) -> np.ndarray:
    """Per-user 1 − mean pairwise cosine similarity of the list's items.

    `item_vectors` is (n_items, d), dense (embeddings, features) or sparse (e.g. the items'
    user columns of the training matrix). Lists with fewer than two items give NaN. Users are
    processed in blocks whose distinct items stay under `max_block`.
    """
    it, valid = _valid(items)
    n, k = it.shape
    out = np.full(n, np.nan)
    if k < 2 or n == 0:
        return out
    unit = unit_rows(item_vectors, np.float64)
    block = max(1, max_block // k)
    pair = ~np.eye(k, dtype=bool)
    for start in range(0, n, block):
        rows = it[start:start + block]
        ok = valid[start:start + block]
        uniq, pos = np.unique(np.where(ok, rows, -1), return_inverse=True)
        pos = pos.reshape(rows.shape)
        sub = unit[np.where(uniq >= 0, uniq, 0)]
        sims = sub @ sub.T
        sims = sims if isinstance(sims, np.ndarray) else sims.toarray()
        cell = sims[pos[:, :, None], pos[:, None, :]]
        mask = ok[:, :, None] & ok[:, None, :] & pair
        count = mask.sum(axis=(1, 2))
        total = np.where(mask, cell, 0.0).sum(axis=(1, 2))
        res = np.full(len(rows), np.nan)
        np.divide(total, count, out=res, where=count > 0)
        out[start:start + block] = 1.0 - res
    return out
