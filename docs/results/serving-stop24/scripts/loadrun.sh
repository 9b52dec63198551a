#!/bin/bash
# loadrun.sh NAME [extra args]: one full load run in /work/main, summary line
name=$1; shift
cd /work/main && timeout 900 .venv/bin/python -m benchmarks.load --start --workers ${WORKERS:-2} --seconds 20 --out /work/scratch/load-$name.json "$@" > /work/scratch/load-$name.log 2>&1
python3 - /work/scratch/load-$name.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c1, c8, ev = r["recommend_c1"], r["recommend_c8"], r["events_c16"]
print(sys.argv[1].split("/")[-1], "load", r["load_average_at_start"][0], "| c1", c1["requests_per_s"], c1["ms"]["p50"], c1["ms"]["p99"], c1["server_cpu_ms_per_req"],
      "| c8", c8["requests_per_s"], c8["ms"]["p50"], c8["ms"]["p99"], c8["server_cpu_ms_per_req"], "| ev", ev["requests_per_s"], ev["ms"]["p99"], ev["server_cpu_ms_per_req"], ev["lost"],
      "| batch p99", r["during_batch"]["recommend"]["ms"].get("p99"), r["during_batch"]["p99_vs_idle"])
PY
