"""Load on the HTTP service, the production-serving targets in one run (figures to ``--out``):

1. ``/recommend`` alone, 1 client: the idle latency every other figure is compared with;
2. ``/recommend`` at ``--recommend-concurrency`` clients (8): requests/s, p50 / p99;
3. ``/events`` (one event each) at ``--events-concurrency`` clients (16): requests/s, p50 / p99, and
   whether every acknowledged event is in the event log afterwards (``lost`` counts those missing);
4. ``/recommend`` (1 client) while one client posts ``--batches`` (5) batches of ``--batch-events`` (10,000),
   one after another: its p99 meanwhile against the idle p99 of phase 1.

Each client is a closed loop (the next request leaves when the answer is in: a bounded load,
not an open firehose) over random users and items of the data, for ``--seconds`` per phase.
The clients run on the same machine as the service, so what they cost is taken from it: each is a
thread with one keep-alive ``http.client`` connection, about 0.5 ms of CPU per request on the
2-core machine, where an ``httpx.Client`` took 1.6 to 2.7 ms (a third of what the service itself
spends on an ``/events``); the report gives the client's CPU per request (``client_cpu_ms_per_req``).
With ``--start`` the benchmark runs `bentoml serve` itself with the event log in a temporary
folder (the project's own log is not written; the online store is: the next pipeline run
rebuilds it), and ``--workers`` API worker processes (``PULSE_WORKERS``).

    python -m benchmarks.load --start [--seconds 20] [--workers 1] [--out reports/bench/load.json]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

from benchmarks.report import percentiles, write_report
from benchmarks.server import add_server_args, auth_headers, served, tree_cpu_s, users_and_items
from core.eventlog import read_events
from core.params import load_params


class KeepAlive:
    """One client's keep-alive connection (the standard library's ``http.client``: the cheapest
    Python client that keeps the connection, so the figures are the service's more than the client's)."""

    def __init__(self, url: str, headers: dict) -> None:
        u = urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
        self.headers = {"content-type": "application/json", **headers}

    def post(self, path: str, body: dict) -> int:
        """POST a JSON body and read the whole answer; its status."""
        try:
            return self._post(path, body)
        except (http.client.HTTPException, ConnectionError):  # the server closed the kept connection: once more, on a new one
            self.conn.close()
            return self._post(path, body)

    def _post(self, path: str, body: dict) -> int:
        self.conn.request("POST", path, body=json.dumps(body), headers=self.headers)
        r = self.conn.getresponse()
        r.read()
        return r.status

    def close(self) -> None:
        self.conn.close()


class Phase:
    """Closed-loop clients running one request kind until ``stop`` is set; thread-safe tallies."""

    def __init__(self, url: str, headers: dict, users: list[str], items: list[str], server_pid: int | None = None) -> None:
        self.url, self.headers, self.users, self.items, self.server_pid = url, headers, users, items, server_pid
        self.cpu_s: dict[str, float | None] = {}
        self.ms: list[float] = []
        self.errors: dict[int, int] = {}
        self.acked: list[tuple[str, str, int]] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def run(self, kind: str, clients: int, seconds: float | None, seed: int = 0) -> float:
        """``clients`` threads of ``kind`` (recommend | events) for ``seconds`` (None: until ``stop``); wall seconds."""
        threads = [threading.Thread(target=self._client, args=(kind, seed + i)) for i in range(clients)]
        server0, client0 = tree_cpu_s(self.server_pid), time.process_time()
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        if seconds is not None:
            time.sleep(seconds)
            self.stop.set()
        for t in threads:
            t.join()
        server1 = tree_cpu_s(self.server_pid)
        self.cpu_s = {"server": server1 - server0 if server0 is not None and server1 is not None else None,
                      "client": time.process_time() - client0}
        return time.perf_counter() - t0

    def _client(self, kind: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        conn = KeepAlive(self.url, self.headers)
        try:
            while not self.stop.is_set():
                user, item = self.users[int(rng.integers(len(self.users)))], self.items[int(rng.integers(len(self.items)))]
                ts = int(time.time())
                body = {"user_id": user, "k": 10} if kind == "recommend" else {"user_id": user, "item_id": item, "ts": ts}
                t0 = time.perf_counter()
                try:
                    status = conn.post(f"/{kind}", body)
                except (OSError, http.client.HTTPException):  # no answer at all (a timeout, a refusal): counted as 0, next on a new connection
                    status = 0
                    conn.close()
                ms = (time.perf_counter() - t0) * 1000
                with self._lock:
                    if status == 200:
                        self.ms.append(ms)
                        if kind == "events":
                            self.acked.append((user, item, ts))
                    else:
                        self.errors[status] = self.errors.get(status, 0) + 1
        finally:
            conn.close()

    def figures(self, wall: float) -> dict:
        """Requests, errors, requests/s, latency percentiles, and the CPU milliseconds per answered request
        of the service (every process of a ``--start``ed one; null otherwise) and of this client process."""
        per = {k: round(1000 * v / len(self.ms), 2) if v is not None and self.ms else None for k, v in self.cpu_s.items()}
        return {"requests": len(self.ms), "errors": self.errors, "requests_per_s": round(len(self.ms) / wall, 1),
                "ms": percentiles(self.ms), "server_cpu_ms_per_req": per.get("server"), "client_cpu_ms_per_req": per.get("client")}


def during_batch(url: str, headers: dict, users: list[str], items: list[str], n: int, batches: int) -> dict:
    """``/recommend`` (1 client) while one client posts ``batches`` batches of ``n`` events, one
    after another (enough of them that the recommendations in flight meanwhile are a sample)."""
    rng = np.random.default_rng(99)
    rec = Phase(url, headers, users, items)
    out: dict = {"batch_status": [], "batch_s": []}

    def post() -> None:
        for _ in range(batches):
            now = int(time.time())
            batch = [{"user_id": users[int(rng.integers(len(users)))], "item_id": items[int(rng.integers(len(items)))],
                      "ts": now - int(rng.integers(3600))} for _ in range(n)]
            t0 = time.perf_counter()
            r = httpx.post(f"{url}/events", json={"events": batch}, headers=headers, timeout=600)
            out["batch_status"].append(r.status_code)
            out["batch_s"].append(round(time.perf_counter() - t0, 2))
        rec.stop.set()

    poster = threading.Thread(target=post)
    poster.start()
    wall = rec.run("recommend", 1, None, seed=7)
    poster.join()
    return out | {"recommend": rec.figures(wall)}


def main() -> None:
    ap = argparse.ArgumentParser(description="load on the HTTP service: /recommend, /events, and /recommend during a big batch")
    add_server_args(ap, "reports/bench/load.json", "start `bentoml serve` on the --url port, event log in a temporary folder")
    ap.add_argument("--seconds", type=float, default=20.0, help="per phase")
    ap.add_argument("--recommend-concurrency", type=int, default=8)
    ap.add_argument("--events-concurrency", type=int, default=16)
    ap.add_argument("--batch-events", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=5, help="batches of --batch-events posted one after another in phase 4")
    ap.add_argument("--workers", type=int, default=1, help="with --start: API worker processes (PULSE_WORKERS)")
    args = ap.parse_args()
    params = load_params(args.params)
    users, items = users_and_items(params)
    headers = auth_headers()
    tmp = Path(tempfile.mkdtemp(prefix="pulse-load-"))
    log_path = str(tmp / "events.jsonl") if args.start else os.environ.get("PULSE_EVENT_LOG") or str(params.path(params.data.event_log))
    report: dict = {"command": "python -m benchmarks.load " + " ".join(sys.argv[1:]), "workers": args.workers if args.start else None,
                    "cpu_count": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    env = {"PULSE_EVENT_LOG": log_path, "PULSE_WORKERS": str(args.workers)}
    with served(args.url, params.root, args.start, env) as pid:
        Phase(args.url, headers, users, items).run("recommend", 1, 3.0)  # warm-up: lazily built parts
        idle = Phase(args.url, headers, users, items, pid)
        report["recommend_c1"] = idle.figures(idle.run("recommend", 1, args.seconds))
        rec = Phase(args.url, headers, users, items, pid)
        report[f"recommend_c{args.recommend_concurrency}"] = rec.figures(rec.run("recommend", args.recommend_concurrency, args.seconds))
        ev = Phase(args.url, headers, users, items, pid)
        report[f"events_c{args.events_concurrency}"] = ev.figures(ev.run("events", args.events_concurrency, args.seconds))
        report["during_batch"] = during_batch(args.url, headers, users, items, args.batch_events, args.batches)
    # every acknowledged event must be in the log (checked for a file log; a Redis log: not here)
    lost = None
    if Path(log_path).is_file():
        logged = {(e.user_id, e.item_id, e.ts) for e in read_events(Path(log_path))}
        lost = sum(a not in logged for a in set(ev.acked))
    report[f"events_c{args.events_concurrency}"]["lost"] = lost
    idle_p99, batch_p99 = report["recommend_c1"]["ms"].get("p99"), report["during_batch"]["recommend"]["ms"].get("p99")
    report["during_batch"]["p99_vs_idle"] = round(batch_p99 / idle_p99, 2) if idle_p99 and batch_p99 else None
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_report(params.path(args.out), report)


if __name__ == "__main__":
    main()
