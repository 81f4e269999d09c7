"""Model artifact directories: JSON metadata, `.npz` arrays (never pickle), checksums.

Layout of a saved model::

    meta.json       format marker, model name, recforge version, data fingerprint, file hashes
    config.json     the model's validated config
    weights.npz     learned arrays of the model (allow_pickle=False)
    train.npz       training matrix (for seen-item exclusion), popularity, rating facts
    user_ids.json   external user IDs in index order
    item_ids.json   external item IDs in index order
    items.parquet   item metadata (titles, genres...) when the data had it
    parts/NAME/     a composite model's sub-models, each an artifact of its own

A compressed artifact (`recforge.export.compress`) has format version 2: its weights.npz and
train.npz are zip-deflated and some arrays are stored encoded — fp16, int8 rows with a
scale per row, only the non-zero rows, integers in the smallest type that holds them, CSR
column indices as per-row gaps. meta.json's ``compression`` says how each was encoded
(``arrays``: file → key → codec), and `decode_arrays` restores the original dtypes and
shapes at load, so a model's `_set_state` never sees an encoded array. Plain artifacts keep
format version 1, which older recforge versions read.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from recforge.errors import ArtifactError

FORMAT = "recforge-model"
#: the newest format this version reads; plain artifacts are written as 1, compressed as 2
FORMAT_VERSION = 2
#: suffixes of the extra arrays of an encoded array `key` in a compressed npz
SCALE, ROWS = "@scale", "@rows"
#: prefix of the arrays that record training (per-epoch loss and metric), not learned weights
HISTORY = "history."


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_npz(path: Path, arrays: dict[str, np.ndarray], compressed: bool = False) -> None:
    """Save plain numeric arrays (zip-deflated with `compressed`); object arrays are refused
    so loading never needs pickle."""
    for key, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise ArtifactError(f"array {key!r} has dtype object and cannot be saved without pickle")
    save = np.savez_compressed if compressed else np.savez
    with path.open("wb") as fh:
        # the stubs reject ``**arrays`` because a key could be savez's own `allow_pickle`
        save(fh, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]


def decode_arrays(arrays: dict[str, np.ndarray], codecs: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """The original arrays of a compressed npz, given its codecs (key → codec, see below).

    A codec names the stored form: ``fp16`` (a cast), ``int8_rows`` (int8 values with a
    float32 scale per row in ``key@scale``: value = q · scale), ``int`` (an integer cast),
    ``gaps`` (CSR column indices stored as gaps within each row of the ``indptr`` array of
    the same file); with ``rows`` set, only the rows listed in ``key@rows`` are stored and
    the others are zero. ``dtype`` and ``shape`` are the original array's.
    """
    out = {k: v for k, v in arrays.items() if not k.endswith((SCALE, ROWS))}
    for key, codec in codecs.items():
        stored = out[key]
        kind = codec["codec"]
        if kind == "int8_rows":
            flat = stored.reshape(len(stored), -1).astype(np.float32) * arrays[key + SCALE][:, None]
            value = flat.reshape(stored.shape)
        elif kind == "gaps":
            indptr = np.asarray(arrays["indptr"], np.int64)
            run = np.cumsum(stored, dtype=np.int64)
            starts = indptr[:-1]
            before = np.where(starts > 0, run[np.maximum(starts - 1, 0)] if len(run) else 0, 0)
            value = run - np.repeat(before, np.diff(indptr))
        else:  # fp16, int: a cast back
            value = stored
        value = np.asarray(value).astype(np.dtype(codec["dtype"]), copy=False)
        if codec.get("rows"):
            full = np.zeros(tuple(codec["shape"]), value.dtype)
            full[np.asarray(arrays[key + ROWS], np.int64)] = value
            value = full
        if list(value.shape) != list(codec["shape"]):
            raise ValueError(f"{key} decodes to shape {value.shape}, not {tuple(codec['shape'])}")
        out[key] = value
    return out


def check_finite(directory: Path, file: str, arrays: dict[str, np.ndarray]) -> None:
    """ArtifactError unless every floating-point array the model scores with is finite.

    A fitted model never saves NaN or infinity in its weights, so one in the file means
    damage (or an edit with recomputed checksums): loading it would turn every score into
    garbage. The training record (``history.*``: losses, a NaN metric for epochs without
    validation) is not scored with and is not checked.
    """
    for key, arr in arrays.items():
        if arr.dtype.kind in "fc" and not key.startswith(HISTORY):
            bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
            if bad:
                raise ArtifactError(f"{directory} is corrupt: {file} array {key!r} holds {bad} non-finite "
                                    "value(s) (NaN or infinity)")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ArtifactError(f"{path} is corrupt or truncated ({exc})") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path.parent} is not a recforge model: {path.name} missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is corrupt ({exc})") from None


def finalize(directory: Path, meta: dict[str, Any]) -> None:
    """Write meta.json last, with a SHA-256 for every other file in the directory.

    The meta.json of each nested part (``parts/NAME/meta.json``, itself holding its files'
    hashes) is hashed too, so one check covers the whole tree.
    """
    files = {p.name: sha256_file(p) for p in sorted(directory.iterdir())
             if p.is_file() and p.name != "meta.json"}
    files.update({p.relative_to(directory).as_posix(): sha256_file(p)
                  for p in sorted(directory.glob("parts/*/meta.json"))})
    version = 2 if "compression" in meta else 1  # older versions still read plain artifacts
    write_json(directory / "meta.json", {**meta, "format": FORMAT, "format_version": version, "files": files})


def open_artifact(directory: str | Path) -> dict[str, Any]:
    """Validate a model directory and return its meta.json; errors name what is wrong."""
    path = Path(directory)
    if not path.is_dir():
        raise ArtifactError(f"model directory {path} does not exist")
    meta = read_json(path / "meta.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a recforge model (meta.json has no recforge format marker)")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ArtifactError(
            f"{path} was saved by a newer recforge (format {meta.get('format_version')}); upgrade recforge"
        )
    for name, digest in meta.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{path} is incomplete: {name} is missing")
        if sha256_file(file) != digest:
            raise ArtifactError(f"{path} is corrupt: {name} does not match its checksum")
    return meta
