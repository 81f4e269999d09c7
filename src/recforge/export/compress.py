"""Compressed model artifacts: fp16 / int8 weights, magnitude pruning, dropped embedding rows.

``recforge compress --model DIR --quantize int8 --prune 0.8 --prune-rows 0.5 --out DIR2``
writes an artifact that `Recommender.load` (and so `recforge serve`) opens like any other:

* ``--quantize fp16``: every float array of the weights with 64 values or more is stored
  as float16 (1-D ones too; an array beyond float16's range stays float32).
* ``--quantize int8``: each 2-D (or higher) float array with at least 8 columns — the
  factor and embedding tables, the MLP weight matrices — is stored as int8 with a float32
  scale per row (symmetric: scale = max |row| / 127); narrower and 1-D arrays as float16.
  Tables are dequantized at load. The MLP layers that a model runs only through their
  forward pass (`int8_layer_names`) are also *run* in int8: torch's dynamic quantization
  (`torch.ao.quantization.quantize_dynamic`, per-channel weights, activations quantized
  per call) replaces them at load; the rest compute in float32 from the dequantized weights.
* ``--prune S``: magnitude pruning of the fraction S of the smallest weights of the linear
  layers of a torch network — its MLP layers — ranked across layers
  (``torch.nn.utils.prune.global_unstructured``, L1, made permanent). Models without
  linear layers (MF) are refused: use --prune-rows.
* ``--prune-rows R``: the item embedding rows (ID vectors and ID biases) of the fraction R
  of items with the fewest training interactions are set to zero and not stored (users
  keep theirs: every user stays personalised).

Integer arrays (a sequence model's stored sequences, the training matrix's indices) are
stored losslessly in the smallest integer type, the training matrix's column indices as
gaps within each row, and both .npz files zip-deflated. meta.json records what was done
under ``compression`` (settings, the pruned layers and rows, the achieved sparsity, each
array's codec) and the artifact gets format version 2 (`recforge.models.artifact`). Only
the top level of a composite model (hybrid) is compressed; its parts stay as they are.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from recforge.errors import ConfigError
from recforge.models import artifact
from recforge.models.base import Recommender

__all__ = [
    "QUANTIZE",
    "Quantize",
    "compress_arrays",
    "compress_artifact",
    "int8_layer_names",
    "prune_embedding_rows",
    "prune_linear_layers",
]

Quantize = Literal["none", "fp16", "int8"]
QUANTIZE: tuple[str, ...] = ("none", "fp16", "int8")
#: arrays with fewer values are stored as they are (their codec would cost more than it saves)
MIN_SIZE = 64
#: an array needs this many columns to be stored as int8 rows (else fp16: a per-row scale
#: would eat the saving)
MIN_INT8_COLUMNS = 8
#: float16's largest finite value
_FP16_MAX = 65504.0


# ---------------------------------------------------------------------- which layers
def int8_layer_names(model: Recommender) -> list[str]:
    """Linear layers of `model`'s network that it uses only through their forward pass, so
    that they can run as torch dynamically quantized int8 layers.

    Layers whose weight a model reads directly (NCF's first tower layer and output layer,
    Mult-VAE's last decoder layer — its item vectors —, AutoRec's decoder, the
    attention blocks of SASRec) stay float layers, stored as int8 rows all the same.
    """
    from recforge.models.autorec import AutoRec
    from recforge.models.deepfm import DeepFM
    from recforge.models.gru4rec import GRU4Rec
    from recforge.models.multvae import MultVAE
    from recforge.models.ncf import NCF
    from recforge.models.two_tower import TwoTower

    def linears(prefix: str, module: nn.Module | None, skip: tuple[str, ...] = ()) -> list[str]:
        if module is None:
            return []
        return [f"{prefix}.{name}" for name, m in module.named_modules()
                if isinstance(m, nn.Linear) and name not in skip]

    if isinstance(model, NCF):
        return linears("tower", getattr(model.network_, "tower", None), skip=("0",))
    if isinstance(model, DeepFM):
        return linears("deep", model.network_.deep)
    if isinstance(model, TwoTower):
        return linears("user_tower", model.network_.user_tower) + linears("item_tower", model.network_.item_tower)
    if isinstance(model, MultVAE):
        decoder = model.network_.decoder
        return linears("encoder", model.network_.encoder) + linears("decoder", decoder, skip=(str(len(decoder) - 1),))
    if isinstance(model, AutoRec):
        return ["encoder"]
    if isinstance(model, GRU4Rec):
        return ["out"]
    return []


def prune_linear_layers(net: nn.Module, amount: float) -> dict[str, Any]:
    """Zero the fraction `amount` of the smallest-magnitude weights of the linear layers of
    `net`, ranked across all of them (`torch.nn.utils.prune.global_unstructured` with L1,
    made permanent: a layer whose weights matter more keeps more); returns the pruned
    layers and the share of their weights now zero."""
    layers = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ConfigError("the network has no linear (MLP) layers to prune; --prune-rows drops rarely-used "
                          "embedding rows instead")
    torch_prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=torch_prune.L1Unstructured,
                                    amount=float(amount))
    zeros = total = 0
    for _name, layer in layers:
        torch_prune.remove(layer, "weight")
        zeros += int((layer.weight == 0).sum())
        total += layer.weight.numel()
    return {"layers": [name for name, _ in layers], "sparsity": round(zeros / max(total, 1), 4)}


def prune_embedding_rows(model: Recommender, fraction: float) -> dict[str, Any]:
    """Zero the embedding rows of the `fraction` of items with the fewest training
    interactions in every item table (vectors and biases) of `model`'s network (ties: lower
    index first). Users keep theirs: a user's row is read on each of their requests, a
    rarely-used item's seldom matters to a ranking."""
    from recforge.models.torch_base import TorchRecommender

    if not isinstance(model, TorchRecommender):
        raise ConfigError(f"model {model.name!r} has no torch embedding tables to prune")
    drop = np.argsort(np.asarray(model.item_popularity_), kind="stable")[:int(fraction * model.n_items)]
    tables: list[str] = []
    for name, module in model.network_.named_modules():
        if not isinstance(module, nn.Embedding):
            continue
        side, offset = _table_side(name, module, model.n_users, model.n_items)
        if side != "item":
            continue
        with torch.no_grad():
            module.weight[torch.from_numpy(drop + offset)] = 0.0
        tables.append(name)
    if not tables:
        raise ConfigError(f"model {model.name!r} has no item embedding tables to prune")
    return {"tables": tables, "items": len(drop)}


