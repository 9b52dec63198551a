"""A square sparse matrix (CSR) kept as three dense buffers, for item-to-item structures.

Why: item-kNN's co-occurrence similarity and the interest model's transition prior were dense
(N+1) x (N+1) float32 matrices: 1.4 MB at the default 600 items, 40 GB at 10^5 items, although an
item co-occurs with a few hundred others at most. In CSR form the memory is that of the non-zeros
(``nnz * 12`` bytes plus ``8 * (N+2)``), and ``top_k`` bounds it further to ``k`` per row.

Three plain tensors (``crow``, ``col``, ``val``) instead of a ``torch.sparse_csr_tensor``: they
go through ``state_dict``, safetensors and ``.to(device)`` as they are, and the one operation the
models need, "the weighted sum of some rows", is a gather and a scatter-add.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int, top_k: int = 0
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR of the COO entries (duplicates summed, zeros dropped), optionally only each row's ``top_k`` largest."""
    key = rows.long() * n + cols.long()
    key, inv = torch.unique(key, return_inverse=True)  # sorted: row-major
    vals = torch.zeros(len(key), dtype=torch.float64, device=vals.device).index_add_(0, inv, vals.double())
    nz = vals != 0
    key, vals = key[nz], vals[nz]
    rows, cols = key // n, key % n
    if top_k > 0 and len(vals):
        order = torch.argsort(-vals, stable=True)
        order = order[torch.argsort(rows[order], stable=True)]  # by row, largest first within a row
        r = rows[order]
        counts = torch.bincount(r, minlength=n)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(r), device=r.device) - starts[r]
        keep = order[rank < top_k]
        keep = keep.sort().values  # back to row-major, columns ascending
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    crow = torch.zeros(n + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    return crow, cols, vals.float()


class CsrMatrix(nn.Module):
    """(n, n) sparse float32 matrix; row 0 (padding) is empty in every use here."""

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("crow", crow.long())
        self.register_buffer("col", col.long())
        self.register_buffer("val", val.float())

    @classmethod
    def from_coo(cls, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int, top_k: int = 0) -> "CsrMatrix":
        return cls(*_csr(rows, cols, vals, n, top_k))

    @classmethod
    def from_dense(cls, dense: torch.Tensor, top_k: int = 0) -> "CsrMatrix":
        r, c = dense.nonzero(as_tuple=True)
        return cls.from_coo(r, c, dense[r, c], dense.shape[0], top_k)

    @classmethod
    def own(cls, matrix: "CsrMatrix | torch.Tensor | None", n: int) -> "CsrMatrix":
        """A module of its own over ``matrix``'s tensors (``.to(device)`` of one owner must not move
        another's: item-kNN and the transition prior share one); a dense tensor is converted, None is
        an empty (n, n) matrix."""
        if matrix is None:
            return cls.empty(n)
        if isinstance(matrix, CsrMatrix):
            return cls(matrix.crow, matrix.col, matrix.val)
        return cls.from_dense(matrix.float())

    @staticmethod
    def upgrade_state(state_dict: dict, key: str) -> None:
        """Replace a dense matrix saved under ``key`` by its CSR tensors ``key.crow`` etc., in place."""
        dense = state_dict.pop(key, None)
        if dense is not None:
            sparse = CsrMatrix.from_dense(dense.float())
            for name in ("crow", "col", "val"):
                state_dict[f"{key}.{name}"] = getattr(sparse, name)

    @classmethod
    def empty(cls, n: int) -> "CsrMatrix":
        return cls(torch.zeros(n + 1, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0))

    @property
    def n(self) -> int:
        return len(self.crow) - 1

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def nnz(self) -> int:
        return len(self.val)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.crow, self.col, self.val))

    def coo(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = torch.repeat_interleave(torch.arange(self.n, device=self.crow.device), self.crow.diff())
        return rows, self.col, self.val

    def to_dense(self) -> torch.Tensor:
        out = torch.zeros(self.n, self.n, device=self.val.device)
        r, c, v = self.coo()
        out[r, c] = v
        return out

    def _gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(owner in 0..len(idx)-1, column, value) of every stored entry of rows ``idx`` (flat)."""
        crow = self.crow  # read once: a concurrent add swaps whole buffers
        start, length = crow[idx], crow[idx + 1] - crow[idx]
        owner = torch.repeat_interleave(torch.arange(len(idx), device=idx.device), length)
        first = torch.cumsum(length, 0) - length
        pos = start[owner] + torch.arange(len(owner), device=idx.device) - first[owner]
        return owner, self.col[pos], self.val[pos]

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """(len(idx), n) dense rows ``idx`` (a 1-D index tensor)."""
        idx = idx.reshape(-1).long()
        owner, c, v = self._gather(idx)
        out = torch.zeros(len(idx), self.n, device=self.val.device, dtype=self.val.dtype)
        out[owner, c] = v
        return out

    def weighted_rows(self, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """(B, n) sum over m of ``w[b, m] * row(idx[b, m])`` for ``idx``, ``w`` (B, m)."""
        B, m = idx.shape
        owner, c, v = self._gather(idx.reshape(-1).long())
        out = torch.zeros(B, self.n, device=self.val.device, dtype=self.val.dtype)
        return out.index_put_((owner // m, c), w.reshape(-1).to(v)[owner] * v, accumulate=True)

    def transposed(self) -> "CsrMatrix":
        """The transpose (rows become columns): a directional matrix read the other way."""
        r, c, v = self.coo()
        return CsrMatrix.from_coo(c, r, v, self.n)

    def padded(self, m: int) -> "CsrMatrix":
        """The same entries in an (n + m, n + m) matrix (new rows and columns empty)."""
        crow = torch.cat([self.crow, self.crow[-1:].expand(m)])
        return CsrMatrix(crow, self.col, self.val)

    def with_entries(self, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int | None = None,
                     clear: int | None = None) -> "CsrMatrix":
        """A new (n, n) matrix (default: this size) with these entries set (summed with any stored at
        the same place); ``clear``: row and column of that index emptied first. O(nnz) rebuild."""
        r0, c0, v0 = self.coo()
        if clear is not None:
            keep = (r0 != clear) & (c0 != clear)
            r0, c0, v0 = r0[keep], c0[keep], v0[keep]
        return CsrMatrix.from_coo(torch.cat([r0, rows.long()]), torch.cat([c0, cols.long()]), torch.cat([v0, vals.float()]),
                                  self.n if n is None else n)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # the sizes are the data's: take the saved buffers as they are (nn.Module would refuse a new shape)
        for name in ("crow", "col", "val"):
            key = prefix + name
            if key in state_dict:
                dtype = torch.float32 if name == "val" else torch.long
                self._buffers[name] = state_dict[key].detach().to(device=self._buffers[name].device, dtype=dtype).clone()
            elif strict:
                missing_keys.append(key)
