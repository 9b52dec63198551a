"""The model artifact directory: written by `train`, read by `evaluate`, `monitor`, `package` and serving.

    items.json                  item ids and titles in index order (index = position + 1; 0 = padding)
    text_embeddings.safetensors text_emb (N+1, text_dim), row 0 zero
    <name>.safetensors          weights of each neural model (interest, sasrec) + <name>_config.json
    baselines.safetensors       popularity, recent_popularity score vectors
    item_knn.safetensors        item-to-item similarity of the item-kNN baseline, sparse (CSR: crow, col, val)
    markov.safetensors          the Markov chain's P(next | last), sparse, with its n_recent, decay, symmetric
    content.json                the content component's settings (it scores from text_embeddings.safetensors)
    ease.safetensors            the EASE baseline's item-to-item weights B and its regularisation
    hybrid.json                 the hybrid's component weights (it is built from the models above)
    switch_<name>.json          a switch-gated model: its base model's name and the gate's settings (models/switch.py)
    meta.json                   data version, params hash, encoder, training history
    card.md                     model card (human-readable summary)
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from models.baselines import EASE, ItemKNN, StaticScores
from models.content import TextSimilarity
from models.hybrid import Hybrid
from models.untrained import warm_components
from models.interest import InterestConfig, InterestModel
from models.sparse import CsrMatrix
from models.switch import GateConfig, SwitchGate



def save(out: Path, item_ids: list[str], text_emb: torch.Tensor, models: dict[str, nn.Module], meta: dict,
         titles: list[str] | None = None, categories: list[list[str]] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stale in _model_files(out):  # a model trained last time but not now must not be loaded (and selected) again
        stale.unlink()
    (out / "items.json").write_text(json.dumps({"ids": list(item_ids), "titles": list(titles or item_ids),
                                                "categories": [list(c) for c in (categories or [[] for _ in item_ids])]}))
    save_file({"text_emb": text_emb.contiguous().float()}, str(out / "text_embeddings.safetensors"))
    base = {name: m.scores.cpu().contiguous() for name, m in models.items() if isinstance(m, StaticScores)}
    if base:
        save_file(base, str(out / "baselines.safetensors"))
    for name, m in models.items():
        if isinstance(m, InterestModel):
            state = {k: v.cpu().contiguous() for k, v in m.state_dict().items() if k != "text_emb"}
            save_file(state, str(out / f"{name}.safetensors"))
            (out / f"{name}_config.json").write_text(json.dumps(m.cfg.to_dict(), indent=2))
        elif isinstance(m, ItemKNN):
            shape = {"n_recent": torch.tensor(m.n_recent), "decay": torch.tensor(m.decay, dtype=torch.float64),
                     "symmetric": torch.tensor(int(m.symmetric))}
            save_file({**{k: v.cpu().contiguous() for k, v in m.sim.state_dict().items()}, **shape}, str(out / f"{name}.safetensors"))
        elif isinstance(m, TextSimilarity):
            (out / "content.json").write_text(json.dumps({"n_recent": m.n_recent, "decay": m.decay, "temp": m.temp}, indent=2))
        elif isinstance(m, EASE):
            save_file({"B": m.B.cpu().contiguous(), "lam": torch.tensor(m.lam, dtype=torch.float64)}, str(out / "ease.safetensors"))
        elif isinstance(m, Hybrid):
            missing = {"interest", *m.components} - set(models)
            if missing:
                raise ValueError(f"the hybrid is saved as weights over its components; missing {sorted(missing)}")
            (out / "hybrid.json").write_text(json.dumps(m.config(), indent=2))
        elif isinstance(m, SwitchGate):
            if m.base_name not in models:
                raise ValueError(f"the switch-gated {name} is saved as settings over its base; missing {m.base_name}")
            (out / f"switch_{name}.json").write_text(json.dumps(m.config(), indent=2))
            if m.item_cat is not None:  # the category-mix expert's counts: its P(item | category)
                save_file({"item_cat": m.item_cat.cpu().contiguous(), "cat_item": m.cat_item.cpu().contiguous()},
                          str(out / f"switch_{name}.safetensors"))
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))


def _model_files(out: Path) -> list[Path]:
    """The files ``load_models`` reads models from (not the items, text embeddings or meta)."""
    named = [p for p in out.glob("*.safetensors") if p.name != "text_embeddings.safetensors"]
    return [*named, *out.glob("*_config.json"), *out.glob("switch_*.json"), *out.glob("hybrid.json"), *out.glob("content.json")]


def load_item_ids(out: Path) -> list[str]:
    return json.loads((out / "items.json").read_text())["ids"]


def load_item_titles(out: Path) -> list[str]:
    d = json.loads((out / "items.json").read_text())
    return d.get("titles", d["ids"])


def load_item_categories(out: Path) -> list[list[str]]:
    d = json.loads((out / "items.json").read_text())
    return d.get("categories") or [[] for _ in d["ids"]]


def load_text_embeddings(out: Path) -> torch.Tensor:
    return load_file(str(out / "text_embeddings.safetensors"))["text_emb"]


def load_meta(out: Path) -> dict:
    return json.loads((out / "meta.json").read_text())


def history_length(out: Path, model_name: str, packaged: Mapping[str, Any] | None = None) -> int:
    """The behaviours a model of the artifact scores from (``max_len``), read from the artifact only:
    serving must cut histories where training and evaluation did, and a second default elsewhere
    (it used to be 50 in serving, 200 in params) scores with a history the model never saw.

    In order: the model's own saved config (its position table has that size), the ``max_len`` the
    train stage recorded in meta.json, the one ``packaged`` (a packaged model's metadata) records,
    then any neural model's config in the artifact (the base of a hybrid or a switch gate, trained
    with the same ``train.max_len``). None of them: a ValueError, never a guess.
    """
    own = out / f"{model_name}_config.json"
    meta = load_meta(out) if (out / "meta.json").exists() else {}
    saved = [json.loads(c.read_text()) for c in sorted(out.glob("*_config.json"), key=lambda c: c != own)]  # own first
    for source in (*(saved[:1] if own.exists() else []), meta, dict(packaged or {}), *saved):
        if "max_len" in source:
            return int(source["max_len"])
    raise ValueError(f"{out} records no history length for {model_name!r}: no {own.name}, no max_len in meta.json "
                     "or the packaged metadata; retrain it (the train stage records train.max_len)")


ITEM_TO_ITEM = ("item_knn", "markov")  # ItemKNN models, one file each


def _item_to_item(state: dict[str, torch.Tensor]) -> ItemKNN:
    """An ItemKNN from its file: sparse (crow, col, val) and its shape; "sim": a dense one from before;
    no shape saved: item-kNN's defaults (artifacts from before the Markov chain)."""
    sim = state["sim"] if "sim" in state else CsrMatrix(state["crow"], state["col"], state["val"])
    if "n_recent" not in state:
        return ItemKNN(sim)
    return ItemKNN(sim, int(state["n_recent"]), float(state["decay"]), bool(int(state["symmetric"])))


