"""How much memory and how many threads recforge's blocked computations may use.

Work over a users × items matrix (ranking every user, scoring, similarities) runs in row
blocks. One setting bounds them all: `block_mb`, the memory of the blocks in flight at once
(all threads together), 64 MiB unless set. `threads` is how many threads the compiled
kernels and the block pipelines use, by default the CPUs this process may run on.

Set them for the process with `set_limits`, or for a section of code with `limits` (a
context manager; it applies to the calling thread and to work it hands to recforge's pool).
The library never reads the environment itself; the CLI maps ``RECFORGE_BLOCK_MB`` and
``RECFORGE_THREADS`` (or its ``--block-mb`` / ``--threads`` options) onto `set_limits`.

>>> with limits(block_mb=1):
...     block_rows(4 * 1000)  # 1000 float32 columns
262
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Limits", "block_bytes", "block_rows", "current", "limits", "parallel_map", "set_limits", "threads"]

DEFAULT_BLOCK_MB = 64.0

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Limits:
    """`block_mb`: memory of the blocks in flight at once (MiB); `threads`: None = every CPU."""

    block_mb: float = DEFAULT_BLOCK_MB
    threads: int | None = None


_process = Limits()
_override: ContextVar[Limits | None] = ContextVar("recforge_limits", default=None)
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_POOL_PREFIX = "recforge-pool"


def _check(block_mb: float | None, threads: int | None) -> None:
    if block_mb is not None and not block_mb > 0:
        raise ValueError(f"block_mb must be positive, got {block_mb}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")


def current() -> Limits:
    """The limits in force here: a `limits` section's, else the process's."""
    return _override.get() or _process


def set_limits(block_mb: float | None = None, threads: int | None = None) -> Limits:
    """Set the process-wide limits (None keeps a value); returns the new limits."""
    global _process
    _check(block_mb, threads)
    _process = Limits(block_mb=_process.block_mb if block_mb is None else block_mb,
                      threads=_process.threads if threads is None else threads)
    return _process


@contextlib.contextmanager
def limits(block_mb: float | None = None, threads: int | None = None) -> Iterator[Limits]:
    """Run a section under other limits (None keeps the value in force)."""
    _check(block_mb, threads)
    base = current()
    new = Limits(block_mb=base.block_mb if block_mb is None else block_mb,
                 threads=base.threads if threads is None else threads)
    token = _override.set(new)
    try:
        yield new
    finally:
        _override.reset(token)


def threads() -> int:
    """Threads for kernels and block pipelines: the setting, else the CPUs available."""
    set_to = current().threads
    if set_to is not None:
        return set_to
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def block_bytes() -> int:
    """The memory of the blocks in flight at once, in bytes."""
    return int(current().block_mb * (1 << 20))


def block_rows(row_bytes: int, parts: int = 1) -> int:
    """Rows per block when `parts` blocks of rows of `row_bytes` bytes are in flight at once."""
    return max(1, block_bytes() // max(1, parts * row_bytes))


def parallel_map(fn: Callable[[T], R], items: Iterable[T], n_threads: int | None = None) -> list[R]:
    """`[fn(x) for x in items]` on up to `n_threads` threads of one shared pool, in order.

    For functions that spend their time outside the GIL (numba kernels, BLAS); the calling
    thread's `limits` apply inside them. One thread (or one item) runs inline.
    """
    work = list(items)
    n = min(threads() if n_threads is None else n_threads, len(work))
    if n <= 1 or threading.current_thread().name.startswith(_POOL_PREFIX):  # no nesting: inline
        return [fn(x) for x in work]
    limits_here = current()

    def run(x: T) -> R:
        token = _override.set(limits_here)
        try:
            return fn(x)
        finally:
            _override.reset(token)

    pool = _shared_pool(n)
    # at most n tasks in flight, so that n bounds the threads and the blocks alive at once
    results: list[R] = []
    pending = [pool.submit(run, x) for x in work[:n]]
    for nxt in work[n:]:
        results.append(pending.pop(0).result())
        pending.append(pool.submit(run, nxt))
    results.extend(f.result() for f in pending)
    return results


def _shared_pool(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < n:
            old, _pool, _pool_size = _pool, ThreadPoolExecutor(max_workers=n, thread_name_prefix=_POOL_PREFIX), n
            if old is not None:
                old.shutdown(wait=False)
        return _pool
