"""In-process p50/p99 of the frozen-long gate's serving pass: rows sized per expert (now) vs the one 27-row padded pass
(models/switch.py at 5a3f943, saved to /tmp/old_switch.py first), one torch thread, 200 calls per history length.

    git show 5a3f943:models/switch.py > /tmp/old_switch.py
    OMP_NUM_THREADS=1 python benchmarks/experiments/gate_pass_speed.py artifacts/model out.json
"""
import importlib.util, json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from models import artifacts
spec = importlib.util.spec_from_file_location("old_switch", "/tmp/old_switch.py"); old = importlib.util.module_from_spec(spec); sys.modules["old_switch"] = old; spec.loader.exec_module(old)
ms = artifacts.load_models(Path(sys.argv[1]))
g = ms["hybrid_switch"]; print(g.cfg)
o = old.SwitchGate(g.base, old.GateConfig(**{k: v for k, v in g.cfg.to_dict().items()}), g.base_name).eval()
def t(fn, n=200):
    for _ in range(5): fn()
    ts = []
    for _ in range(n):
        a = time.perf_counter(); fn(); ts.append(time.perf_counter() - a)
    ts.sort(); return {"p50": round(ts[n // 2] * 1000, 2), "p99": round(ts[int(n * 0.99)] * 1000, 2)}
out = {}
torch.manual_seed(1)
for L in (10, 45, 100, 200):
    seq = torch.randint(1, 600, (1, L)); ts = torch.arange(L).unsqueeze(0) * 3600 + 1_700_000_000
    with torch.inference_mode():
        diff = float((g.switch_state(seq, ts)[2] - o.switch_state(seq, ts)[2])[0, 1:].abs().max())
        out[L] = {"two_widths": t(lambda: g.switch_state(seq, ts)), "one_padded_pass": t(lambda: o.switch_state(seq, ts)), "max_abs_score_diff": diff}
    print(L, out[L], flush=True)
json.dump(out, open(sys.argv[2], "w"), indent=2)
