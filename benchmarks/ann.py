"""ANN vs exact retrieval on synthetic clustered catalogues: recall@10, per-request latency, build time, memory.

    python -m benchmarks.ann --sizes 10000,100000,1000000 --out reports/bench/ann.json

Each catalogue is N float32 vectors of width d (default 384, the issue's width) around
``N / items_per_cluster`` random unit centres, with noise 1.5 times the centre's norm (``--noise``; 100 items per centre) and a
log-normal norm per item (so the inner product, not the cosine, decides: the interest model's
score). A query (a user) is one centre plus half of another plus noise. "Exact" is what serving
does without the index: the query times every item vector (torch, one intra-op thread, as
serving's scoring thread) and top-k. "ANN" is the index's ``candidates`` proposals followed by the
exact re-rank of those candidates (``models.retrieval.rerank``), one query at a time on one thread.
Recall@10 compares the two top-10s. Every nprobe of ``--nprobe`` is measured; the table shows each.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

from models.retrieval import AnnConfig, AnnIndex, exact_top_k, recall_at_k, rerank, set_threads


def clustered(n: int, d: int, items_per_cluster: int, rng: np.random.Generator, noise: float = 1.0, genres: int = 0,
              chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 item vectors and the (C, d) unit centres they were drawn around (chunked: no float64 copy).
    ``genres`` > 0: the centres themselves lie around that many unit "genre" directions (a sub-genre is its
    genre plus as much noise), as text embeddings of a catalogue do; 0: independent random centres."""
    c = max(8, n // items_per_cluster)
    centres = rng.standard_normal((c, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    if genres > 0:
        tops = rng.standard_normal((genres, d), dtype=np.float32)
        tops /= np.linalg.norm(tops, axis=1, keepdims=True)
        centres = tops[rng.integers(0, genres, c)] + centres
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, d), dtype=np.float32)
    scale = np.float32(noise / np.sqrt(d))  # noise norm ~ `noise` times the centre's
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        x = centres[rng.integers(0, c, m)] + scale * rng.standard_normal((m, d), dtype=np.float32)
        x *= rng.lognormal(0.0, 0.25, (m, 1)).astype(np.float32)  # item norms differ: inner product, not cosine
        out[s:s + m] = x
    return out, centres


def queries_for(centres: np.ndarray, q: int, rng: np.random.Generator) -> np.ndarray:
    d = centres.shape[1]
    a, b = rng.integers(0, len(centres), q), rng.integers(0, len(centres), q)
    x = centres[a] + 0.5 * centres[b] + np.float32(1.0 / np.sqrt(d)) * rng.standard_normal((q, d), dtype=np.float32)
    return x.astype(np.float32)


def percentiles(seconds: list[float], cpu: list[float]) -> dict:
    """Wall-clock p50 / p99 / mean, and the same of the thread's CPU time: on a shared, loaded
    machine the wall clock includes waiting for a core, the CPU time is what the request cost."""
    ms, cpu_ms = np.array(seconds) * 1000, np.array(cpu) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3), "cpu_p50_ms": round(float(np.percentile(cpu_ms, 50)), 3),
            "cpu_p99_ms": round(float(np.percentile(cpu_ms, 99)), 3), "n": len(ms)}


def exact_latency(vectors: torch.Tensor, queries: np.ndarray, k: int) -> tuple[dict, np.ndarray]:
    """Per-request latency of exact scoring (torch matmul + topk) and its top-k ids (1-based)."""
    times, cpu, found = [], [], []
    for q in queries:
        t0, c0 = time.perf_counter(), time.thread_time()
        top = (vectors @ torch.from_numpy(q)).topk(k).indices
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        found.append(top.numpy() + 1)
    return percentiles(times, cpu), np.stack(found)


def ann_latency(index: AnnIndex, vectors: np.ndarray, queries: np.ndarray, k: int, candidates: int) -> tuple[dict, np.ndarray]:
    """Per-request latency of index search + exact re-rank of the candidates, and the top-k ids."""
    times, cpu, found = [], [], []
    for q in queries:
        t0, c0 = time.perf_counter(), time.thread_time()
        cand = index.search(q, candidates)[0]
        cand = cand[cand > 0]
        ids, _ = rerank(cand, vectors[cand - 1] @ q, k)
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        found.append(np.pad(ids, (0, k - len(ids)), constant_values=-1))
    return percentiles(times, cpu), np.stack(found)