def _table_side(name: str, table: nn.Embedding, n_users: int, n_items: int) -> tuple[str | None, int]:
    """("user" | "item" | None, row offset) of an embedding table, told by its size (a
    sequence model's item table has a padding row 0 first), by its name when sizes tie."""
    size = table.num_embeddings
    padded = table.padding_idx == 0 and size == n_items + 1
    sides = [s for s, n in (("user", n_users), ("item", n_items)) if size == n] + (["item"] if padded else [])
    if len(sides) > 1:
        sides = [s for s in sides if s in name.lower()][:1]
    if not sides:
        return None, 0
    return sides[0], 1 if padded and sides[0] == "item" and size != n_items else 0


# ---------------------------------------------------------------------- array codecs
def _int_dtype(values: np.ndarray) -> np.dtype:
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    return values.dtype


def compress_arrays(arrays: dict[str, np.ndarray], quantize: Quantize,
                    gaps: tuple[str, ...] = ()) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """(stored arrays, codecs) of `arrays` under `quantize`, for `artifact.decode_arrays`.

    Float arrays: see the module docstring; a 2-D float array whose rows are mostly zero
    (pruned embedding rows) stores its non-zero rows only. Integer arrays: the smallest
    integer type; the keys in `gaps` (CSR column indices, with ``indptr`` beside them) as
    gaps within each row. Arrays under `MIN_SIZE` values are kept as they are.
    """
    stored: dict[str, np.ndarray] = {}
    codecs: dict[str, dict[str, Any]] = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        codec: dict[str, Any] = {"dtype": value.dtype.str, "shape": list(value.shape)}
        if value.size < MIN_SIZE or key.startswith("history."):
            stored[key] = value
            continue
        if key in gaps:
            indptr = np.asarray(arrays["indptr"], np.int64)
            diff = np.diff(value.astype(np.int64), prepend=0)
            starts = indptr[:-1][np.diff(indptr) > 0]
            diff[starts] = value[starts]
            stored[key] = diff.astype(_int_dtype(diff))
            codecs[key] = {**codec, "codec": "gaps"}
            continue
        if np.issubdtype(value.dtype, np.integer):
            stored[key] = value.astype(_int_dtype(value))
            codecs[key] = {**codec, "codec": "int"}
            continue
        if not np.issubdtype(value.dtype, np.floating):
            stored[key] = value
            continue
        if value.ndim >= 2 and len(value):
            flat = value.reshape(len(value), -1)
            nonzero = np.flatnonzero(np.abs(flat).max(axis=1) > 0)
            if len(nonzero) < 0.75 * len(flat):  # mostly pruned rows: keep the others only
                stored[key + artifact.ROWS] = nonzero.astype(_int_dtype(nonzero))
                value = value[nonzero]
                codec["rows"] = True
        if quantize == "int8" and value.ndim >= 2 and len(value) and value[0].size >= MIN_INT8_COLUMNS:
            flat = value.reshape(len(value), -1).astype(np.float32)
            scale = np.abs(flat).max(axis=1) / 127.0
            scale[scale == 0] = 1.0
            stored[key] = np.clip(np.rint(flat / scale[:, None]), -127, 127).astype(np.int8).reshape(value.shape)
            stored[key + artifact.SCALE] = scale.astype(np.float32)
            codecs[key] = {**codec, "codec": "int8_rows"}
        elif quantize != "none" and (not value.size or np.abs(value).max() <= _FP16_MAX):
            stored[key] = value.astype(np.float16)
            codecs[key] = {**codec, "codec": "fp16"}
        else:
            stored[key] = value
            if codec.get("rows"):
                codecs[key] = {**codec, "codec": "none"}
    return stored, codecs


