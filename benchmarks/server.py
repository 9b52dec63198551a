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
def served(url: str, root: Path, start: bool, env: dict[str, str] | None = None, ready_s: float = 300.0,
           log_path: Path | None = None) -> Iterator[int | None]:
    """With ``start``: run `bentoml serve` on ``url``'s port in ``root`` (``env`` added to this
    process's environment) for the block, which gets its process id; without it, use the service
    already at ``url`` (None). ``ready_s``: how long it may take to answer ``/readyz`` (a large
    catalogue loads for minutes); ``log_path``: where its output goes (default: nowhere)."""
    server = None
    if start:
        port = url.rsplit(":", 1)[-1]
        out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115 (closed below)
        try:
            server = subprocess.Popen([str(Path(sys.executable).parent / "bentoml"), "serve", "serving.service:Recommender", "--host",
                                       "127.0.0.1", "-p", port], cwd=root, start_new_session=True, env={**os.environ, **(env or {})},
                                      stdout=out, stderr=subprocess.STDOUT if log_path is not None else subprocess.DEVNULL)
        finally:
            if log_path is not None:
                out.close()  # the child holds its own copy
    try:
        wait_ready(url, ready_s)
        yield None if server is None else server.pid
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def _proc_stats() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, CPU clock ticks used, user and system) of every process now, from /proc."""
    stats: dict[int, tuple[int, int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            stats[int(d.name)] = (int(f[1]), int(f[11]) + int(f[12]))
    return stats


def tree_pids(pid: int, stats: dict[int, tuple[int, int]] | None = None) -> set[int]:
    """``pid`` and its descendants alive now (``stats``: a ``_proc_stats()`` already taken)."""
    stats = _proc_stats() if stats is None else stats
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (pp, _) in stats.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return {p for p in tree if p in stats}


def tree_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user and system) used so far by process ``pid`` and its descendants alive now:
    what `bentoml serve` and its workers cost. Read from Linux's /proc; None without it or a pid."""
    if pid is None or not (Path("/proc") / str(pid)).is_dir():
        return None
    stats = _proc_stats()
    return sum(stats[p][1] for p in tree_pids(pid, stats)) / os.sysconf("SC_CLK_TCK")


def tree_memory_mb(pid: int | None) -> dict[str, float] | None:
    """Resident memory of ``pid`` and its descendants, in MiB: now (``rss_mb``) and each process's
    peak added up (``peak_mb``, VmHWM), with the number of processes: what `bentoml serve` holds.
    None without /proc or a pid. Shared pages count once per process (an upper bound)."""
    if pid is None or not (Path("/proc") / str(pid)).is_dir():
        return None
    kb = {"VmRSS": 0, "VmHWM": 0}
    pids = tree_pids(pid)
    for p in pids:
        try:
            lines = (Path("/proc") / str(p) / "status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key in kb:
                kb[key] += int(value.split()[0])
    return {"rss_mb": round(kb["VmRSS"] / 1024, 1), "peak_mb": round(kb["VmHWM"] / 1024, 1), "processes": len(pids)}


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
