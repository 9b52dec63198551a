#!/usr/bin/env bash
# Screenshots of what a pipeline run shows its operators, taken with headless Chromium
# (docs/screenshot.sh takes the Prefect deployments pages):
#
#   bash docs/screenshot-pages.sh              # -> docs/img/drift-report.png  (reports/drift.html)
#                                              #    docs/img/dvc-plots.png     (`dvc plots show`)
#   bash docs/screenshot-pages.sh --flow-run   # also docs/img/prefect-flow-run.png: a small pipeline
#                                              #    run on a local Prefect server, its train stage's page
#
# The first two need a pipeline run in this checkout (`make run`: reports/drift.html and
# metrics/train_history/<model>.csv). --flow-run copies the project (tracked and untracked, not ignored
# files) into a temporary folder, shrinks its params to the end-to-end tests' small synthetic data
# (tests/e2e/conftest.py: SMALL) and runs `python -m flows.pipeline` there against a Prefect server
# of its own, with a temporary PREFECT_HOME and BENTOML_HOME: nothing of this checkout, your Prefect
# profile or your BentoML model store is touched. It takes a few minutes (niced). Everything it
# starts is stopped on exit, also on error or Ctrl-C.
#
# Environment: PORT (default: a free port), CHROMIUM (default: chromium on PATH),
# OUT_DIR (default: docs/img), PY (default: .venv/bin/python).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"  # PY: another venv's python
BIN="$(dirname "$PY")"
OUT_DIR="${OUT_DIR:-$ROOT/docs/img}"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
[ -x "$CHROMIUM" ] || { echo "Chromium not found: apt-get install chromium (or set CHROMIUM=...)" >&2; exit 1; }

FLOW_RUN=0
[ "${1:-}" = "--flow-run" ] && FLOW_RUN=1

WORK="$(mktemp -d)"
mkdir -p "$OUT_DIR"
PIDS=()
cleanup() {
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[$i]}" 2>/dev/null || true
        wait "${PIDS[$i]}" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# shot URL FILE [WIDTH,HEIGHT]: one screenshot; the virtual time budget lets a page's scripts
# (Vega for the plots, the Prefect UI's calls to its API) finish before Chromium draws it
shot() {
    "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
        --user-data-dir="$WORK/chromium" --window-size="${3:-1400,1000}" \
        --run-all-compositor-stages-before-draw --virtual-time-budget=15000 \
        --screenshot="$2" "$1" >"$WORK/chromium.log" 2>&1
    echo "wrote $2"
}

# the drift page: dated weekly category mix of the reference and current windows, per-interest drift
[ -f reports/drift.html ] || { echo "reports/drift.html not found: run the pipeline first (make run)" >&2; exit 1; }
shot "file://$ROOT/reports/drift.html" "$OUT_DIR/drift-report.png" 1400,1400

# the training curve: metrics/train_history/<model>.csv as declared in dvc.yaml
PATH="$BIN:$PATH" dvc plots show -o "$WORK/dvc_plots" >/dev/null
# the page loads Vega, Vega-Lite and vega-embed from a CDN; where that is out of reach, the same
# versions come from the npm registry (`npm pack`) and the page loads them from beside it
if ! curl -fsS -m 5 -o /dev/null https://cdn.jsdelivr.net/npm/vega@5 2>/dev/null; then
    command -v npm >/dev/null || { echo "the plots page needs the Vega scripts: no CDN and no npm (apt-get install npm)" >&2; exit 1; }
    for spec in $(grep -o 'https://cdn.jsdelivr.net/npm/[a-z-]*@[0-9.]*' "$WORK/dvc_plots/index.html" | sort -u); do
        pkg="${spec#https://cdn.jsdelivr.net/npm/}"          # vega@5.20.2
        (cd "$WORK" && npm pack --silent "$pkg" >/dev/null)
        tar xzf "$WORK/${pkg%@*}-${pkg#*@}.tgz" -C "$WORK" "package/build/${pkg%@*}.min.js"
        mv "$WORK/package/build/${pkg%@*}.min.js" "$WORK/dvc_plots/"
        sed -i "s|$spec\"|${pkg%@*}.min.js\"|" "$WORK/dvc_plots/index.html"
    done
fi
shot "file://$WORK/dvc_plots/index.html" "$OUT_DIR/dvc-plots.png" 1400,1000

((FLOW_RUN)) || exit 0

PORT="${PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
UI="http://127.0.0.1:$PORT"
export PREFECT_HOME="$WORK/prefect-home" PREFECT_API_URL="$UI/api" BENTOML_HOME="$WORK/bentoml"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1

echo "starting prefect server on $UI (PREFECT_HOME=$PREFECT_HOME)"
"$BIN/prefect" server start --host 127.0.0.1 --port "$PORT" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
deadline=$((SECONDS + 180))
until curl -fsS "$PREFECT_API_URL/health" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { tail -n 30 "$WORK/server.log" >&2; exit 1; }
    sleep 2
done

PROJECT="$WORK/pulse"
mkdir -p "$PROJECT"
git ls-files -co --exclude-standard | grep -v '^tests/' | while read -r f; do
    [ -f "$f" ] && install -D -m 644 "$f" "$PROJECT/$f"
done
(cd "$PROJECT" && "$PY" - <<'EOF'
import yaml
small = {"ingest": {"synthetic": {"n_users": 60, "n_items": 90, "n_categories": 6, "events_per_user": 25}},
         "train": {"epochs": 6, "patience": 3, "dim": 32, "max_len": 20},
         "features": {"history_len": 20}}   # tests/e2e/conftest.py: SMALL
def merge(d, over):
    for k, v in over.items():
        d[k] = merge(d.get(k, {}), v) if isinstance(v, dict) else v
    return d
params = merge(yaml.safe_load(open("params.yaml")), small)
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
EOF
rm -f dvc.lock
git init -q && git add -A && git -c user.email=docs@pulse -c user.name=docs commit -qm "screenshot run")

echo "running a small pipeline against $UI (log: $WORK/pipeline.log)"
(cd "$PROJECT" && PATH="$BIN:$PATH" PYTHONPATH="$PROJECT" nice -n 10 "$PY" -m flows.pipeline) >"$WORK/pipeline.log" 2>&1 \
    || { tail -n 40 "$WORK/pipeline.log" >&2; exit 1; }
tail -n 15 "$WORK/pipeline.log"

# the train stage's sub-flow run: its logs hold the epoch lines (loss, validation NDCG@10 / HR@10)
RUN_ID="$("$PY" - <<'EOF'
import asyncio
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName

async def main():
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["train"])), limit=1)
        print(runs[0].id)
asyncio.run(main())
EOF
)"
shot "$UI/runs/flow-run/$RUN_ID" "$OUT_DIR/prefect-flow-run.png" 1440,1100