# ---------------------------------------------------------------------- the command
def compress_artifact(source: str | Path, out: str | Path, quantize: Quantize = "none", prune: float = 0.0,
                      prune_rows: float = 0.0) -> dict[str, Any]:
    """Write a compressed copy of the artifact `source` to `out`; returns its ``compression``
    record (also in `out`'s meta.json). See the module docstring for the options."""
    if quantize not in QUANTIZE:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    for option, value in (("--prune", prune), ("--prune-rows", prune_rows)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{option} is a fraction in [0, 1), got {value}")
    src, dst = Path(source), Path(out)
    meta = artifact.open_artifact(src)
    if "compression" in meta:
        raise ConfigError(f"{src} is already compressed; compress the original artifact")
    if dst.resolve() == src.resolve():
        raise ConfigError("--out must differ from --model")
    model = Recommender.load(src)
    from recforge.models.torch_base import TorchRecommender

    record: dict[str, Any] = {"quantize": quantize, "prune": prune, "prune_rows": prune_rows,
                              "source_fingerprint": meta.get("fingerprint", "")}
    if prune > 0:
        if not isinstance(model, TorchRecommender):
            raise ConfigError(f"model {model.name!r} has no torch network: --prune applies to MLP layers")
        try:
            record["pruned_layers"] = prune_linear_layers(model.network_, prune)
        except ConfigError as exc:
            raise ConfigError(f"model {model.name!r}: {exc}") from None
    if prune_rows > 0:
        record["pruned_rows"] = prune_embedding_rows(model, prune_rows)
    if quantize == "int8" and isinstance(model, TorchRecommender):
        record["int8_layers"] = int8_layer_names(model)
    if dst.exists():
        shutil.rmtree(dst)
    model.save(dst)
    codecs: dict[str, dict[str, Any]] = {}
    for name, gaps in (("weights.npz", ()), ("train.npz", ("indices",))):
        stored, codecs[name] = compress_arrays(artifact.read_npz(dst / name), quantize, gaps)
        artifact.write_npz(dst / name, stored, compressed=True)
    record["arrays"] = codecs
    saved = artifact.read_json(dst / "meta.json")
    saved.pop("files", None)
    artifact.finalize(dst, {**saved, "compression": record})
    return record


def artifact_bytes(directory: str | Path) -> int:
    """Total size of an artifact directory's files (parts included)."""
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
