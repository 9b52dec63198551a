"""Event -> updated recommendation over HTTP: the latency of pulse's central promise, end to end.

Each step posts one event (``POST /events``, a known user, a random catalogue item, now) and then
asks for that user's recommendations (``POST /recommend``, k=10), timing the pair. ``--concurrency``
clients each run ``--requests / --concurrency`` steps back to back (a bounded load: a closed loop,
not an open firehose). Also counts how often the response already shows the event (the gated
model's ``interest.recent_items`` starts with it). Figures go to ``--out`` (JSON).

    make serve &   # or --start, which runs `bentoml serve` on --port itself and stops it after
    python -m benchmarks.http_latency [--url http://127.0.0.1:3000] [--requests 500] [--concurrency 1]
"""
from __future__ import annotations

import argparse
import sys
import threading
import time

import httpx
import numpy as np

from benchmarks.report import percentiles, write_report
from benchmarks.server import add_server_args, auth_headers, served, users_and_items
from core.params import load_params


def client(url: str, users: list[str], items: list[str], steps: int, seed: int, headers: dict, out: list) -> None:
    """One closed-loop client: event, then recommend, ``steps`` times; appends (ms, answered, reflected:
    None where the served model returns no ``recent_items``, i.e. has no switch gate)."""
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        for _ in range(steps):
            user, item = users[int(rng.integers(len(users)))], items[int(rng.integers(len(items)))]
            t0 = time.perf_counter()
            r1 = http.post("/events", json={"user_id": user, "item_id": item, "ts": int(time.time())})
            t1 = time.perf_counter()
            r2 = http.post("/recommend", json={"user_id": user, "k": 10})
            t2 = time.perf_counter()
            ms = ((t2 - t0) * 1000, (t1 - t0) * 1000, (t2 - t1) * 1000)
            if r1.status_code != 200 or r2.status_code != 200:
                out.append((ms, False, None))
                continue
            recent = (r2.json().get("interest") or {}).get("recent_items")  # None: a model without the gate shows none
            out.append((ms, True, None if recent is None else bool(recent) and recent[0] == item))


def main() -> None:
    ap = argparse.ArgumentParser(description="event -> updated recommendation latency over HTTP")
    add_server_args(ap, "reports/http-latency.json", "start `bentoml serve` on the --url port for the run")
    ap.add_argument("--requests", type=int, default=500, help="event + recommend pairs in all")
    ap.add_argument("--concurrency", type=int, default=1)
    args = ap.parse_args()
    params = load_params(args.params)
    users, items = users_and_items(params)
    headers = auth_headers()
    with served(args.url, params.root, args.start):
        # warm-up: the first requests load lazily built parts
        client(args.url, users, items, 10, 0, headers, [])
        results: list = []
        per = max(1, args.requests // args.concurrency)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(args.url, users, items, per, i + 1, headers, results)) for i in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    ms = np.array([m for m, ok, _ in results if ok]).reshape(-1, 3)
    shown = [r for _, ok, r in results if ok and r is not None]
    report = {"command": "python -m benchmarks.http_latency " + " ".join(sys.argv[1:]), "url": args.url, "concurrency": args.concurrency,
              "pairs": len(results), "errors": sum(not ok for _, ok, _ in results), "pairs_per_s": round(len(results) / wall, 1),
              "event_to_recommendation_ms": percentiles(ms[:, 0]), "events_ms": percentiles(ms[:, 1]), "recommend_ms": percentiles(ms[:, 2]),
              # the share of answers whose recent_items start with the posted event; null for a model without the gate
              "reflected_in_next_response": round(float(np.mean(shown)), 4) if shown else None}
    write_report(params.path(args.out), report)


if __name__ == "__main__":
    main()
