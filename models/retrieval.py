"""Approximate nearest-neighbour retrieval over item vectors: a FAISS index on inner product (HNSW or IVF-flat).

Why: exact scoring reads every item vector for every request. On the 2-core reference machine one
request over 10^6 items at d = 384 takes about 160 ms of CPU (memory-bandwidth bound), so a
million-item catalogue cannot be served exactly. The index narrows the catalogue to a few hundred
candidates, which the model then scores exactly (``models/candidates.py``): the ranking among the
candidates is the model's own; only an item the index never proposes can be missed (recall < 1).

Inner product, not cosine: the interest model scores ``user . item`` (plus priors added per
item), and item norms differ. Two index kinds, because the measurements (docs/scaling.md; the
machine shared, load average about 10) favour each in one place:

- IVF-flat (``kind="ivf"``, ``nlist = sqrt(N)``) on d = 384 clustered catalogues: at 10^5 items
  it builds in 15 s where HNSW (M = 32, efConstruction 40) takes 90 s, at about a millisecond of
  CPU per query for both at high recall; at 10^6 items it builds in 296 s and reaches recall@10
  0.9993 at nprobe 32, 5.9 / 8.6 ms CPU p50 / p99 per request against 160 / 172 ms exact. It keeps
  the vectors as they are, takes new items with ``add_with_ids`` (into the nearest centroid's
  list, no retraining) and can drop a replaced vector (``remove_ids``). Its weakness: recall
  needs structure. Without topic structure (10^4 unrelated clusters at 10^6 items) it falls to
  0.41 at nprobe 32.
- HNSW (``kind="hnsw"``, the serving default, ``package.ann_index``): on the interest model's own
  64-wide item vectors (``benchmarks/ann_serving.py``), which have far less structure than the
  384-wide text, IVF-flat needs most of its lists (recall 0.71 at 10^6 items with a quarter probed)
  while HNSW keeps 0.982 at efSearch 512 (10^6 items, 8.2 / 13.2 ms CPU p50 / p99 per request,
  exact scoring 94 / 116 ms). Its price is the build: 37 s at 10^5 items, 955 s at 10^6 on one
  thread of the loaded machine (IVF-flat: 39 s), and 511 MB at 10^6 (IVF-flat: 252 MB). New items
  are inserted into the graph; a replaced vector cannot be removed and stays as a second entry.

Ids in the index are catalogue positions (1..N; 0 is padding everywhere in pulse).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INDEX_FILE = "ann.faiss"  # beside the model's weights in the artifact / BentoML model directory


@dataclass(frozen=True)
class AnnConfig:
    kind: str = "ivf"        # ivf (IndexIVFFlat) | hnsw (IndexHNSWFlat under an id map)
    nlist: int = 0           # ivf: inverted lists (k-means centroids); 0: round(sqrt(N)), at least 1
    nprobe: int = 32         # ivf: lists searched per query: the recall / latency knob (docs/scaling.md)
    candidates: int = 200    # items the index proposes per query, before the exact re-rank
    train_per_list: int = 64  # ivf: k-means training points per list (a sample of the catalogue)
    seed: int = 0            # ivf: the k-means sample and initialisation
    hnsw_m: int = 32         # hnsw: graph degree
    ef_construction: int = 40  # hnsw: build-time beam
    ef_search: int = 512     # hnsw: search-time beam, its recall / latency knob

    def lists_for(self, n: int) -> int:
        return self.nlist if self.nlist > 0 else max(1, int(round(math.sqrt(n))))

    def effort(self) -> int:
        return self.ef_search if self.kind == "hnsw" else self.nprobe


def _faiss():
    import faiss  # imported lazily: only a catalogue above the threshold needs it

    return faiss


class AnnIndex:
    """A FAISS index on inner product whose ids are catalogue positions: ``IndexIVFFlat``, or
    ``IndexHNSWFlat`` under an ``IndexIDMap2``."""

    def __init__(self, index, effort: int = 32) -> None:
        self.index = index
        self.kind = "ivf" if hasattr(index, "nlist") else "hnsw"
        self.set_effort(effort)

    def set_effort(self, effort: int) -> None:
        """nprobe (ivf, at most nlist) or efSearch (hnsw): how much of the index a query reads."""
        if self.kind == "ivf":
            self.index.nprobe = min(int(effort), self.index.nlist)
        else:
            _faiss().downcast_index(self.index.index).hnsw.efSearch = int(effort)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray | None = None, cfg: AnnConfig = AnnConfig()) -> "AnnIndex":
        """IVF: train the coarse quantiser on a sample of ``vectors`` (n, d) and add them all
        (``train_per_list * nlist`` training rows, not the whole catalogue: that keeps the 10^6-item
        build in minutes). HNSW: insert them all. ``ids`` default to 1..n (catalogue positions)."""
        faiss = _faiss()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = x.shape
        if n == 0:
            raise ValueError("cannot build an index over an empty catalogue")
        if cfg.kind == "hnsw":
            graph = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = cfg.ef_construction
            out = cls(faiss.IndexIDMap2(graph), cfg.ef_search)
            out.add(x, ids)
            return out
        if cfg.kind != "ivf":
            raise ValueError(f"unknown ANN index kind {cfg.kind!r}: expected ivf or hnsw")
        nlist = min(cfg.lists_for(n), n)
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = x
        if n > cfg.train_per_list * nlist:
            rows = np.random.default_rng(cfg.seed).choice(n, cfg.train_per_list * nlist, replace=False)
            sample = x[np.sort(rows)]
        index.cp.seed = cfg.seed
        index.cp.min_points_per_centroid = 1  # small test catalogues: no warning spam, same result
        index.train(sample)
        out = cls(index, cfg.nprobe)
        out.add(x, ids)
        return out

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def memory_bytes(self) -> int:
        """Size of the serialised index: the stored vectors, their ids and the centroids."""
        return int(_faiss().serialize_index(self.index).size)

    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Append items without a rebuild: each goes to the list of its nearest centroid.
        ``ids`` default to the positions after the current ones (ntotal + 1, ...)."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if ids is None:
            ids = np.arange(self.ntotal + 1, self.ntotal + 1 + len(x))
        self.index.add_with_ids(x, np.ascontiguousarray(ids, dtype=np.int64))

    def update(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the vectors of items already in the index (an item whose text changed). HNSW
        cannot remove a node: the new vector is added under the same id and the old one stays
        (it can still propose the item; the exact re-rank scores the item's current vector)."""
        faiss = _faiss()
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.kind == "ivf":
            self.index.remove_ids(faiss.IDSelectorBatch(ids))
        self.add(vectors, ids)

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        """(B, n) ids of the ``n`` items with the largest inner product found for each query
        (``-1`` where the probed lists hold fewer)."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        _, ids = self.index.search(q, int(n))
        return ids

    def save(self, path: Path) -> None:
        _faiss().write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, effort: int = 32) -> "AnnIndex":
        return cls(_faiss().read_index(str(path)), effort)  # already its concrete type (a downcast copy would not own it)


def set_threads(n: int) -> None:
    """FAISS's OpenMP threads (process-wide). Serving uses one, as torch does: a request is one
    query, and throughput comes from more workers (serving/scoring.py)."""
    _faiss().omp_set_num_threads(int(n))


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """(B, k) row indices of ``vectors`` with the largest inner products, best first: the ground truth."""
    queries = np.atleast_2d(queries).astype(np.float32)
    out = []
    for s in range(0, len(queries), 16):  # 16 rows of scores at a time: 64 MB at 10^6 items
        scores = queries[s:s + 16] @ vectors.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, 1).argsort(1)[:, ::-1]
        out.append(np.take_along_axis(part, order, 1))
    return np.concatenate(out)


def rerank(candidates: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``candidates`` (ids, ``-1`` = none) by their exact ``scores``: (ids, scores), best first."""
    keep = candidates >= 0
    candidates, scores = candidates[keep], scores[keep]
    k = min(k, len(candidates))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(candidates) else np.arange(len(candidates))
    top = top[np.argsort(-scores[top], kind="stable")]
    return candidates[top], scores[top]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` (B, k) that appears in the same row of ``found``."""
    hits = [len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]
    return float(np.mean(hits)) if hits else 0.0


def timed(fn, *args, **kwargs):
    """(result, seconds)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