def load_models(out: Path, device: str = "cpu") -> dict[str, nn.Module]:
    """Every model in the artifact, in eval mode."""
    text_emb = load_text_embeddings(out)
    models: dict[str, nn.Module] = {}
    if (out / "baselines.safetensors").exists():
        for name, v in load_file(str(out / "baselines.safetensors")).items():
            models[name] = StaticScores(v)
    for name in ITEM_TO_ITEM:
        if (out / f"{name}.safetensors").exists():
            models[name] = _item_to_item(load_file(str(out / f"{name}.safetensors")))
    if (out / "content.json").exists():  # its item vectors are the artifact's text embeddings
        models["content"] = TextSimilarity(text_emb, **json.loads((out / "content.json").read_text()))
    if (out / "ease.safetensors").exists():
        state = load_file(str(out / "ease.safetensors"))
        models["ease"] = EASE(state["B"], float(state["lam"]))
    for cfg_file in sorted(out.glob("*_config.json")):
        name = cfg_file.name[: -len("_config.json")]
        state = load_file(str(out / f"{name}.safetensors"))
        trend = (state["trend"], int(state["trend_start"])) if "trend" in state else None  # its size is the data's span
        m = InterestModel(InterestConfig(**json.loads(cfg_file.read_text())), text_emb, trend=trend)
        m.load_state_dict(state, strict=False)
        models[name] = m
    if (out / "hybrid.json").exists():
        cfg = json.loads((out / "hybrid.json").read_text())
        # own copies: adding items to the hybrid must not add them twice to a component served alone
        models["hybrid"] = Hybrid(copy.deepcopy(models[cfg["base"]]), {c: copy.deepcopy(models[c]) for c in cfg["weights"]},
                                  cfg["weights"], cfg["eps"])
        warm_components(models["hybrid"].base, models["hybrid"].components, cfg.get("warmed_items", []))  # as at fit time
        models["hybrid"].warmed = list(cfg.get("warmed_items", []))
    for path in sorted(out.glob("switch_*.json")):  # after their bases; own copies, as the hybrid's
        cfg = json.loads(path.read_text())
        base = cfg.pop("base")
        gate = SwitchGate(copy.deepcopy(models[base]), GateConfig(**cfg), base)
        if path.with_suffix(".safetensors").exists():
            for key, value in load_file(str(path.with_suffix(".safetensors"))).items():
                setattr(gate, key, value)
        models[path.stem[len("switch_"):]] = gate
    return {k: v.to(device).eval() for k, v in models.items()}
