"""HNSW vs IVF-flat at 10^5 items (the data of benchmarks.ann): build time, recall@10, CPU time per query.

    python -m benchmarks.ann_hnsw   # writes reports/bench/ann_hnsw_1e5.json

HNSW: M = 32, efConstruction 40, built on 2 threads; IVF-flat: models.retrieval defaults. Search on one thread.
"""
import json
import time
from pathlib import Path

import faiss
import numpy as np

from benchmarks.ann import clustered, queries_for
from models.retrieval import exact_top_k, recall_at_k, AnnIndex
rng = np.random.default_rng(0)
n = 100_000
x, centres = clustered(n, 384, 100, rng, 1.5, 100)
q = queries_for(centres, 300, rng)
truth = exact_top_k(q, x, 10)
faiss.omp_set_num_threads(2)
out = {}
t0 = time.perf_counter(); h = faiss.IndexHNSWFlat(384, 32, faiss.METRIC_INNER_PRODUCT); h.hnsw.efConstruction = 40; h.add(x); out["hnsw_build_s"] = time.perf_counter() - t0
t0 = time.perf_counter(); ivf = AnnIndex.build(x); out["ivf_build_s"] = time.perf_counter() - t0
faiss.omp_set_num_threads(1)
for ef in (32, 64, 128):
    h.hnsw.efSearch = ef
    ts = []; found = []
    for qq in q:
        c0 = time.thread_time(); _, I = h.search(qq[None], 10); ts.append(time.thread_time() - c0); found.append(I[0])
    out[f"hnsw_ef{ef}"] = {"recall": recall_at_k(np.stack(found), truth), "cpu_p50_ms": 1000*np.percentile(ts, 50), "cpu_p99_ms": 1000*np.percentile(ts, 99)}
out["hnsw_mb"] = faiss.serialize_index(h).size / 2**20
print(json.dumps(out, indent=1))
Path("reports/bench").mkdir(parents=True, exist_ok=True)
Path("reports/bench/ann_hnsw_1e5.json").write_text(json.dumps(out, indent=1))
