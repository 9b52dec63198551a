#!/bin/bash
# run.sh NAME DIR [ENV=..]... : one load run of the project at DIR on fresh data copies
name=$1; dir=$2; shift 2
/tmp/s23b/fresh.sh $dir
cd $dir && env "$@" PYTHONPATH=$dir timeout 600 nice -n 10 /work/main/.venv/bin/python -m benchmarks.load --start --workers ${WORKERS:-2} --seconds 10 --out /tmp/s23b/results/load-$name.json > /tmp/s23b/results/$name.log 2>&1
python3 - /tmp/s23b/results/load-$name.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c1, c8, ev = r["recommend_c1"], r["recommend_c8"], r["events_c16"]
print(sys.argv[1].split("/")[-1], "load", r["load_average_at_start"][0], "| c1", c1["requests_per_s"], c1["ms"]["p50"], c1["ms"]["p99"], c1["server_cpu_ms_per_req"],
      "| c8", c8["requests_per_s"], c8["ms"]["p50"], c8["ms"]["p99"], c8["server_cpu_ms_per_req"], "| ev", ev["requests_per_s"], ev["ms"]["p99"], ev["server_cpu_ms_per_req"], ev["lost"],
      "| batch p99", r["during_batch"]["recommend"]["ms"].get("p99"))
PY
