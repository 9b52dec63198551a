"""Approximate nearest-neighbour retrieval over item vectors: a FAISS IVF-flat index on inner product.

Why: exact scoring reads every item vector for every request. On the 2-core reference machine one
request over 10^6 items at d = 384 takes about 160 ms (memory-bandwidth bound), so a million-item
catalogue cannot be served exactly. The index narrows the catalogue to a few hundred candidates,
which the model then scores exactly (``models/candidates.py``): the ranking among the candidates
is the model's own; only an item the index never proposes can be missed (recall below 1).

Why IVF-flat on inner product (not HNSW): the interest model scores ``user . item`` (plus priors
added per item), so the index searches on that inner product, not on cosine. Measured with
``python -m benchmarks.ann`` (docs/scaling.md) on clustered synthetic catalogues: IVF-flat with
``nlist = sqrt(N)`` and ``nprobe = 32`` builds a 10^6 x 384 index in tens of seconds where HNSW
(M = 32) takes many minutes on two cores; it stores the vectors as they are (exact inner products
on the probed lists, nothing quantised); it takes new items with ``add_with_ids`` (each lands in
the list of its nearest centroid: no rebuild) and can drop and re-add one whose text changed
(``remove_ids``), which HNSW cannot. Its cost: the vectors a second time (4 * d bytes per item)
plus one int64 id per item, and recall that depends on ``nprobe`` (the table in docs/scaling.md).

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
    nlist: int = 0           # inverted lists (k-means centroids); 0: round(sqrt(N)), at least 1
    nprobe: int = 32         # lists searched per query: the recall / latency knob (docs/scaling.md)
    candidates: int = 200    # items the index proposes per query, before the exact re-rank
    train_per_list: int = 64  # k-means training points per list (a sample of the catalogue)
    seed: int = 0            # the k-means sample and initialisation

    def lists_for(self, n: int) -> int:
        return self.nlist if self.nlist > 0 else max(1, int(round(math.sqrt(n))))


def _faiss():
    import faiss  # imported lazily: only a catalogue above the threshold needs it

    return faiss


class AnnIndex:
    """A FAISS ``IndexIVFFlat`` (inner product) whose ids are catalogue positions."""

    def __init__(self, index, nprobe: int = 32) -> None:
        self.index = index
        self.nprobe = int(nprobe)
        self.index.nprobe = min(self.nprobe, self.index.nlist)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray | None = None, cfg: AnnConfig = AnnConfig()) -> "AnnIndex":
        """Train the coarse quantiser on a sample of ``vectors`` (n, d) and add them all. ``ids``
        default to 1..n (catalogue positions). Training reads ``train_per_list * nlist`` rows, not
        the whole catalogue: that is what keeps the 10^6-item build in seconds."""
        faiss = _faiss()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = x.shape
        if n == 0:
            raise ValueError("cannot build an index over an empty catalogue")
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
        """Replace the vectors of items already in the index (an item whose text changed)."""
        faiss = _faiss()
        ids = np.ascontiguousarray(ids, dtype=np.int64)
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
    def load(cls, path: Path, nprobe: int = 32) -> "AnnIndex":
        return cls(_faiss().read_index(str(path)), nprobe)


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
