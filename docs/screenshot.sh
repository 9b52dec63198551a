#!/usr/bin/env bash
# Screenshots of the Prefect UI showing pulse's deployments, taken with headless Chromium.
#
#   bash docs/screenshot.sh                 # -> docs/img/prefect-deployments.png
#   bash docs/screenshot.sh --run-monitor   # also runs the monitor deployment once
#                                           # -> docs/img/prefect-runs.png
#
# Needs Chromium (`apt-get install chromium`) and the project venv (.venv). Everything Prefect
# writes goes to a temporary PREFECT_HOME, so the server's database starts empty and is thrown
# away at the end; the servers it starts are stopped on exit, also on error or Ctrl-C.
#
# --run-monitor triggers `monitor-and-retrain/monitor` with the override
# monitor.drift_threshold=1.5 (a drift share never reaches it: no retrain). It needs the
# pipeline outputs (`make run`) and rewrites reports/drift.{html,json}; because the run has an
# override it is an experiment and leaves dvc.lock alone.
#
# Environment: PORT (default: a free port), CHROMIUM (default: chromium on PATH),
# OUT_DIR (default: docs/img).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"                                   # flows.deploy imports the project: root as cwd
PY="$ROOT/.venv/bin/python"
PREFECT="$ROOT/.venv/bin/prefect"
OUT_DIR="${OUT_DIR:-$ROOT/docs/img}"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
[ -x "$CHROMIUM" ] || { echo "Chromium not found: apt-get install chromium (or set CHROMIUM=...)" >&2; exit 1; }

RUN_MONITOR=0
[ "${1:-}" = "--run-monitor" ] && RUN_MONITOR=1

PORT="${PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
UI="http://127.0.0.1:$PORT"
WORK="$(mktemp -d)"
export PREFECT_HOME="$WORK/prefect-home"     # isolated: no profile, database or logs of yours are touched
export PREFECT_API_URL="$UI/api"
mkdir -p "$OUT_DIR"

PIDS=()
cleanup() {
    # stop what this script started (deployer first, then the server), by process id
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[$i]}" 2>/dev/null || true
        wait "${PIDS[$i]}" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# wait_for SECONDS WHAT COMMAND...: poll COMMAND every 2 s until it succeeds
wait_for() {
    local timeout=$1 what=$2; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            echo "timed out waiting for $what; last log lines:" >&2
            tail -n 30 "$WORK"/*.log >&2 || true
            exit 1
        fi
        sleep 2
    done
}

echo "starting prefect server on $UI (PREFECT_HOME=$PREFECT_HOME)"
"$PREFECT" server start --host 127.0.0.1 --port "$PORT" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
wait_for 120 "the Prefect server" curl -fsS "$PREFECT_API_URL/health"

echo "serving the deployments: python -m flows.deploy"
# a long monitor interval so that the schedule shows but does not fire while we take pictures
"$PY" -m flows.deploy --monitor-interval 86400 >"$WORK/deploy.log" 2>&1 &
PIDS+=($!)
has_deployments() {
    local ls
    ls="$("$PREFECT" deployment ls 2>/dev/null)" || return 1
    grep -q "pipeline/pipeline" <<<"$ls" && grep -q "monitor-and-retrain/monitor" <<<"$ls" && grep -q "retrain/retrain" <<<"$ls"
}
wait_for 180 "the three deployments" has_deployments
"$PREFECT" deployment ls

# shot PAGE FILE: one screenshot of the single-page app; the virtual time budget lets its
# scripts load the data from the API before Chromium draws the page
shot() {
    "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
        --user-data-dir="$WORK/chromium" --window-size=1440,900 \
        --run-all-compositor-stages-before-draw --virtual-time-budget=15000 \
        --screenshot="$2" "$UI/$1" >"$WORK/chromium.log" 2>&1
    echo "wrote $2"
}
shot deployments "$OUT_DIR/prefect-deployments.png"

if ((RUN_MONITOR)); then
    echo "running the monitor deployment once"
    "$PREFECT" deployment run monitor-and-retrain/monitor \
        --params '{"overrides": {"monitor.drift_threshold": 1.5}}' --watch --watch-timeout 300
    shot runs "$OUT_DIR/prefect-runs.png"
fi
