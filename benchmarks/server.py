"""A `bentoml serve` of the packaged model for the HTTP benchmarks: started, waited for, stopped.

Why a module: the latency and the load benchmarks must start the service the same way (loopback
only, its own process group so that stopping it stops every worker) or their figures differ
for reasons that are not the service's."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd

from core.params import Params


def wait_ready(url: str, timeout_s: float = 300.0) -> None:
    """Return once ``/readyz`` answers 200; SystemExit after ``timeout_s``."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{url} not ready after {timeout_s:.0f} s")


@contextmanager
def served(url: str, root: Path, start: bool, env: dict[str, str] | None = None) -> Iterator[int | None]:
    """With ``start``: run `bentoml serve` on ``url``'s port in ``root`` (``env`` added to this
    process's environment) for the block, which gets its process id; without it, use the service
    already at ``url`` (None)."""
    server = None
    if start:
        port = url.rsplit(":", 1)[-1]
        server = subprocess.Popen([str(Path(sys.executable).parent / "bentoml"), "serve", "serving.service:Recommender", "--host",
                                   "127.0.0.1", "-p", port], cwd=root, start_new_session=True, env={**os.environ, **(env or {})},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(url)
        yield None if server is None else server.pid
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def tree_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user and system) used so far by process ``pid`` and its descendants alive now:
    what `bentoml serve` and its workers cost. Read from Linux's /proc; None without it or a pid."""
    proc = Path("/proc")
    if pid is None or not (proc / str(pid)).is_dir():
        return None
    stats: dict[int, tuple[int, int]] = {}  # pid -> (parent, clock ticks)
    for d in proc.iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            stats[int(d.name)] = (int(f[1]), int(f[11]) + int(f[12]))
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (pp, _) in stats.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


def users_and_items(params: Params) -> tuple[list[str], list[str]]:
    """The data's user ids (sorted) and item ids: what the HTTP benchmarks draw requests from."""
    raw = params.path(params.data.raw_dir)
    users = sorted(pd.read_parquet(raw / "interactions.parquet", columns=["user_id"])["user_id"].unique().tolist())
    return users, pd.read_parquet(raw / "items.parquet", columns=["item_id"])["item_id"].tolist()


def auth_headers() -> dict[str, str]:
    """The bearer header of ``PULSE_API_KEY`` when it is set (a locked service), else none."""
    key = os.environ.get("PULSE_API_KEY")
    return {"authorization": f"Bearer {key}"} if key else {}


def add_server_args(ap: argparse.ArgumentParser, out: str, start_help: str) -> None:
    """The options every HTTP benchmark takes: where the service is (or starts), the params, the report file."""
    ap.add_argument("--url", default="http://127.0.0.1:3000")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--start", action="store_true", help=start_help)
    ap.add_argument("--out", default=out)
