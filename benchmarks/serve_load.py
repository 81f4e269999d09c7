"""Load test of `recforge serve`: N concurrent clients, a fixed number of requests.

Starts its own server (the `serve` command, with API keys, on a free loopback port and a
throw-away SQLite store), then runs `--clients` threads, each with a keep-alive httpx
client, until `--requests` requests are done or `--max-seconds` pass. Reports requests/s,
p50/p95/p99/max latency, errors, and the client/worker/thread counts.

    # an ML-100K item-kNN artifact, then 16 clients × 2000 requests against 1 worker
    recforge train --model itemknn --data ../shared/bench/ml-100k/topn_train.tsv --out /tmp/ml100k-iknn
    python benchmarks/serve_load.py --model /tmp/ml100k-iknn --clients 16 --requests 2000

The default mix is 80 % GET recommendations (random known users, k=10), 10 % similar items,
10 % POST events (one keyed event each); `--mix recommend` etc. runs one kind only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

_SERVE = ("import typer; from recforge.cli.serve import serve_command; "
          "app = typer.Typer(pretty_exceptions_enable=False); app.command()(serve_command); app()")
#: anyio's default thread pool, which runs FastAPI's sync endpoints in each worker
SERVER_THREADS = 40
MIXES = {
    "mixed": (("recommend", 0.8), ("similar", 0.1), ("events", 0.1)),
    "recommend": (("recommend", 1.0),),
    "similar": (("similar", 1.0),),
    "events": (("events", 1.0),),
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, workdir: Path, workers: int) -> tuple[subprocess.Popen, str, str]:
    """`recforge serve` with a fresh read key; returns (process, base URL, key)."""
    from recforge.serving.auth import create_key

    keys_file = workdir / "keys.json"
    key = create_key(keys_file, "load", "read")
    port = _free_port()
    cmd = [sys.executable, "-c", _SERVE, "--model", str(model), "--port", str(port),
           "--store", f"sqlite:///{workdir / 'events.db'}", "--keys-file", str(keys_file),
           "--workers", str(workers), "--log-level", "warning"]
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(workdir / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url, key
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise SystemExit("server did not become ready in 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


def run_load(url: str, key: str, users: list[str], items: list[str], clients: int, requests: int,
             max_seconds: float, mix: str, k: int, seed: int) -> dict[str, object]:
    """Run the clients; returns the measured figures."""
    kinds, weights = zip(*MIXES[mix], strict=True)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    statuses: dict[int, int] = {}
    counter = iter(range(requests))
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    deadline: list[float] = [0.0]

    def client(c: int) -> None:
        rng = random.Random(seed + c)
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as http:
            barrier.wait()
            while time.monotonic() < deadline[0]:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                kind = rng.choices(kinds, weights)[0]
                start = time.perf_counter()
                try:
                    if kind == "recommend":
                        r = http.get(f"/v1/users/{rng.choice(users)}/recommendations", params={"k": k})
                    elif kind == "similar":
                        r = http.get(f"/v1/items/{rng.choice(items)}/similar", params={"k": k})
                    else:
                        r = http.post("/v1/events", json={"events": [{
                            "user_id": rng.choice(users), "item_id": rng.choice(items), "rating": 4,
                            "idempotency_key": f"load-{seed}-{n}"}]})
                    status = r.status_code
                except httpx.HTTPError:
                    status = 0
                latencies[c].append(time.perf_counter() - start)
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                if not 200 <= status < 300:
                    errors[c] += 1

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + max_seconds
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join(timeout=max_seconds + 60)
    wall = time.perf_counter() - start
    lat = np.array([x for per in latencies for x in per]) * 1000
    done = len(lat)
    return {
        "requests": done, "errors": sum(errors), "statuses": dict(sorted(statuses.items())),
        "seconds": round(wall, 2), "requests_per_s": round(done / wall, 1) if wall else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if done else None,
        "p95_ms": round(float(np.percentile(lat, 95)), 2) if done else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if done else None,
        "max_ms": round(float(lat.max()), 2) if done else None,
        "stopped_by_time_limit": done < requests,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model artifact directory")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    parser.add_argument("--requests", type=int, default=2000, help="total requests (all clients)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--mix", choices=sorted(MIXES), default="mixed")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop sending after this")
    parser.add_argument("--warmup", type=int, default=50, help="requests before measuring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 512 or not 1 <= args.requests <= 1_000_000 or not 1 <= args.workers <= 64:
        parser.error("--clients 1..512, --requests 1..1000000, --workers 1..64")

    from recforge.registry import load_model

    model = load_model(args.model)
    users = [str(u) for u in model.user_map_.ids]
    items = [str(i) for i in model.item_map_.ids]
    with tempfile.TemporaryDirectory(prefix="recforge-load-") as tmp:
        proc, url, key = start_server(args.model, Path(tmp), args.workers)
        try:
            if args.warmup:
                run_load(url, key, users, items, min(args.clients, 4), args.warmup, 30, args.mix,
                         args.k, args.seed + 10_000)
            figures = run_load(url, key, users, items, args.clients, args.requests, args.max_seconds,
                               args.mix, args.k, args.seed)
        finally:
            stop_server(proc)
    report = {
        "model": model.name, "n_users": model.n_users, "n_items": model.n_items, "mix": args.mix,
        "k": args.k, "clients": args.clients, "server_workers": args.workers,
        "server_threads_per_worker": SERVER_THREADS, "cpus": os.cpu_count(), **figures,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"recforge serve load: {report['model']} ({model.n_users} users, {model.n_items} items), "
              f"mix={args.mix}, k={args.k}")
        print(f"  clients={args.clients} server_workers={args.workers} "
              f"threads/worker={SERVER_THREADS} cpus={report['cpus']}")
        print(f"  {figures['requests']} requests in {figures['seconds']} s: "
              f"{figures['requests_per_s']} req/s, errors={figures['errors']} {figures['statuses']}")
        print(f"  latency ms: p50={figures['p50_ms']} p95={figures['p95_ms']} "
              f"p99={figures['p99_ms']} max={figures['max_ms']}")
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
