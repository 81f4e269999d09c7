"""ONNX export of the torch models' scoring graphs, and an onnxruntime scorer for serving.

`export_onnx` traces the part of a fitted torch model that turns a request into scores —
everything learned is a constant of the graph — with torch's TorchScript-based exporter
(``dynamo=False``: the newer exporter needs ``onnxscript``), opset `OPSET` (17: the first
with LayerNormalization, which SASRec needs), the batch axis dynamic. Four graph families:

============================  ==============================  ==================================
models                        inputs                          output
============================  ==============================  ==================================
mf (bpr), ncf, two_tower,     ``users`` int64 (B,):           ``scores`` float32 (B, n_items)
autorec (item variant)        user indices
multvae, autorec (user        ``rows`` float32 (B, n_items):  ``scores`` float32 (B, n_items)
variant)                      the user's history row (1 per
                              item; U-AutoRec rating: rating)
gru4rec, sasrec               ``tokens`` int64 (B, L): the    ``scores`` float32 (B, n_items):
                              last L = max_length items,      the next item
                              item index + 1, right-padded
                              with 0; ``lengths`` int64 (B,)
deepfm, widedeep              ``users``, ``items`` int64      ``logits`` float32 (N,): the CTR
                              (N,): (user, item) pairs        logit, σ(logit) = P(positive)
============================  ==============================  ==================================

Indices are the artifact's (``user_ids.json`` / ``item_ids.json`` order); score column j is
item j. Feature models keep the known users' and items' encoded features inside the graph
(cold users/items are scored by the torch model's feature paths, not by the graph). Scores
are those of `Recommender.score` before seen-item exclusion: ranking (top-k, exclusions,
candidates) stays with `recforge.ranking`. The graph's metadata (``recforge.*`` properties)
names the model, the family, n_users, n_items and max_length.

`OnnxScorer` runs such a graph in onnxruntime and plugs into a model with
`TorchRecommender.set_scorer`, so `recommend`, `rank_users` and the service rank through
the usual `Recommender` path with onnxruntime's scores (``recforge serve --runtime onnx``).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from recforge.errors import ConfigError
from recforge.models.torch_base import TorchRecommender, float_network

if TYPE_CHECKING:
    from recforge.models.autorec import AutoRecNetwork
    from recforge.models.base import Recommender
    from recforge.models.deepfm import FieldNetwork
    from recforge.models.mf import MFNetwork
    from recforge.models.multvae import MultVAENetwork
    from recforge.models.ncf import NCFNetwork
    from recforge.models.sequence_nets import SequenceNetwork
    from recforge.models.two_tower import TwoTowerNetwork

__all__ = ["OPSET", "GraphSpec", "OnnxScorer", "export_onnx", "graph_spec", "onnx_scorer", "require_onnx"]

#: ONNX opset of exported graphs
OPSET = 17
#: float32 cells of the largest intermediate of one onnxruntime call (64 MiB)
_CELLS = 1 << 24


def require_onnx() -> None:
    """ConfigError naming the extra to install when onnx or onnxruntime is missing."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"ONNX export needs {', '.join(missing)}: pip install 'recforge[export]'")


@dataclass(frozen=True)
class GraphSpec:
    """What to trace for a model: the module, example inputs, names, and how to feed it.

    `family`: ``users``, ``rows``, ``sequences`` or ``pairs`` (module docstring). `cells`:
    float32 cells of the largest intermediate per scored user, which sizes onnxruntime calls.
    `feed`: for the ``users`` and ``rows`` families, user indices → the graph's inputs.
    """

    family: str
    module: nn.Module
    example: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_name: str
    cells: int
    feed: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None