def rss_mb() -> float:
    """Current resident memory of this process, MB (Linux /proc)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def run_size(n: int, d: int, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    vectors, centres = clustered(n, d, args.items_per_cluster, rng, args.noise, args.genres)
    gen_s = time.perf_counter() - t0
    queries = queries_for(centres, args.queries, rng)
    truth = exact_top_k(queries, vectors, args.k) + 1  # ids are positions, 1-based
    rss0 = rss_mb()
    cfg = AnnConfig(nlist=args.nlist, nprobe=max(args.nprobe), candidates=args.candidates)
    t0 = time.perf_counter()
    index = AnnIndex.build(vectors, cfg=cfg)
    build_s = time.perf_counter() - t0
    rss1 = rss_mb()
    n_exact = min(args.queries, args.exact_queries)
    exact, exact_found = exact_latency(torch.from_numpy(vectors), queries[:n_exact], args.k)
    assert recall_at_k(exact_found, truth[:n_exact]) == 1.0 or n > 0  # ties aside, the same top-k
    sweep = []
    for nprobe in args.nprobe:
        index.set_effort(nprobe)
        lat, found = ann_latency(index, vectors, queries, args.k, args.candidates)
        sweep.append({"nprobe": nprobe, "recall_at_10": round(recall_at_k(found, truth), 4), **lat})
        print(f"  N={n:>9,} nprobe={nprobe:>4}: recall@{args.k} {sweep[-1]['recall_at_10']:.4f}, "
              f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms (CPU {lat['cpu_p50_ms']:.2f} / {lat['cpu_p99_ms']:.2f})", flush=True)
    return {"n_items": n, "dim": d, "nlist": index.index.nlist, "candidates": args.candidates,
            "generate_s": round(gen_s, 2), "build_s": round(build_s, 2),
            "vectors_mb": round(vectors.nbytes / 2**20, 1), "index_mb": round(index.memory_bytes() / 2**20, 1),
            "index_rss_delta_mb": round(rss1 - rss0, 1), "exact": exact, "ann": sweep}


def markdown(results: list[dict], chosen: int) -> str:
    """The table of docs/scaling.md: wall clock and, in brackets, the request thread's CPU time."""
    lines = ["| items | nlist | nprobe | recall@10 | exact p50 / p99 ms (CPU) | ANN + re-rank p50 / p99 ms (CPU) "
             "| build s | index MB | vectors MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        e = r["exact"]
        for a in r["ann"]:
            mark = "**" if a["nprobe"] == chosen else ""
            lines.append(f"| {r['n_items']:,} | {r['nlist']} | {mark}{a['nprobe']}{mark} | {mark}{a['recall_at_10']:.4f}{mark} "
                         f"| {e['p50_ms']:.1f} / {e['p99_ms']:.1f} ({e.get('cpu_p50_ms', float('nan')):.1f} / {e.get('cpu_p99_ms', float('nan')):.1f}) "
                         f"| {a['p50_ms']:.1f} / {a['p99_ms']:.1f} ({a.get('cpu_p50_ms', float('nan')):.1f} / {a.get('cpu_p99_ms', float('nan')):.1f}) "
                         f"| {r['build_s']:.1f} | {r['index_mb']:.0f} | {r['vectors_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="catalogue sizes, comma-separated")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=300, help="queries for recall and ANN latency")
    ap.add_argument("--exact-queries", type=int, default=50, help="of which timed with exact scoring (slow at 10^6)")
    ap.add_argument("--nprobe", default="8,16,32,64", help="lists probed, comma-separated (the largest is the index's setting)")
    ap.add_argument("--nlist", type=int, default=0, help="inverted lists (0: sqrt(N))")
    ap.add_argument("--candidates", type=int, default=AnnConfig.candidates)
    ap.add_argument("--chosen-nprobe", type=int, default=AnnConfig.nprobe, help="the row the table marks (the serving default)")
    ap.add_argument("--items-per-cluster", type=int, default=100)
    ap.add_argument("--noise", type=float, default=1.5, help="noise norm relative to the unit centre")
    ap.add_argument("--genres", type=int, default=100, help="centres drawn around this many genre directions (0: independent)")
    ap.add_argument("--threads", type=int, default=1, help="torch and FAISS threads (serving uses 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="reports/bench/ann.json")
    ap.add_argument("--table", metavar="JSON", help="only print the table of a report this script wrote")
    args = ap.parse_args(argv)
    if args.table:
        report = json.loads(Path(args.table).read_text())
        print(markdown(report["results"], args.chosen_nprobe))
        return report
    args.nprobe = [int(x) for x in args.nprobe.split(",")]
    torch.set_num_threads(args.threads)
    set_threads(args.threads)
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        print(f"N = {n:,}, d = {args.dim}", flush=True)
        results.append(run_size(n, args.dim, args))
    report = {"command": "python -m benchmarks.ann " + " ".join(argv if argv is not None else os.sys.argv[1:]),
              "threads": args.threads, "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(markdown(results, args.chosen_nprobe))
    print(f"written {out}")
    return report


if __name__ == "__main__":
    main()
