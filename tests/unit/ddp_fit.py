"""Small interest-model fits for tests/unit/test_distributed.py, in one process (``fits``) or under
``torchrun --nproc_per_node=N -m tests.unit.ddp_fit OUT.json``, where rank 0 writes them to OUT.json.

One launch runs every scenario (starting torch twice per process costs more than the fits):
``plain``  4 epochs without dropout: the gradient of N processes is the one of one process;
``full``   4 epochs with dropout 0.2 (the masks one process draws) and a checkpoint;
``part``   the same run stopped after epoch 2, its checkpoint kept (as if killed there);
``resumed`` the 4-epoch run again, which resumes from that checkpoint.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from unittest import mock

import torch


def _summary(res, world: int) -> dict:
    return {"world": world, "history": res.history, "best_epoch": res.best_epoch,
            "weights": float(sum(p.detach().double().abs().sum() for p in res.model.parameters()))}


def fits(ck_dir: Path) -> dict:
    from models import distributed as ddp
    from models.interest_fit import fit_interest
    from tests.unit.helpers import random_text_emb
    from tests.unit.test_train_resume import _cfg, _tp, _valid, _windows

    def fit(epochs: int, dropout: float, ck: Path | None = None):
        return fit_interest(_cfg(dropout=dropout), random_text_emb(), _windows(), _valid(),
                            _tp(epochs, batch_size=40, dropout=dropout), "cpu", k=10, checkpoint=ck)

    ck = ck_dir / "interest.pt"
    out = {"plain": fit(4, 0.0), "full": fit(4, 0.2, ck)}
    real_unlink = Path.unlink
    with mock.patch.object(Path, "unlink", lambda self, missing_ok=False: None if self == ck else real_unlink(self, missing_ok)):
        out["part"] = fit(2, 0.2, ck)
    out["resumed_from"] = ck.exists()
    out["resumed"] = fit(4, 0.2, ck)
    return {k: _summary(v, ddp.world_size()) if not isinstance(v, bool) else v for k, v in out.items()}


def main(out: str) -> None:
    from models import distributed as ddp

    torch.set_num_threads(1)
    with ddp.session("cpu"):
        ck_dir = ddp.broadcast_object(tempfile.mkdtemp(prefix="ddp-fit-") if ddp.is_main() else None)
        result = fits(Path(ck_dir))
        if ddp.is_main():
            Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
