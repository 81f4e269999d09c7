"""Approximate maximum-inner-product retrieval for large catalogs (faiss).

Models whose score ranks items like an inner product of a user vector with an item vector
(iALS, MF, BPR, two-tower; see `Recommender.mips_item_vectors`) can carry an `AnnIndex` over
their item vectors. `Recommender.recommend_idx` then asks the index for a few more
candidates than the list needs per user (k, plus the user's seen items, plus a margin),
re-scores those candidates exactly with the model's own `score`, drops the excluded ones and
orders the rest with `recforge.ranking.top_k` — so a list is never shortened by exclusions,
never holds a seen item, and its scores are the model's exact scores.

faiss rather than hnswlib: faiss offers both a graph index (HNSW) and inverted-file indexes
(IVF) with the inner-product metric in one maintained library with wheels for Linux, macOS
and Windows; its indexes serialize to bytes (stored as a part of the artifact, checksummed
like every other file) and search batches of queries on all cores. Installed by the ``ann``
extra (``pip install recforge[ann]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from recforge.errors import ArtifactError, ConfigError

__all__ = ["INDEX_FILE", "AnnIndex", "IndexKind"]

#: the index's file in an artifact directory
INDEX_FILE = "ann.faiss"
IndexKind = Literal["hnsw", "ivf", "flat"]
KINDS: tuple[str, ...] = ("hnsw", "ivf", "flat")


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ConfigError("ANN retrieval needs faiss-cpu: pip install 'recforge[ann]'") from None
    return faiss


@dataclass
class AnnIndex:
    """An inner-product index over a model's item vectors (one row per item index).

    `kind`: ``hnsw`` (graph, the default: high recall at millisecond latency, no training),
    ``ivf`` (inverted lists over k-means cells: fast to build, `nprobe` cells searched), or
    ``flat`` (exact brute force, for tests and small catalogs). `params` holds the build and
    search settings (``m``, ``ef_construction``, ``ef_search``; ``nlist``, ``nprobe``).
    """

    kind: str
    index: Any
    params: dict[str, int] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        """Items in the index."""
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        """Dimension of the vectors."""
        return int(self.index.d)

    @classmethod
    def build(cls, item_vectors: np.ndarray, kind: str = "hnsw", *, m: int = 32, ef_construction: int = 80,
              ef_search: int = 128, nlist: int | None = None, nprobe: int = 32, seed: int = 0) -> AnnIndex:
        """Index `item_vectors` (n_items, d) for maximum inner product search."""
        if kind not in KINDS:
            raise ConfigError(f"unknown index kind {kind!r} (choose from {', '.join(KINDS)})")
        faiss = _faiss()
        vectors = np.ascontiguousarray(item_vectors, np.float32)
        n, d = vectors.shape
        params: dict[str, int]
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            params = {"m": m, "ef_construction": ef_construction, "ef_search": ef_search}
        elif kind == "ivf":
            cells = nlist or max(1, min(n // 39, int(4 * np.sqrt(n))))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.train(vectors)
            params = {"nlist": cells, "nprobe": nprobe}
        else:
            index = faiss.IndexFlatIP(d)
            params = {}
        index.add(vectors)
        out = cls(kind, index, params)
        out._apply_search_params()
        return out

    def _apply_search_params(self) -> None:
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = int(self.params.get("ef_search", 128))
        elif self.kind == "ivf":
            self.index.nprobe = int(self.params.get("nprobe", 32))

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        """(len(queries), n) item indices of the best inner products per query; -1 where the
        index found fewer. HNSW searches with at least `n` candidates (efSearch ≥ n)."""
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, np.float32)
        n = max(1, min(int(n), self.n_items))
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(int(self.params.get("ef_search", 128)), n)
            _, labels = self.index.search(queries, n, params=params)
        else:
            _, labels = self.index.search(queries, n)
        return np.asarray(labels, np.int64)

    def to_bytes(self) -> bytes:
        """The index serialized (faiss's own format)."""
        return bytes(_faiss().serialize_index(self.index))

    @classmethod
    def from_bytes(cls, data: bytes, kind: str, params: dict[str, int], where: str = "index") -> AnnIndex:
        """An index read back from `to_bytes`; ArtifactError (one line) when it is damaged."""
        faiss = _faiss()
        try:
            index = faiss.deserialize_index(np.frombuffer(data, np.uint8))
        except RuntimeError:
            raise ArtifactError(f"{where} is corrupt (faiss cannot read it)") from None
        out = cls(kind, index, dict(params))
        out._apply_search_params()
        return out

    def meta(self) -> dict[str, Any]:
        """What meta.json records about the index."""
        return {"file": INDEX_FILE, "kind": self.kind, "params": self.params, "n_items": self.n_items,
                "dim": self.dim}