# ---------------------------------------------------------------------- graphs per family
class _MFScores(nn.Module):
    def __init__(self, net: MFNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return self.net.score_all(users)


class _NCFScores(nn.Module):
    """`NCFNetwork.score_all` without its Python loop over pair blocks (the loop's bounds
    would be frozen into the trace); the caller bounds the batch instead."""

    def __init__(self, net: NCFNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        net = self.net
        weight = net.output.weight[0]
        parts = []
        if net.has_gmf:
            parts.append((net.gmf_user(users) * weight[:net.gmf_width]) @ net.gmf_item.weight.T)
        if net.has_mlp:
            user_part, w_item = net._first_layer(users)                      # (B, h1), (h1, d)
            pre = user_part[:, None, :] + (net.mlp_item.weight @ w_item.T)[None]  # (B, I, h1)
            parts.append(net.tower[1:](pre) @ weight[net.gmf_width:])
        out = parts[0] + parts[1] if len(parts) == 2 else parts[0]
        return out + net.output.bias


class _TwoTowerScores(nn.Module):
    def __init__(self, net: TwoTowerNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        vecs, bias = self.net.item_vectors()
        return self.net.score_all(self.net.user_vectors(users), vecs, bias)


class _ItemAutoRecScores(nn.Module):
    """I-AutoRec: the decoder row of each user against the item codes (constants: the codes
    of the training rows, computed at export)."""

    codes: torch.Tensor

    def __init__(self, net: AutoRecNetwork, codes: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("codes", codes)

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        decoder = self.net.decoder
        return decoder.weight[users] @ self.codes.T + decoder.bias[users][:, None]


class _RowScores(nn.Module):
    """History rows → scores: U-AutoRec's reconstruction, Mult-VAE's logits."""

    def __init__(self, net: AutoRecNetwork | MultVAENetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        out = self.net(rows)
        return out[0] if isinstance(out, tuple) else out


class _SequenceScores(nn.Module):
    def __init__(self, net: SequenceNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # `last_states` indexes with ``arange(len(tokens))``, whose length a trace would freeze
        h = self.net.states(tokens)
        last = (lengths - 1).clamp_min(0)[:, None, None].expand(-1, 1, h.shape[2])
        return self.net.logits(h.gather(1, last)[:, 0])


class _PairLogits(nn.Module):
    def __init__(self, net: FieldNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.net(users, items)


def graph_spec(model: Recommender) -> GraphSpec:
    """The scoring graph of a fitted torch model (module docstring); ConfigError for others."""
    from recforge.models.autorec import AutoRec
    from recforge.models.deepfm import DeepFM
    from recforge.models.mf import MatrixFactorization
    from recforge.models.multvae import MultVAE
    from recforge.models.ncf import NCF
    from recforge.models.sequence_nets import TorchSequenceModel
    from recforge.models.two_tower import TwoTower

    model._check_fitted()
    if not isinstance(model, TorchRecommender):
        raise ConfigError(f"model {model.name!r} has no torch network to export to ONNX "
                          "(exportable: the torch models, e.g. mf, ncf, multvae, two_tower, deepfm, sasrec)")
    n_items = model.n_items
    users = torch.arange(min(2, model.n_users), dtype=torch.int64)

    def user_feed(idx: np.ndarray) -> dict[str, np.ndarray]:
        return {"users": np.asarray(idx, np.int64)}

    if isinstance(model, MatrixFactorization):
        return GraphSpec("users", _MFScores(float_network(model.network_)), (users,), ("users",), "scores",
                         n_items, user_feed)
    if isinstance(model, NCF):
        ncf = float_network(model.network_)
        hidden = ncf.mlp_item.embedding_dim * 2 if ncf.has_mlp else 0  # a bound on the first tower width
        hidden = max([hidden, *(m.out_features for m in ncf.modules() if isinstance(m, nn.Linear))])
        return GraphSpec("users", _NCFScores(ncf), (users,), ("users",), "scores", n_items * (1 + hidden), user_feed)
    if isinstance(model, TwoTower):
        return GraphSpec("users", _TwoTowerScores(float_network(model.network_)), (users,), ("users",), "scores",
                         n_items, user_feed)
    if isinstance(model, AutoRec):
        autorec = float_network(model.network_)
        if model.config.variant == "item":
            with torch.no_grad():
                codes = model._encode_all(autorec).detach().clone()
            return GraphSpec("users", _ItemAutoRecScores(autorec, codes), (users,), ("users",), "scores",
                             n_items, user_feed)
        inputs = model._input()
        return GraphSpec("rows", _RowScores(autorec), (_dense(inputs, users.numpy()),), ("rows",), "scores",
                         2 * n_items, lambda idx: {"rows": _dense(inputs, idx).numpy()})
    if isinstance(model, MultVAE):
        rows = model.user_rows()
        return GraphSpec("rows", _RowScores(float_network(model.network_)), (_dense(rows, users.numpy()),),
                         ("rows",), "scores", 2 * n_items, lambda idx: {"rows": _dense(rows, idx).numpy()})
    if isinstance(model, TorchSequenceModel):
        from recforge.models.sequence_nets import pad_sequences

        tokens, lengths = pad_sequences(model.user_sequences(users.numpy()), model.config.max_length)
        return GraphSpec("sequences", _SequenceScores(float_network(model.network_)),
                         (torch.from_numpy(tokens), torch.from_numpy(lengths)), ("tokens", "lengths"), "scores",
                         n_items)
    if isinstance(model, DeepFM):
        fields = float_network(model.network_)
        pairs = torch.zeros(2, dtype=torch.int64)
        width = sum(m.out_features for m in fields.modules() if isinstance(m, nn.Linear))
        return GraphSpec("pairs", _PairLogits(fields), (pairs, pairs.clone()), ("users", "items"), "logits",
                         n_items * (width + 1))
    raise ConfigError(f"model {model.name!r} has no ONNX scoring graph yet")


def _dense(rows: Any, idx: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rows[np.asarray(idx, np.int64)].toarray().astype(np.float32, copy=False))


# ---------------------------------------------------------------------- export
def export_onnx(model: Recommender, path: str | Path | None = None, opset: int = OPSET) -> bytes:
    """The model's scoring graph as ONNX bytes (module docstring), also written to `path`."""
    require_onnx()
    import onnx

    spec = graph_spec(model)
    spec.module.eval()
    names = [*spec.input_names, spec.output_name]
    axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in names}
    with torch.no_grad(), warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        # the TorchScript exporter is deprecated in favour of torch.export + onnxscript; it is
        # what needs no further package, and it still exports all of these graphs
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        traced = Path(tmp) / "graph.onnx"
        torch.onnx.export(spec.module, spec.example, traced, dynamo=False, opset_version=opset,
                          input_names=list(spec.input_names), output_names=[spec.output_name],
                          dynamic_axes=axes, do_constant_folding=True)
        graph = onnx.load(traced)
    max_length = getattr(model.config, "max_length", 0) if spec.family == "sequences" else 0
    facts = {"model": model.name, "family": spec.family, "n_users": model.n_users,
             "n_items": model.n_items, "max_length": max_length}
    for key, value in facts.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = f"recforge.{key}", str(value)
    graph.producer_name = "recforge"
    graph.doc_string = f"recforge {model.name}: {spec.family} → {spec.output_name} (see recforge.export.onnx)"
    data = graph.SerializeToString()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def graph_facts(data: bytes) -> dict[str, str]:
    """The ``recforge.*`` metadata of an exported graph (without the prefix)."""
    require_onnx()
    import onnx

    graph = onnx.load_from_string(data)
    return {p.key.removeprefix("recforge."): p.value for p in graph.metadata_props if p.key.startswith("recforge.")}


# ---------------------------------------------------------------------- scoring
class OnnxScorer:
    """Scores of a model's known users (or sequences) from its ONNX graph in onnxruntime.

    Plug it into the model with ``model.set_scorer(scorer)``; `score_users` and
    `score_sequences` return what the torch network would (within float rounding). Calls
    are cut into batches whose largest intermediate stays under 64 MiB.
    """

    def __init__(self, model: TorchRecommender, data: bytes, threads: int | None = None) -> None:
        require_onnx()
        import onnxruntime as ort  # type: ignore[import-untyped]  # onnxruntime ships no type information

        self.spec = graph_spec(model)
        facts = graph_facts(data)
        if facts.get("model") != model.name or int(facts.get("n_items", -1)) != model.n_items:
            raise ConfigError(f"the ONNX graph is for {facts.get('model')!r} with {facts.get('n_items')} items, "
                              f"not this {model.name!r} with {model.n_items}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or 0)  # 0: onnxruntime's default
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            data, options, providers=["CPUExecutionProvider"])
        self.model = model
        self.data = data
        self.block = max(1, _CELLS // max(self.spec.cells, 1))

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run([self.spec.output_name], feeds)[0], np.float32)

    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        """(len(user_idx), n_items) float32 scores of known users."""
        user_idx = np.asarray(user_idx, np.int64)
        if self.spec.family == "sequences":
            return self.score_sequences(self.model.user_sequences(user_idx))  # type: ignore[attr-defined]
        n_items = self.model.n_items
        out = np.empty((len(user_idx), n_items), np.float32)
        for start in range(0, len(user_idx), self.block):
            users = user_idx[start:start + self.block]
            if self.spec.family == "pairs":
                feeds = {"users": np.repeat(users, n_items), "items": np.tile(np.arange(n_items, dtype=np.int64),
                                                                              len(users))}
                out[start:start + len(users)] = self._run(feeds).reshape(len(users), n_items)
            else:
                assert self.spec.feed is not None  # set for the users and rows families
                out[start:start + len(users)] = self._run(self.spec.feed(users))
        return out

    def score_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        """(len(sequences), n_items) next-item scores after each sequence; 0 for an empty one."""
        from recforge.models.sequence_nets import pad_sequences

        if self.spec.family != "sequences":
            raise ConfigError(f"the {self.model.name!r} graph does not read item sequences")
        out = np.zeros((len(sequences), self.model.n_items), np.float32)
        tokens, lengths = pad_sequences(sequences, self.model.config.max_length)  # type: ignore[attr-defined]
        rows = np.flatnonzero(lengths > 0)
        for start in range(0, len(rows), self.block):
            sel = rows[start:start + self.block]
            out[sel] = self._run({"tokens": tokens[sel], "lengths": lengths[sel]})
        return out


def onnx_scorer(model: Recommender, check_users: int = 8, tolerance: float = 1e-3) -> OnnxScorer:
    """Export `model`'s graph, open it in onnxruntime and check it against the torch scores
    of the first `check_users` users (ConfigError when they differ by more than `tolerance`).

    The layers that a compressed artifact runs in int8 (`quantize_linear_layers`) are float
    layers of the same (int8-rounded) weights in the graph, and are compared as such.
    """
    graph_spec(model)  # a one-line ConfigError for models without a graph
    assert isinstance(model, TorchRecommender)  # graph_spec refuses the others
    model.set_scorer(None)  # the check compares with the torch network's own scores
    scorer = OnnxScorer(model, export_onnx(model), threads=model.config.threads)
    users = np.arange(min(check_users, model.n_users))
    if len(users):
        network = model.network_
        model.network_ = float_network(network)  # int8 layers compute in float in the graph
        try:
            expected = model.score(users)
        finally:
            model.network_ = network
        got = scorer.score_users(users)
        diff = float(np.max(np.abs(expected - got), initial=0.0))
        if not diff <= tolerance:
            raise ConfigError(f"onnxruntime scores of {model.name!r} differ from torch by {diff:.3g} "
                              f"(> {tolerance:g}); serve it with the torch runtime")
    return scorer
