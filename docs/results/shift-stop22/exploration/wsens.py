import sys
exec(open("/work/scratch/s22/short.py").read().split("rows = []")[0])
import itertools
orig = dict(hyb.weights)
for w in (3, 5):
    res = []
    for kw, pw in itertools.product((0.0, 0.5, 1.0, 1.5, 2.0, 3.0), (0.0, 0.5, 1.0, 2.0)):
        hyb.weights = {"item_knn": kw, "recent_popularity": pw}
        r = S.replay(Short(w, "plain"), eps, prim, 200)
        res.append((r["next_event_hr@10"], kw, pw))
    res.sort(reverse=True)
    print(vocab, "w", w, "orig", orig, "best", res[:4], "orig-row", [x for x in res if (x[1], x[2]) == (orig["item_knn"], orig["recent_popularity"])], flush=True)
