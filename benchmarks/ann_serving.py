"""The serving path with ANN retrieval on a large synthetic catalogue: the interest model's own scoring, exact vs index + re-rank.

    python -m benchmarks.ann_serving --sizes 100000,1000000 --index hnsw --out reports/bench/ann_serving.json
    python -m benchmarks.ann_serving --sizes 100000,1000000 --index ivf --effort 32,64,128,256 --out reports/bench/ann_serving_ivf.json

``benchmarks.ann`` measures the index alone on raw d = 384 vectors. This one measures what
``/recommend`` runs (``models.candidates.CandidateScorer.score``, which ``Engine.recommend``
calls above ``package.ann_min_items``): an interest model (width 64, 2 layers, text projection
plus id embeddings, weights random: no training data at this size) over N items whose text
embeddings are clustered d = 384 vectors, a 30-behaviour history per request, the top-10
after excluding the history. "Exact" is the model's ``score_and_explain`` over every item, which
also recomputes every item vector (text projection) per request, as serving does today; "exact,
cached vectors" is only ``user . item`` over cached vectors, the fastest exact scoring could be.
Recall@10 is the ANN path's top-10 against the model's exact top-10. One torch and FAISS thread.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.ann import clustered, percentiles
from models.candidates import AnnSettings, CandidateScorer, build_index
from models.interest import InterestConfig, InterestModel
from models.retrieval import recall_at_k, set_threads


def model_over(n: int, text: np.ndarray, seed: int) -> InterestModel:
    torch.manual_seed(seed)
    text_emb = torch.cat([torch.zeros(1, text.shape[1]), torch.from_numpy(text)])
    m = InterestModel(InterestConfig(n_items=n, text_dim=text.shape[1], dim=64, max_len=50, dropout=0.0), text_emb).eval()
    with torch.no_grad():  # ids small beside the text part: untrained ids would be pure noise, a trained model's carry signal
        m.id_emb.weight.normal_(0, 0.01)
    return m


def top10(cand: torch.Tensor, scores: torch.Tensor, seen: torch.Tensor, k: int = 10) -> np.ndarray:
    scores = scores.masked_fill(torch.isin(cand, seen), float("-inf"))
    return cand[scores.topk(k).indices].numpy()


def run_size(n: int, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    text, _ = clustered(n, 384, 100, rng, noise=1.5, genres=100)
    model = model_over(n, text, args.seed)
    del text
    settings = AnnSettings(min_items=1, index=args.index, candidates=args.candidates)
    t0 = time.perf_counter()
    scorer = CandidateScorer(model, build_index(model, settings), settings)
    build_s = time.perf_counter() - t0
    hist = [torch.from_numpy(rng.integers(1, n + 1, args.history)).unsqueeze(0) for _ in range(args.requests)]
    ts = torch.arange(args.history).unsqueeze(0) * 3600 + 1_700_000_000
    items = scorer.items
    truth, t_ex, c_ex, t_cached, c_cached = [], [], [], [], []
    with torch.no_grad():
        for r, seq in enumerate(hist):  # the exact top-10: score_all's scores (no priors), from cached item vectors
            t1, c1 = time.perf_counter(), time.thread_time()
            user, _ = model.encode(seq, ts, items, last_only=True)
            full = items @ user[0, -1]
            full[0] = float("-inf")
            truth.append(top10(torch.arange(n + 1), full, seq[0]))
            t_cached.append(time.perf_counter() - t1)
            c_cached.append(time.thread_time() - c1)
            if r < args.model_requests:  # what serving runs without the index (item vectors recomputed per request)
                t1, c1 = time.perf_counter(), time.thread_time()
                model.score_and_explain(seq, ts)
                t_ex.append(time.perf_counter() - t1)
                c_ex.append(time.thread_time() - c1)
        sweep = []
        for effort in args.effort:
            scorer.index.set_effort(effort)
            found, t_ann, c_ann = [], [], []
            for seq in hist:
                t1, c1 = time.perf_counter(), time.thread_time()
                cand, scores, _ = scorer.score(seq, ts)
                found.append(top10(cand, scores, seq[0]))
                t_ann.append(time.perf_counter() - t1)
                c_ann.append(time.thread_time() - c1)
            sweep.append({"index": args.index, "effort": effort, "recall_at_10": round(recall_at_k(np.stack(found), np.stack(truth)), 4),
                          **percentiles(t_ann, c_ann)})
            print(n, sweep[-1], flush=True)
    out = {"n_items": n, "model_dim": 64, "text_dim": 384, "index": args.index, "candidates": args.candidates,
           "build_s": round(build_s, 1), "index_mb": round(scorer.index.memory_bytes() / 2**20, 1), "ann": sweep,
           "exact_model": percentiles(t_ex, c_ex), "exact_cached_vectors": percentiles(t_cached, c_cached)}
    print(json.dumps(out), flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--model-requests", type=int, default=3, help="requests timed through the model's full score_and_explain (slow)")
    ap.add_argument("--history", type=int, default=30)
    ap.add_argument("--index", default=AnnSettings.index, choices=["hnsw", "ivf"])
    ap.add_argument("--effort", default="64,128,256,512", help="efSearch (hnsw) or nprobe (ivf) values, comma-separated")
    ap.add_argument("--candidates", type=int, default=AnnSettings.candidates)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="reports/bench/ann_serving.json")
    args = ap.parse_args(argv)
    args.effort = [int(x) for x in args.effort.split(",")]
    torch.set_num_threads(1)
    set_threads(1)
    results = [run_size(int(n), args) for n in args.sizes.split(",")]
    report = {"command": "python -m benchmarks.ann_serving " + " ".join(argv if argv is not None else os.sys.argv[1:]),
              "load_avg_at_end": os.getloadavg(), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
