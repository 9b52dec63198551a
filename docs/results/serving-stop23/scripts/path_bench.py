"""In process, CPU per single request of the scoring-thread work: stop 22's path (read, recommend,
attach, answer) against _answer_many of one request (the batched path with a batch of 1)."""
import json, time
from pathlib import Path
import torch
torch.set_num_threads(1)
import bentoml
from features.store import OnlineBehaviour, get_store
from serving.profiles import ItemProfiles
from serving.schemas import RecommendResponse, answer
from serving.scoring import Ask, recommend_all
from serving.service import interest_view
from models.inference import Engine
from benchmarks.server import users_and_items
from core.params import load_params
repo = Path("features/repo")
online = OnlineBehaviour(get_store(repo)); profiles = ItemProfiles(online.store)
cats = json.loads((repo / "data" / "categories.json").read_text())
m = bentoml.models.get("pulse-recommender:latest")
eng = Engine(Path(m.path), m.info.metadata["selected"])
users, _ = users_and_items(load_params("params.yaml"))

def old(u):
    state = online.read([u])[0]
    rec = eng.recommend(state.get("hist_item_ids") or [], state.get("hist_ts") or [], 10, True)
    items = [{**i, "profile": p} for i, p in zip(rec.items, profiles.read([str(i["item_id"]) for i in rec.items]))]
    return answer(RecommendResponse.model_validate({"user_id": u, "model": "m", "model_tag": "t", "cold_start": rec.cold_start,
        "items": items, "because": rec.because, "interest": interest_view(rec.switch, state.get("cat_share_recent"), cats)})).body

def new(us):
    rows = online.read(us)
    recs = recommend_all([Ask(eng, r.get("hist_item_ids") or [], r.get("hist_ts") or [], 10, True) for r in rows])
    items = profiles.attach([r.items for r in recs])
    return [answer(RecommendResponse.model_validate({"user_id": u, "model": "m", "model_tag": "t", "cold_start": rec.cold_start,
        "items": its, "because": rec.because, "interest": interest_view(rec.switch, r.get("cat_share_recent"), cats)})).body
        for u, r, rec, its in zip(us, rows, recs, items)]

for rep in range(3):
    t = time.process_time(); a = [old(u) for u in users]; t_old = time.process_time() - t
    t = time.process_time(); b = [new([u])[0] for u in users]; t_new = time.process_time() - t
    t = time.process_time(); c = sum((new(users[i:i + 8]) for i in range(0, len(users), 8)), []); t_b8 = time.process_time() - t
    print(f"ms CPU per request: stop22 path {1000*t_old/len(users):.2f}, batch of 1 {1000*t_new/len(users):.2f}, batches of 8 {1000*t_b8/len(users):.2f}; "
          f"identical 1: {sum(x == y for x, y in zip(a, b))}, 8: {sum(x == y for x, y in zip(a, c))} of {len(users)}")
