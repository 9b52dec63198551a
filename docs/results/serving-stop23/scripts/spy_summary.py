"""Split py-spy collapsed stacks (--threads) into where a /recommend's CPU goes: on the scoring
thread by the frame called from Recommender._answer_many, on the event loop by the outermost
frame of pulse, BentoML, starlette or uvicorn."""
import sys, re, collections
tot = collections.Counter(); thread_tot = collections.Counter()
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n)
    frames = stack.split(";")
    thread = "scoring" if "pulse-scoring" in frames[0] else ("loop" if "MainThread" in frames[0] else "other")
    thread_tot[thread] += n
    if thread == "scoring":
        idx = next((i for i, f in enumerate(frames) if f.startswith("Recommender._answer_many")), None)
        if idx is None:
            cat = "scoring: idle plumbing / " + frames[-1].split(" (")[0]
        else:
            sub = frames[idx + 1] if idx + 1 < len(frames) else "_answer_many itself"
            sub_name = sub.split(" (")[0]
            if sub_name == "recommend_all":
                deeper = frames[idx + 2].split(" (")[0] if idx + 2 < len(frames) else ""
                deepest = " ".join(frames[idx + 2:])
                cat = "scoring: model (" + ("_score: forward" if "_score" in deepest else ("_finish: top-k, because" if "_finish" in deepest else deeper)) + ")"
            else:
                cat = "scoring: " + sub_name
    elif thread == "loop":
        mods = [("guard.py", "loop: serving.guard middleware"), ("_bentoml_impl", "loop: BentoML app"), ("_bentoml_sdk", "loop: BentoML sdk (input model)"),
                ("starlette", "loop: starlette"), ("uvicorn", "loop: uvicorn"), ("httptools", "loop: uvicorn"), ("asyncio", "loop: asyncio")]
        # innermost known module
        cat = "loop: other"
        for f in reversed(frames):
            hit = next((c for m, c in mods if m in f), None)
            if hit:
                cat = hit + (" > " + f.split(" (")[0] if hit.startswith("loop: BentoML app") or hit.startswith("loop: serving.guard") else "")
                break
    else:
        cat = "other thread"
    tot[cat] += n
all_ = sum(thread_tot.values())
print("samples", all_)
for k, v in thread_tot.most_common(): print(f"  thread {k}: {100*v/all_:.1f}%")
for k, v in tot.most_common(40):
    if v / all_ >= 0.004: print(f"  {100*v/all_:5.1f}%  {k}")
