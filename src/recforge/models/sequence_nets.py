"""What the neural sequence models (`gru4rec`, `sasrec`) share: windows, loss, scoring, explain.

A network reads right-padded windows of item tokens (item index + 1; 0 pads) and returns one
hidden state per position; the state at position t scores the next item against the item
embedding table (tied weights) plus an optional per-item bias. Training cuts each user's
time-ordered training sequence into windows of at most ``max_length + 1`` items, the last
one ending at the user's newest item and the others stepping back by ``max_length``, and
minimises the cross-entropy of the next item at *every* position of every window
(Kang & McAuley 2018; Klenitskiy & Vasilev 2023 show it beats sampled BCE): over the whole
catalog (``full_softmax``) or over popularity-sampled negatives with logQ correction
(``softmax``, for catalogs too big for a full softmax). Scoring reads the last
``max_length`` items of a sequence, so a user's scores depend only on their sequence.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the conventional name)

from recforge.data.interactions import Interactions
from recforge.data.splitting import leave_last_out
from recforge.models.base import EXPLAIN_COLUMNS, as_list
from recforge.models.sequences import SequenceModel
from recforge.models.torch_base import TorchRecommender
from recforge.nn import losses
from recforge.training.config import TrainingConfig
from recforge.training.sampling import batch_indices
from recforge.training.trainer import TrainingPlan, torch_threads

__all__ = ["SequenceConfig", "SequenceNetwork", "TorchSequenceModel", "pad_sequences", "sequence_windows"]

#: scoring runs in blocks of this many sequences
_SCORE_BLOCK = 512


class SequenceConfig(TrainingConfig):
    """Settings shared by the neural sequence models.

    `embedding_dim`: size of the item vectors (and of the output state scored against them).
    `max_length`: the model reads the last `max_length` items of a sequence; training windows
    have that many inputs. `dropout`: dropout rate inside the network. `loss`:
    ``full_softmax`` (cross-entropy over every item at every position) or ``softmax``
    (sampled softmax over `n_negatives` items drawn per batch ∝ count^`negative_alpha`,
    shared by its positions, with logQ correction when `logq_correction`).
    `window_stride`: training windows step back by this many items (None: `max_length`, no
    overlap); a smaller stride trains every target with at least ``max_length − stride``
    items of context, at ``max_length / stride`` times the cost. `item_bias`: learn a
    per-item output bias. `regularization`: λ of an L2 penalty on the
    item embeddings used by a batch (mean squared norm per position).

    Validation: any ``validation_ratio > 0`` holds out each user's **last** training
    interaction (the next-item protocol's validation target), whatever the ratio's value;
    early stopping then restores the best epoch's weights and the model is used as is
    (the full training sequences are kept for scoring).

    `threads` defaults to 1: the per-step matrices are small, so a second thread gains
    little, and on a shared machine oversubscribed threads made training ~5× slower.
    """

    task: Literal["topn"] = "topn"
    embedding_dim: int = Field(64, ge=1)
    max_length: int = Field(25, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    loss: Literal["full_softmax", "softmax"] = "full_softmax"
    n_negatives: int = Field(256, ge=1)
    negative_alpha: float = Field(0.75, ge=0)
    logq_correction: bool = True
    item_bias: bool = False
    regularization: float = Field(0.0, ge=0)
    window_stride: int | None = Field(None, ge=1)
    threads: int | None = Field(1, ge=1)


class SequenceNetwork(nn.Module):
    """Base of the sequence networks: the item table and the next-item scores.

    Subclasses implement `states`: (B, L) tokens (item index + 1, 0 = padding, right-padded)
    → (B, L, embedding_dim) next-item states, where position t sees tokens 0..t only.
    """

    def __init__(self, n_items: int, embedding_dim: int, item_bias: bool) -> None:
        super().__init__()
        self.items = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        self.bias = nn.Parameter(torch.zeros(n_items)) if item_bias else None
        self.no_weight_decay: tuple[str, ...] = ("bias",) if item_bias else ()

    def states(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def item_table(self) -> torch.Tensor:
        """(n_items, d) item vectors (without the padding row)."""
        return self.items.weight[1:]

    def logits(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of `items` (item indices; None: all, the last axis) for each state."""
        if items is None:
            out = states @ self.item_table().T
            return out + self.bias if self.bias is not None else out
        out = states @ self.item_table()[items].T
        return out + self.bias[items] if self.bias is not None else out

    def last_states(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, d) state after each sequence's last real token."""
        h = self.states(tokens)
        return h[torch.arange(len(tokens), device=tokens.device), (lengths - 1).clamp_min(0)]


def sequence_windows(indptr: np.ndarray, items: np.ndarray, max_length: int,
                     stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training windows of ``max_length + 1`` tokens (item index + 1, right-padded with 0).

    Each user's sequence is cut from its end backwards: windows end at n, n − s, n − 2s …
    (s = `stride`, default L = `max_length`) and hold up to L + 1 items, down to the window
    that starts at the user's first item. Returns (windows, first): in window w only the
    targets from position ``first[w]`` on are trained, so that each item but the first is a
    target exactly once — with s < L every trained target but the user's earliest ones
    sees at least L − s items of context. Sequences of one item give no window.

    >>> w, first = sequence_windows(np.array([0, 4, 5]), np.array([0, 1, 2, 3, 9]), 2)
    >>> w.tolist(), first.tolist()
    ([[2, 3, 4], [1, 2, 0]], [0, 0])
    >>> sequence_windows(np.array([0, 5]), np.arange(5), 3, stride=1)[1].tolist()
    [2, 0]
    """
    L = max_length
    s = L if stride is None else min(stride, L)
    n = np.diff(indptr)
    per_user = np.where(n > 1, 1 + -(-np.maximum(n - 1 - L, 0) // s), 0)
    user = np.repeat(np.arange(len(n)), per_user)
    k = np.arange(per_user.sum()) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    end = n[user] - k * s
    start = np.maximum(end - L - 1, 0)
    offs = np.arange(L + 1)
    valid = offs[None, :] < (end - start)[:, None]
    pos = indptr[user][:, None] + start[:, None] + offs[None, :]
    windows = np.where(valid, items[np.where(valid, pos, 0)] + 1, 0).astype(np.int64)
    return windows, np.where(start > 0, L - s, 0).astype(np.int64)


def pad_sequences(sequences: list[np.ndarray], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens (n, max_length) right-padded, lengths) of the last `max_length` items of each.

    >>> pad_sequences([np.array([5, 6, 7]), np.array([], np.int64)], 2)[0].tolist()
    [[7, 8], [0, 0]]
    """
    tokens = np.zeros((len(sequences), max_length), np.int64)
    lengths = np.zeros(len(sequences), np.int64)
    for r, seq in enumerate(sequences):
        tail = np.asarray(seq, np.int64)[-max_length:]
        tokens[r, :len(tail)] = tail + 1
        lengths[r] = len(tail)
    return tokens, lengths


#: the network type of a sequence model
SeqNetT = TypeVar("SeqNetT", bound=SequenceNetwork)


class TorchSequenceModel(SequenceModel, TorchRecommender[SeqNetT], Generic[SeqNetT]):
    """Base of `GRU4Rec` and `SASRec`: the shared trainer with windowed next-item training.

    Scores come from `SequenceModel.score` (the users' training sequences) through
    `score_sequences`; validation while training scores with the training part's sequences.
    """

    config: SequenceConfig
    config_class: ClassVar[type[TrainingConfig]] = SequenceConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn"})

    def carve_validation(self, interactions: Interactions) -> tuple[Interactions, Interactions]:
        """Each user's last training interaction is the validation target (the protocol's)."""
        return leave_last_out(interactions, 1)

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        super()._fit(interactions, validation)
        self._keep_sequences(interactions)

    def training_plan(self, train: Interactions, rng: np.random.Generator) -> TrainingPlan[SeqNetT]:
        cfg, device = self.config, self.device_
        self._keep_sequences(train)
        cut, first = sequence_windows(self.sequence_indptr_, self.sequence_items_, cfg.max_length,
                                      cfg.window_stride)
        windows, first_t = torch.from_numpy(cut).to(device), torch.from_numpy(first).to(device)
        positions = torch.arange(cfg.max_length, device=device)
        batch_size = int(cfg.batch_size)
        reg = float(cfg.regularization)
        sampled = cfg.loss == "softmax"
        counts = np.maximum(train.item_counts(), 1).astype(np.float64) ** cfg.negative_alpha
        probs = counts / counts.sum()
        log_q = torch.from_numpy(np.log(probs).astype(np.float32)).to(device)
        n_neg = min(int(cfg.n_negatives), train.n_items)

        def batches(epoch: int, gen: np.random.Generator):
            for idx in batch_indices(len(windows), batch_size, gen):
                negatives = None
                if sampled:
                    negatives = torch.from_numpy(gen.choice(len(probs), n_neg, replace=False, p=probs)).to(device)
                rows = torch.from_numpy(idx).to(device)
                yield windows[rows], first_t[rows], negatives

        def step(net: SeqNetT, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
            window, first_pos, negatives = batch
            tokens, targets = window[:, :-1], window[:, 1:]
            mask = (targets > 0) & (positions[None, :] >= first_pos[:, None])
            h = net.states(tokens)[mask]
            target = targets[mask] - 1
            if negatives is None:
                loss = F.cross_entropy(net.logits(h), target)
            else:
                pos = (h * net.item_table()[target]).sum(1)
                neg = net.logits(h, negatives)
                if net.bias is not None:
                    pos = pos + net.bias[target]
                neg = neg.masked_fill(negatives[None, :] == target[:, None], float("-inf"))
                if cfg.logq_correction:
                    loss = losses.sampled_softmax(pos, neg, pos_logq=log_q[target],
                                                  neg_logq=log_q[negatives].expand_as(neg))
                else:
                    loss = losses.sampled_softmax(pos, neg)
            if reg > 0:
                loss = loss + reg * net.items(target + 1).pow(2).sum(1).mean()
            return loss

        return TrainingPlan(step, batches)

    # ------------------------------------------------------------------ scoring
    def score_tensor(self, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        scores = torch.from_numpy(self.score_sequences(self.user_sequences(users.cpu().numpy())))
        scores = scores.to(users.device)
        if items is None:
            return scores
        return scores[torch.arange(len(users), device=users.device), items]

    def score_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        """Next-item scores after each sequence's last `max_length` items; 0 for an empty one."""
        if self.scorer_ is not None:
            return np.asarray(self.scorer_.score_sequences(sequences), np.float32)
        net = self.network_
        net.eval()
        out = np.zeros((len(sequences), self.n_items), np.float32)
        with torch_threads(self.config.threads), torch.no_grad():
            for start in range(0, len(sequences), _SCORE_BLOCK):
                tokens, lengths = pad_sequences(sequences[start:start + _SCORE_BLOCK], self.config.max_length)
                rows = np.flatnonzero(lengths > 0)
                if not len(rows):
                    continue
                t = torch.from_numpy(tokens[rows]).to(self.device_)
                n = torch.from_numpy(lengths[rows]).to(self.device_)
                scores = net.logits(net.last_states(t, n))
                out[start + rows] = scores.float().cpu().numpy()
        return out

    def item_embeddings(self) -> np.ndarray | None:
        return self.network_.item_table().detach().cpu().numpy()

    # ------------------------------------------------------------------ explanations
    def explain(self, user_id: Any, item_ids: Any, n: int = 3) -> pd.DataFrame:
        """Which recent items of the user's sequence drove each item's score (occlusion).

        ``kind="item"``: `contribution` is the exact drop of the item's score when every
        occurrence of that history item is removed from the user's training sequence (the
        rest keeps its order), so rescoring the shortened sequence with `score_histories`
        gives the score minus `contribution`. Only items among the last `max_length` can
        count; the `n` largest drops are listed per item, best first. A drop can be negative
        (removing that item would raise the score: a softmax model may find every item of a
        history "used up"), so the list always names the history items that help most.
        """
        self._check_fitted()
        u = int(self.user_map_.to_idx([str(user_id)], what="user")[0])
        items = self.item_map_.to_idx([str(i) for i in as_list(item_ids)], what="item")
        history = self.user_history(u)
        recent = np.unique(history[-self.config.max_length:])
        occluded = [history[history != j] for j in recent]
        scores = self.score_sequences([history, *occluded])
        drops = scores[0][None, items] - scores[1:, items]  # (len(recent), len(items))
        titles = self.item_titles()
        rows = []
        for r, i in enumerate(items):
            iid = str(self.item_map_.ids[i])
            for rank, j in enumerate(np.argsort(-drops[:, r], kind="stable")[:n], 1):
                src = str(self.item_map_.ids[recent[j]])
                rows.append((iid, "item", src, titles.get(src, ""), float(drops[j, r]), rank))
        return pd.DataFrame(rows, columns=EXPLAIN_COLUMNS)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        return {**super()._get_state(), **self._sequence_state()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        super()._set_state(state)
        self._restore_sequences(state)
