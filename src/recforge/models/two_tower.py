"""Two-tower retrieval model with ID embeddings and side features.

User tower ``u = e_u + f(x_u)``, item tower ``v = e_i + g(x_i)``, score ``u · v + b_i + w · x_i``
— the dual-encoder of Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus
Item Recommendations" (RecSys 2019) and Covington et al. (RecSys 2016), trained with
sampled softmax (optionally logQ-corrected) or BPR by the shared `Trainer`. `f` and `g`
are small MLPs over the encoded features (`FeaturePipeline`); `b_i` is a learned item
bias (popularity) and ``w · x_i`` its feature part.

Cold start: a user (item) the model has never seen has no ``e`` — its tower is the feature
part alone. ``id_dropout`` zeroes the ID embedding of a random share of the training
examples so that the feature part learns to stand alone (the DropoutNet idea of Volkovs,
Yu & Poutanen, NeurIPS 2017). Without features the model is plain MF with item biases.

Each training step encodes the whole item catalog once (``(n_items, F) → (n_items, d)``)
and indexes it: cheap for catalogs up to ~10⁵ items, and every negative shares the work.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from recforge.config import DefaultRule, SameAs
from recforge.data.interactions import Interactions
from recforge.linalg import unit_rows
from recforge.models.base import EXPLAIN_COLUMNS, as_list, bias_column, history_matrix
from recforge.models.fold_in import softmax_fold_in
from recforge.models.torch_base import FeatureTorchRecommender
from recforge.nn import losses
from recforge.nn.layers import bias_embedding, embedding, mlp
from recforge.ranking import top_k_row
from recforge.training.config import TrainingConfig
from recforge.training.sampling import NegativeSampler, batch_indices
from recforge.training.trainer import TrainingPlan, torch_threads

__all__ = ["TwoTower", "TwoTowerConfig", "TwoTowerNetwork"]

#: least fold-in penalty per history item (the training L2 on ID embeddings is nominal). On
#: 20 % of ML-100K's users held out of training (default settings, one split), with 3 (10)
#: random items given, Recall@20 of their other items: 0.45 (0.52) at 0.2, 0.30 (0.36) at
#: the default `regularization` 1e-4, 0.47 (0.50) at 0.5; popularity 0.43 (0.41); the former
#: mean-of-item-vectors fold-in 0.23 (0.20)
FOLD_IN_REGULARIZATION = 0.2


class TwoTowerConfig(TrainingConfig):
    """Hyperparameters of `TwoTower`.

    `embedding_dim`: size d of both towers' outputs. `hidden_dim`: width of the feature
    MLPs' hidden layer (0: a single linear layer). `loss`: ``softmax`` (sampled softmax),
    ``full_softmax`` or ``bpr``.
    `n_negatives`: sampled negatives per positive (uniform or popularity^`negative_alpha`,
    seen items rejected). `id_dropout`: probability of dropping an example's ID embedding
    (on a side that has features) so cold users/items are served well;
    `user_id_dropout` (None: `id_dropout`) overrides it for users (1.0: the user tower reads
    features only — a pure cold-user model, e.g. as the feature half of `hybrid`).
    ``full_softmax`` scores every item of the catalog per example (exact softmax, as
    cheap as sampling for catalogs of a few thousand items; it learns calibrated item
    popularity, which cold users lean on).
    `regularization`: L2 on the embeddings used by a batch. `tower_regularization`: L2 on
    the feature towers' weights (sum of squares), which keeps a features-only user tower
    from memorising the few hundred distinct demographic profiles; unlike `weight_decay`
    it leaves the item biases (popularity) alone. `use_user_features` /
    `use_item_features`: read the side features when present. `text_buckets`, `zip_prefix`:
    feature pipeline settings. `temperature`: divides the softmax logits.
    """

    embedding_dim: int = Field(32, ge=1)
    hidden_dim: int = Field(64, ge=0)
    loss: Literal["softmax", "full_softmax", "bpr"] = "softmax"
    n_negatives: int = Field(32, ge=1)
    negative_sampling: Literal["uniform", "popularity"] = "uniform"
    negative_alpha: float = Field(0.75, ge=0)
    id_dropout: float = Field(0.3, ge=0, lt=1)
    user_id_dropout: float | None = Field(None, ge=0, le=1)
    regularization: float = Field(1e-4, ge=0)
    tower_regularization: float = Field(0.0, ge=0)
    temperature: float = Field(1.0, gt=0)
    use_user_features: bool = True
    use_item_features: bool = True
    text_buckets: int = Field(512, ge=1)
    zip_prefix: int = Field(1, ge=1)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(1024, ge=1)
    learning_rate: float = Field(5e-3, gt=0)

    default_rules = (DefaultRule({}, {"user_id_dropout": SameAs("id_dropout")}),)


class TwoTowerNetwork(nn.Module):
    """ID embeddings + feature MLPs for users and items; dot-product scores.

    Args:
        n_users, n_items: ID table sizes.
        user_x: (n_users, F_u) float32 user features, or None.
        item_x: (n_items, F_i) float32 item features, or None.
        dim: tower output size d.
        hidden: MLP hidden width (0 = linear).

    Example::

        >>> net = TwoTowerNetwork(3, 5, None, torch.rand(5, 4), dim=2, hidden=0)
        >>> net.score_all(net.user_vectors(torch.tensor([0, 2])), *net.item_vectors()).shape
        torch.Size([2, 5])
    """

    #: the item biases hold popularity, which cold users lean on: no weight decay on them
    no_weight_decay = ("item_bias.weight",)
    #: buffers: (n_users, F_u) and (n_items, F_i) encoded features (F = 0 without features)
    user_x: torch.Tensor
    item_x: torch.Tensor

    def __init__(self, n_users: int, n_items: int, user_x: torch.Tensor | None,
                 item_x: torch.Tensor | None, dim: int, hidden: int, init_std: float = 0.05) -> None:
        super().__init__()
        self.users = embedding(n_users, dim, std=init_std)
        self.items = embedding(n_items, dim, std=init_std)
        self.item_bias = bias_embedding(n_items)
        self.register_buffer("user_x", user_x if user_x is not None else torch.zeros(n_users, 0), persistent=False)
        self.register_buffer("item_x", item_x if item_x is not None else torch.zeros(n_items, 0), persistent=False)
        self.user_tower = self._tower(self.user_x.shape[1], hidden, dim)
        self.item_tower = self._tower(self.item_x.shape[1], hidden, dim)
        self.item_feature_bias = nn.Linear(self.item_x.shape[1], 1, bias=False) if self.item_x.shape[1] else None
        if self.item_feature_bias is not None:
            nn.init.zeros_(self.item_feature_bias.weight)

    @staticmethod
    def _tower(n_in: int, hidden: int, dim: int) -> nn.Module | None:
        if n_in == 0:
            return None
        return mlp([n_in, hidden, dim] if hidden else [n_in, dim])

    def user_vectors(self, users: torch.Tensor | None = None, x: torch.Tensor | None = None,
                     keep_id: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d) user tower outputs; ``users=None`` means cold users from features `x`.

        `keep_id`: (B,) 0/1 mask multiplying the ID embeddings (ID dropout).
        """
        if users is None:
            if self.user_tower is None or x is None:
                n = 0 if x is None else x.shape[0]
                return torch.zeros(n, self.users.embedding_dim, device=self.users.weight.device)
            return self.user_tower(x)
        out = self.users(users)
        if keep_id is not None:
            out = out * keep_id.unsqueeze(1)
        if self.user_tower is not None:
            out = out + self.user_tower(self.user_x[users])
        return out

    def item_vectors(self, x: torch.Tensor | None = None, with_ids: bool = True,
                     keep_id: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(vectors (N, d), biases (N,)) of all known items, or of new items with features `x`."""
        if x is None:
            x = self.item_x
            vec = self.items.weight if with_ids else torch.zeros_like(self.items.weight)
            bias = self.item_bias.weight[:, 0] if with_ids else torch.zeros(len(x), device=x.device)
            if keep_id is not None:
                vec = vec * keep_id.unsqueeze(1)
                bias = bias * keep_id
        else:
            vec = torch.zeros(x.shape[0], self.items.embedding_dim, device=x.device)
            bias = torch.zeros(x.shape[0], device=x.device)
        if self.item_tower is not None:
            vec = vec + self.item_tower(x)
        if self.item_feature_bias is not None:  # present exactly when the item tower is
            bias = bias + self.item_feature_bias(x)[:, 0]
        return vec, bias

    @staticmethod
    def score_all(u: torch.Tensor, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B, N) scores ``u · v + b``."""
        return u @ v.T + b


class TwoTower(FeatureTorchRecommender[TwoTowerNetwork]):
    """Two-tower model (see the module docstring); cold users/items through their features."""

    name = "two_tower"
    config_class = TwoTowerConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn"})
    config: TwoTowerConfig

    # ------------------------------------------------------------------ features
    def _tensor(self, matrix: Any) -> torch.Tensor | None:
        if matrix is None:
            return None
        return torch.from_numpy(np.asarray(matrix.toarray(), np.float32))

    def build_network(self, n_users: int, n_items: int) -> TwoTowerNetwork:
        user_x = self._tensor(self._user_feature_rows(self.user_features_, self.user_map_.ids))
        item_x = self._tensor(self._item_feature_rows(self.item_features_, self.item_map_.ids))
        net = TwoTowerNetwork(n_users, n_items, user_x, item_x, self.config.embedding_dim, self.config.hidden_dim)
        if self.config.user_id_dropout == 1.0 and net.user_tower is not None:
            # a features-only user tower: the ID table never gets a gradient, so it stays at
            # zero and known users are scored exactly like new users with the same features
            with torch.no_grad():
                net.users.weight.zero_()
        if getattr(self, "item_popularity_", None) is not None:
            # start the item bias at centred log-popularity: the softmax optimum of a model
            # without users, so the towers learn the personal part from the first step
            log_pop = np.log1p(np.asarray(self.item_popularity_, np.float64))
            with torch.no_grad():
                net.item_bias.weight[:, 0] = torch.from_numpy((log_pop - log_pop.mean()).astype(np.float32))
        return net

    # ------------------------------------------------------------------ training
    def training_plan(self, train: Interactions, rng: np.random.Generator) -> TrainingPlan[TwoTowerNetwork]:
        cfg, device = self.config, self.device_
        users_np = train.user_idx.astype(np.int64)
        users = torch.from_numpy(users_np).to(device)
        items = torch.from_numpy(train.item_idx.astype(np.int64)).to(device)
        sampler = NegativeSampler(train.csr(binary=True), distribution=cfg.negative_sampling,
                                  alpha=cfg.negative_alpha)
        log_q = torch.from_numpy(sampler.log_prob).to(device)
        use_logq = cfg.negative_sampling != "uniform"
        n, n_neg, lam = len(users_np), cfg.n_negatives, cfg.regularization
        net = self.network_
        user_drop = cfg.id_dropout if cfg.user_id_dropout is None else cfg.user_id_dropout
        drop_users = user_drop if net.user_tower is not None else 0.0
        drop_items = cfg.id_dropout if net.item_tower is not None else 0.0

        full = cfg.loss == "full_softmax"

        def batches(epoch: int, gen: np.random.Generator):
            negatives = torch.zeros((n, 0), dtype=torch.int64, device=device) if full else \
                torch.from_numpy(sampler.sample(users_np, n_neg, gen)).to(device)
            keep_u = torch.from_numpy((gen.random(n) >= drop_users).astype(np.float32)).to(device)
            keep_i = torch.from_numpy((gen.random(len(net.item_x)) >= drop_items).astype(np.float32)).to(device)
            for idx in batch_indices(n, cfg.batch_size, gen):
                b = torch.from_numpy(idx).to(device)
                yield users[b], items[b], negatives[b], keep_u[b], keep_i

        towers = [m for m in (net.user_tower, net.item_tower) if m is not None]
        tower_weights = [w for m in towers for name, w in m.named_parameters() if name.endswith("weight")]

        def tower_penalty() -> torch.Tensor | float:
            if not cfg.tower_regularization or not tower_weights:
                return 0.0
            return cfg.tower_regularization * sum(w.pow(2).sum() for w in tower_weights)

        def step(network: TwoTowerNetwork, batch: Any) -> torch.Tensor:
            u, pos, neg, keep_u, keep_i = batch
            uvec = network.user_vectors(u, keep_id=keep_u)
            vecs, bias = network.item_vectors(keep_id=keep_i)
            if full:
                logits = network.score_all(uvec, vecs, bias) / cfg.temperature
                penalty = network.users(u).pow(2).sum(1).mean() + network.items(pos).pow(2).sum(1).mean()
                return nn.functional.cross_entropy(logits, pos) + lam * penalty + tower_penalty()
            cand = torch.cat([pos.unsqueeze(1), neg], dim=1)
            scores = torch.bmm(vecs[cand], uvec.unsqueeze(2)).squeeze(2) + bias[cand]
            if cfg.loss == "bpr":
                loss = losses.bpr(scores[:, 0], scores[:, 1:])
            else:
                loss = losses.sampled_softmax(scores[:, 0], scores[:, 1:], temperature=cfg.temperature,
                                              pos_logq=log_q[pos] if use_logq else None,
                                              neg_logq=log_q[neg] if use_logq else None)
            penalty = network.users(u).pow(2).sum(1).mean() + network.items(cand).pow(2).sum(2).mean()
            return loss + lam * penalty + tower_penalty()

        return TrainingPlan(step, batches)

    # ------------------------------------------------------------------ scoring
    def score_tensor(self, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        net = self.network_
        uvec = net.user_vectors(users)
        vecs, bias = net.item_vectors()
        if items is None:
            return net.score_all(uvec, vecs, bias)
        return (uvec * vecs[items]).sum(1) + bias[items]

    def item_embeddings(self) -> np.ndarray:
        with torch.no_grad():
            return self.network_.item_vectors()[0].cpu().numpy()

    def mips_item_vectors(self) -> np.ndarray:
        """Item tower outputs with the item bias as one more component (score = u·v + b)."""
        with torch.no_grad():
            vecs, bias = self.network_.item_vectors()
            return bias_column(vecs.float().cpu().numpy(), bias.float().cpu().numpy())

    def mips_user_vectors(self, user_idx: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            users = torch.from_numpy(np.asarray(user_idx, np.int64)).to(self.device_)
            x = self.network_.user_vectors(users).float().cpu().numpy()
        return bias_column(x, np.ones(len(x), np.float32))

    def _cold_user_vectors(self, frame: pd.DataFrame, histories: list[np.ndarray]) -> torch.Tensor:
        """Feature tower output, plus the mean item vector of request-time items when given."""
        net = self.network_
        x = self._tensor(self._user_feature_rows(frame, frame.index))
        uvec = net.user_vectors(None, None if x is None else x.to(self.device_))
        if uvec.shape[0] == 0:
            uvec = torch.zeros(len(frame), net.users.embedding_dim, device=self.device_)
        vecs = net.item_vectors()[0]
        for row, hist in enumerate(histories):
            if len(hist):
                # heuristic fold-in: move the user towards the mean vector of the given items
                uvec[row] = uvec[row] + vecs[torch.from_numpy(hist).to(self.device_)].mean(0)
        return uvec

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        return self._softmax_fold_in(histories)

    def _softmax_fold_in(self, histories: list[np.ndarray]) -> np.ndarray:
        """Fold-in: a user with unknown features whose ID vector is solved from the history.

        The user vector is ``f(x₀) + p``: the user tower's output for unknown features plus
        the ID part p that maximises the softmax likelihood of the history items under the
        fixed item vectors and biases (`softmax_fold_in`, penalty λ·|history| with λ =
        max(`regularization`, `FOLD_IN_REGULARIZATION`)), as training fits ``e_u``. An empty
        history gets ``f(x₀)`` alone, like a cold user without features.
        """
        cfg = self.config
        net = self.network_
        unknown = pd.DataFrame(index=pd.Index(["history"], dtype=object))
        with torch_threads(cfg.threads), torch.no_grad():
            offset = self._cold_user_vectors(unknown, [np.zeros(0, np.int64)])[0].cpu().numpy().astype(np.float64)
            vecs, bias = (t.cpu().numpy().astype(np.float64) for t in net.item_vectors())
        b = bias + vecs @ offset  # f(x₀) · v_i: the same per-item term for every folded-in user
        reg = max(cfg.regularization, FOLD_IN_REGULARIZATION)
        P = softmax_fold_in(vecs, b, history_matrix(histories, len(vecs)), reg)
        return (P @ vecs.T + b).astype(np.float32)

    def score_cold_users(self, features: pd.DataFrame, histories: list[np.ndarray]) -> np.ndarray:
        net = self.network_
        with torch_threads(self.config.threads), torch.no_grad():
            uvec = self._cold_user_vectors(features, histories)
            vecs, bias = net.item_vectors()
            return net.score_all(uvec, vecs, bias).cpu().numpy()

    def score_new_items_idx(self, features: pd.DataFrame, user_idx: np.ndarray) -> np.ndarray:
        net = self.network_
        with torch_threads(self.config.threads), torch.no_grad():
            x = self._tensor(self._item_feature_rows(features, features.index))
            uvec = net.user_vectors(torch.from_numpy(np.asarray(user_idx, np.int64)).to(self.device_))
            if x is None:
                return np.zeros((len(user_idx), len(features)), np.float32)
            vecs, bias = net.item_vectors(x.to(self.device_))
            return net.score_all(uvec, vecs, bias).cpu().numpy()

    def new_item_vectors(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        net = self.network_
        with torch.no_grad():
            x = self._tensor(self._item_feature_rows(features, features.index))
            new = np.zeros((len(features), net.items.embedding_dim), np.float32) if x is None \
                else net.item_vectors(x.to(self.device_))[0].cpu().numpy()
            known = net.item_vectors(with_ids=False)[0].cpu().numpy() if x is not None \
                else net.item_vectors()[0].cpu().numpy()
        return new, known

    # ------------------------------------------------------------------ explanations
    def explain(self, user_id: Any, item_ids: Any, n: int = 3) -> pd.DataFrame:
        """Why `user_id` gets each item: nearest liked items, and the features that count most.

        ``kind="similar_item"``: the user's training items nearest to the item in item-tower
        space (cosine) — a factor model's score is not a sum over history items, so these
        are pointers, not causal shares. ``kind="feature"``: occlusion of one feature field of
        the user (``user: gender=F``) or of the item (``item: genre=Drama``): `contribution`
        is the exact score drop when that field is set to unknown, so removing a named
        feature lowers the score by that amount. Frame of `EXPLAIN_COLUMNS`.
        """
        self._check_fitted()
        u = int(self.user_map_.to_idx([str(user_id)], what="user")[0])
        items = self.item_map_.to_idx([str(i) for i in as_list(item_ids)], what="item")
        history = self.seen_[u].indices
        unit = unit_rows(self.item_embeddings())
        titles = self.item_titles()
        features = self._feature_contributions(u, items)
        rows = []
        for r, i in enumerate(items):
            iid = str(self.item_map_.ids[i])
            sims = unit[history] @ unit[i]
            for rank, j in enumerate(top_k_row(sims, n)[0], 1):
                jid = str(self.item_map_.ids[history[j]])
                rows.append((iid, "similar_item", jid, titles.get(jid, ""), float(sims[j]), rank))
            names, deltas = features[r]
            order = [j for j in top_k_row(deltas, n)[0] if deltas[j] > 0]
            for rank, j in enumerate(order, 1):
                rows.append((iid, "feature", names[j], "", float(deltas[j]), rank))
        return pd.DataFrame(rows, columns=EXPLAIN_COLUMNS)

    def _feature_contributions(self, u: int, items: np.ndarray) -> list[tuple[list[str], np.ndarray]]:
        """Per item: (field labels, score − score with that field of the user or item unknown)."""
        net = self.network_
        user_fields = _active_fields(self.user_pipeline_, net.user_x[u].cpu().numpy(), "user") \
            if net.user_tower is not None else []
        out = []
        with torch_threads(self.config.threads), torch.no_grad():
            vecs, bias = net.item_vectors()
            uidx = torch.tensor([u], device=self.device_)
            base_u = net.user_vectors(uidx)[0]
            for i in items:
                full = float(base_u @ vecs[i] + bias[i])
                names, deltas = [], []
                if net.user_tower is not None:
                    for label, cols in user_fields:
                        x = net.user_x[u].clone()
                        x[cols] = 0.0
                        occluded = net.users(uidx)[0] + net.user_tower(x.unsqueeze(0))[0]
                        names.append(label)
                        deltas.append(full - float(occluded @ vecs[i] + bias[i]))
                if net.item_tower is not None:
                    for label, cols in _active_fields(self.item_pipeline_, net.item_x[i].cpu().numpy(), "item"):
                        x = net.item_x[i].clone()
                        x[cols] = 0.0
                        v, b = net.item_vectors(x.unsqueeze(0))
                        v = v[0] + net.items.weight[i]
                        names.append(label)
                        deltas.append(full - float(base_u @ v + b[0] + net.item_bias.weight[i, 0]))
                out.append((names, np.asarray(deltas, np.float64)))
        return out


def _active_fields(pipe: Any, row: np.ndarray, side: str) -> list[tuple[str, torch.Tensor]]:
    """(label, column indices) of every field with a non-zero value in an encoded row."""
    if pipe is None:
        return []
    out = []
    for field in pipe.fields_:
        cols = np.flatnonzero(row[field.offset:field.stop]) + field.offset
        if len(cols) == 0:
            continue
        labels = field.labels()
        if field.kind == "text":
            label = f"{field.name} words"
        elif field.kind == "numeric":
            label = field.name
        else:
            label = ", ".join(labels[c - field.offset] for c in cols[:3]) + ("…" if len(cols) > 3 else "")
        out.append((f"{side}: {label}", torch.from_numpy(cols)))
    return out
