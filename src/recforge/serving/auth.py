"""API keys: random secrets shown once, stored only as SHA-256 hashes in a JSON keys file.

A key has a name and a scope: ``read`` (recommendations, items, scores, events, metrics) or
``admin`` (all of read, plus reloading the model). Clients send it in the ``X-API-Key``
header. The keys file is re-read when it changes, so `recforge keys create` takes effect on
a running service without a restart.

Keys file layout::

    {"version": 1, "keys": [{"name": "web", "scope": "read", "sha256": "…", "created": "…"}]}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from recforge.errors import ConfigError

Scope = Literal["read", "admin"]
SCOPES: tuple[str, ...] = ("read", "admin")
HEADER = "X-API-Key"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_KEY_PREFIX = "rfk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyEntry:
    name: str
    scope: str
    sha256: str
    created: str = ""

    def allows(self, needed: str) -> bool:
        """Admin keys can do everything a read key can."""
        return self.scope == "admin" or self.scope == needed


def read_keys_file(path: str | Path) -> list[KeyEntry]:
    """Parse and validate a keys file; ConfigError (one line) when it is unusable."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"keys file {file} does not exist (create one with `recforge keys create`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"keys file {file} is unreadable: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ConfigError(f"keys file {file} has no 'keys' list")
    entries = []
    for i, raw in enumerate(data["keys"]):
        if not isinstance(raw, dict):
            raise ConfigError(f"keys file {file}: entry {i} is not an object")
        name, scope, digest = raw.get("name"), raw.get("scope"), raw.get("sha256")
        if not isinstance(name, str) or scope not in SCOPES or not isinstance(digest, str) \
                or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ConfigError(f"keys file {file}: entry {i} needs a name, a scope (read|admin) "
                              "and a 64-hex-digit sha256")
        entries.append(KeyEntry(name=name, scope=scope, sha256=digest, created=str(raw.get("created", ""))))
    return entries


def write_keys_file(path: str | Path, entries: list[KeyEntry]) -> None:
    """Replace the keys file atomically (temporary file + rename), readable by the owner only."""
    file = Path(path)
    payload = {"version": 1, "keys": [
        {"name": e.name, "scope": e.scope, "sha256": e.sha256, "created": e.created} for e in entries
    ]}
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_key(path: str | Path, name: str, scope: str = "read") -> str:
    """Add a new key named `name` to the keys file (created if absent); returns the secret.

    The secret itself is never written anywhere: only its SHA-256.
    """
    if not _NAME_RE.match(name):
        raise ConfigError(f"invalid key name {name!r} (1-64 letters, digits, _ . @ -)")
    if scope not in SCOPES:
        raise ConfigError(f"invalid scope {scope!r} (read or admin)")
    file = Path(path)
    if not file.parent.is_dir():
        raise ConfigError(f"cannot write keys file {file}: directory {file.parent} does not exist")
    entries = read_keys_file(file) if file.exists() else []
    if any(e.name == name for e in entries):
        raise ConfigError(f"a key named {name!r} already exists in {file} (revoke it first)")
    secret = _KEY_PREFIX + secrets.token_urlsafe(32)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    entries.append(KeyEntry(name=name, scope=scope, sha256=hash_key(secret), created=created))
    write_keys_file(file, entries)
    return secret


def revoke_key(path: str | Path, name: str) -> None:
    """Remove the key named `name` from the keys file."""
    entries = read_keys_file(path)
    kept = [e for e in entries if e.name != name]
    if len(kept) == len(entries):
        raise ConfigError(f"no key named {name!r} in {path}")
    write_keys_file(path, kept)


class KeyRing:
    """The keys a service accepts; ``None`` path means open mode (every request allowed).

    The file is re-read when its modification time or size changes; a file that has become
    unreadable keeps the last good keys (and `error` says why).
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: list[KeyEntry] = []
        self.error: str | None = None
        if self.path is not None:
            self._entries = read_keys_file(self.path)
            self._stamp = self._file_stamp()

    @property
    def open(self) -> bool:
        return self.path is None

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()  # type: ignore[union-attr]
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                self._entries = read_keys_file(self.path)  # type: ignore[arg-type]
                self.error = None
            except ConfigError as exc:
                self.error = str(exc)
            self._stamp = stamp

    def identify(self, key: str | None) -> KeyEntry | None:
        """The entry whose hash matches `key`, or None; compares in constant time."""
        if self.open:
            return KeyEntry(name="anonymous", scope="admin", sha256="")
        if not key:
            return None
        self._refresh()
        digest = hash_key(key)
        found = None
        for entry in self._entries:
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        return found
