"""The ranking benchmark split into independent jobs, and their results merged back.

Why a module: two executors run the same jobs, the ``--jobs`` process pool of
``benchmarks.ranking`` and the Prefect flow of ``flows.benchmark`` (threads or a Dask cluster);
both must cut the work and pool the results the same way, or their reports would differ.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from models.fitting import BASELINES, SWITCHED


@dataclass(frozen=True)
class FitJob:
    """One unit of work: ``models`` (or the ablation rows) of one protocol for one seed."""

    protocol: str
    models: tuple[str, ...]
    seed: int
    ablations: dict[str, dict] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """What the job fits, for logs and task-run names: ``loo seed 43: sasrec,interest``."""
        return f"{self.protocol} seed {self.seed}: " + ",".join([*self.models, *self.ablations])


def fit_jobs(protocols: dict[str, dict[str, dict]], models: tuple[str, ...], seeds: list[int],
             n_ablation_seeds: int) -> list[FitJob]:
    """Every job of a benchmark, per protocol in the given order (leave-one-out, the long one, first,
    so short temporal jobs fill the gaps at the end): the seed-independent baselines run once (with
    the first seed); every other job is a neural seed or one ablation row of one seed."""
    jobs: list[FitJob] = []
    for proto, ablations in protocols.items():
        jobs += [FitJob(proto, models if i == 0 else tuple(m for m in models if m not in BASELINES), seed)
                 for i, seed in enumerate(seeds)]
        jobs += [FitJob(proto, (), seed, {name: over}) for name, over in ablations.items() for seed in seeds[:n_ablation_seeds]]
    return jobs


def merge_runs(protocols: dict[str, dict[str, dict]], models: tuple[str, ...], seeds: list[int], jobs: list[FitJob],
               results: list[tuple[int, dict, dict]]) -> dict[str, tuple[int, dict, dict]]:
    """Per protocol: test users, slice sizes and every fit's metrics per model (a list over seeds),
    as one process running all seeds in turn returns them; ``results[i]`` is ``jobs[i]``'s."""
    out = {}
    for proto, ablations in protocols.items():
        mine = [r for job, r in zip(jobs, results) if job.protocol == proto]
        per_model: dict[str, list[dict]] = {}
        for name in [*models, *ablations]:
            runs = [r for _, _, pm in mine for r in pm.get(name, [])]
            if name in BASELINES:
                runs = runs * len(seeds)  # one fit serves all seeds, as in a single process
            per_model[name] = runs
        users, slice_users, _ = mine[0]
        out[proto] = (users, slice_users, per_model)
    return out


def fit_order(models: tuple[str, ...]) -> tuple[str, ...]:
    """``models`` in the order one seed fits them: the hybrid, then the switch-gated models, last,
    because they are built from the others of their seed."""
    return tuple(sorted(models, key=lambda m: (m in SWITCHED, m == "hybrid")))


def ablation_seed_count(seeds: list[int], ablation_seeds: int | None) -> int:
    """How many of ``seeds`` the ablation rows run (each costs a full interest-model fit)."""
    return len(seeds) if ablation_seeds is None else min(ablation_seeds, len(seeds))
