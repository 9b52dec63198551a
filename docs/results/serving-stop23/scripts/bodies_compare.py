import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
same = sum(a[u] == b[u] for u in a)
ja = {u: json.loads(a[u]) for u in a}; jb = {u: json.loads(b[u]) for u in b}
ids = sum([i["item_id"] for i in ja[u]["items"]] == [i["item_id"] for i in jb[u]["items"]] for u in a)
d = max(abs(x["score"] - y["score"]) for u in a for x, y in zip(ja[u]["items"], jb[u]["items"]))
strip = lambda j: json.dumps({**j, "items": [{**i, "score": None} for i in j["items"]]}, sort_keys=True)
rest = sum(strip(ja[u]) == strip(jb[u]) for u in a)
print(json.dumps({"users": len(a), "byte_identical": same, "same_items_in_order": ids, "same_apart_from_scores": rest, "max_score_diff": d}))
