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
FORMAT_VERSION = 1


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


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save plain numeric arrays; object arrays are refused so loading never needs pickle."""
    for key, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise ArtifactError(f"array {key!r} has dtype object and cannot be saved without pickle")
    with path.open("wb") as fh:
        # the stubs reject ``**arrays`` because a key could be savez's own `allow_pickle`
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]


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
    write_json(directory / "meta.json", {**meta, "format": FORMAT,
                                         "format_version": FORMAT_VERSION, "files": files})


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
