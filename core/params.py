"""Typed view of params.yaml.

params.yaml is read once, at an entry point (a stage's ``main()``, a Prefect flow, the
service), and the frozen dataclasses below are passed down. Typos in keys fail loudly here
instead of surfacing as a ``KeyError`` deep inside a stage.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

DATA_DIR_ENV = "PULSE_DATA_DIR"


@dataclass(frozen=True)
class DataParams:
    dataset: str = "synthetic"
    source_dir: str = ""
    download: bool = True
    raw_dir: str = "data/raw"
    event_log: str = "data/events/events.jsonl"

    def resolved_source_dir(self) -> str:
        """The configured folder, else the PULSE_DATA_DIR environment variable, else ''."""
        return self.source_dir or os.environ.get(DATA_DIR_ENV, "")


@dataclass(frozen=True)
class SyntheticParams:
    n_users: int = 400
    n_items: int = 600
    n_categories: int = 12
    events_per_user: int = 40
    shift_fraction: float = 0.5
    max_switches: int = 3
    days: int = 120
    seed: int = 7
    switch_in_training: bool = True
    held_out_events: int = 20
    vocabulary: str = "media"


@dataclass(frozen=True)
class IngestParams:
    max_bad_fraction: float = 0.01
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)


@dataclass(frozen=True)
class FeaturesParams:
    history_len: int = 200
    short_half_life_days: float = 3.0
    long_half_life_days: float = 60.0
    recent_half_life_events: float = 2.0
    recent_days: int = 30
    out_dir: str = "data/features"
    repo_dir: str = "features/repo"


POOLINGS = ("mean", "cls", "last_token")  # token vectors -> item vector (models/encoder.py)


@dataclass(frozen=True)
class EncoderParams:
    """The text encoder; an unknown ``pooling`` is refused when params.yaml is read, not minutes
    later when the train stage first builds the encoder."""
    model_name: str = "all-MiniLM-L6-v2"
    max_length: int = 128
    batch_size: int = 64
    cache_dir: str = ".cache/embeddings"
    pooling: str = "mean"
    finetune_steps: int = 0
    finetune_batch_size: int = 32
    finetune_lr: float = 2e-5
    finetune_max_pairs: int = 20000

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"encoder.pooling must be one of {POOLINGS}, got {self.pooling!r}")


@dataclass(frozen=True)
class SwitchParams:
    windows: tuple[int, ...] = (3, 10)
    horizon: int = 8
    discount: float = 0.8
    text_weight: float = 0.0
    text_temp: float = 20.0
    half_life: float = 1.0
    clip: float = 5.0
    frozen_long: bool = True
    category_window: int = 0
    category_half_life: float = 2.0
    tolerance: float = 0.01
    augment: float = 0.0
    shift_users: int = 500
    shift_fed: int = 5


@dataclass(frozen=True)
class TrainParams:
    models: tuple[str, ...] = ("hybrid_switch", "interest_switch", "hybrid", "interest", "sasrec", "item_knn", "markov",
                               "content", "popularity", "recent_popularity")
    hybrid_with: tuple[str, ...] = ("item_knn", "markov", "recent_popularity", "content")
    hybrid_grid: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
    hybrid_grid_max_cells: float = 2.0e9
    content_recent: int = 3
    content_decay: float = 0.5
    content_temp: float = 20.0
    max_len: int = 200
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    use_text: bool = True
    use_id_embedding: bool = True
    use_time_decay: bool = True
    use_long_term: bool = True
    use_position: bool = True
    use_transition: bool = False
    transition_recent: int = 5
    use_trend: bool = False
    trend_days: int = 7
    block: str = "preln"
    gate_init: float = 0.0
    cold_neighbours: int = 10
    warm_untrained_items: bool = True
    knn_top_k: int = 0
    ease_lambdas: tuple[float, ...] = (50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)
    sasrec_reference: bool = True
    lr: float = 1e-3
    weight_decay: float = 0.01
    adam_beta2: float = 0.999
    grad_clip: float = 1.0
    batch_size: int = 128
    length_buckets: bool = True
    epochs: int = 200
    patience: int = 10
    recent_days: int = 30
    device: str = "auto"
    processes: int = 1
    seed: int = 42
    out_dir: str = "artifacts/model"
    checkpoint_dir: str = ".cache/checkpoints"
    switch: SwitchParams = field(default_factory=SwitchParams)


@dataclass(frozen=True)
class EvaluateParams:
    k: int = 10
    select_metric: str = "ndcg@10"
    select_from: tuple[str, ...] = ()
    stationary_tolerance: float = 0.02
    out: str = "reports/metrics.json"


@dataclass(frozen=True)
class MonitorParams:
    reference_fraction: float = 0.3
    current_fraction: float = 0.3
    drift_threshold: float = 0.5
    control_repeats: int = 2
    control_margin: float = 0.1
    control_seed: int = 0
    mix_freq: str = "W"
    html: str = "reports/drift.html"
    json: str = "reports/drift.json"
    summary: str = "reports/monitor.json"


@dataclass(frozen=True)
class PackageParams:
    model_name: str = "pulse-recommender"
    candidate_name: str = "pulse-recommender-candidates"
    promote: str = "auto"
    out: str = "reports/package.json"
    ann_min_items: int = 100_000
    ann_index: str = "hnsw"
    ann_ef_search: int = 512
    ann_nprobe: int = 32
    ann_candidates: int = 200
    ann_nlist: int = 0


@dataclass(frozen=True)
class ScaleParams:
    task_runner: str = "sequential"
    dask_address: str = ""
    dask_workers: int = 2
    torch_threads: int = 0


@dataclass(frozen=True)
class TrackingParams:
    metrics_dir: str = "metrics"


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    ingest: IngestParams = field(default_factory=IngestParams)
    features: FeaturesParams = field(default_factory=FeaturesParams)
    encoder: EncoderParams = field(default_factory=EncoderParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    monitor: MonitorParams = field(default_factory=MonitorParams)
    package: PackageParams = field(default_factory=PackageParams)
    scale: ScaleParams = field(default_factory=ScaleParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)
    root: str = "."  # repository root every relative path is resolved against

    def path(self, relative: str) -> Path:
        """Resolve a configured path against the repository root."""
        p = Path(relative)
        return p if p.is_absolute() else Path(self.root) / p

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("root")
        return d

    def section_hash(self, *sections: str) -> str:
        """Short stable hash of some sections: recorded beside artifacts to tie them to params."""
        d = self.to_dict()
        blob = json.dumps({s: d[s] for s in sections}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """Build a (nested) dataclass from a mapping, rejecting unknown keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown key(s) in params.yaml section '{where}': {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING else fields[name].default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value or {}, f"{where}.{name}")
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        elif isinstance(default, bool):
            kwargs[name] = bool(value)
        elif isinstance(default, float):
            kwargs[name] = float(value)
        elif isinstance(default, int):
            kwargs[name] = int(value)
        else:
            kwargs[name] = "" if value is None else str(value)
    return cls(**kwargs)


def _set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value


def load_params(path: str | Path = "params.yaml", overrides: Mapping[str, Any] | None = None) -> Params:
    """Read params.yaml (plus dotted-key overrides such as ``{"train.epochs": 3}``).

    The repository root is the folder holding the params file, so stages run from anywhere.
    """
    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"params file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    raw["root"] = str(path.parent)
    return _build(Params, raw, "params")
