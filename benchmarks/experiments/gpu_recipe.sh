#!/usr/bin/env bash
# The GPU recipe's measurements (issue 16), as one prepared script for a lent GPU machine that has
# torch/transformers but no pulse venv and no network (docs/benchmarks.md, "On a GPU").
#
#   bash benchmarks/experiments/gpu_recipe.sh CARRY OUT [BUDGET_S]
#
# CARRY holds what the machine lacks: whl/ (sentence-transformers, datasets, dill, multiprocess),
# data/amazon-scientific/ (the RecBole files), minilm16/ (all-MiniLM-L6-v2 saved in fp16 to fit the
# transfer limit; converted back to fp32 here, so training starts from the same weights up to fp16
# rounding). Figures go to OUT: env.txt, finetune-throughput.json, the benchmark's JSON/markdown, logs.
# Parts run in order, each under its share of BUDGET_S seconds, so a slow part cannot eat the others.
# SMOKE=1 shrinks everything (CPU dry run of the script itself). RESUME_FROM=DIR (the fit logs a first
# run brought back) runs part 3 alone, reusing those fits: seeds a short lease could not finish.
set -u
CARRY=$(realpath "${1:?carry folder}"); OUT=$(realpath -m "${2:?out folder}"); BUDGET=${3:-540}
mkdir -p "$OUT"; START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
PY=${PY:-python3}
if [ -d "$CARRY/whl" ] && [ -z "${NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
export PULSE_DATA_DIR=$CARRY/data PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
DEVICE=${DEVICE:-cuda}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; nproc
  $PY -c "import torch, transformers, sentence_transformers, datasets, pyarrow; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'sentence-transformers', sentence_transformers.__version__, 'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__)"
} > "$OUT/env.txt" 2>&1; cat "$OUT/env.txt"
MODEL=/tmp/minilm32
$PY -c "
from transformers import AutoModel, AutoTokenizer
import torch
m = AutoModel.from_pretrained('$CARRY/minilm16', dtype=torch.float32).float(); m.save_pretrained('$MODEL')
AutoTokenizer.from_pretrained('$CARRY/minilm16').save_pretrained('$MODEL')
print('encoder', '$MODEL', next(m.parameters()).dtype)" || exit 1

if [ -n "${SMOKE:-}" ]; then FT_STEPS=6 BATCHES=8,16 EPOCHS="--set train.epochs=1" FT="--set encoder.finetune_steps=2 --set encoder.finetune_batch_size=8"
else FT_STEPS=40 BATCHES=64,256,512 EPOCHS=""
  FT="--set encoder.finetune_steps=400 --set encoder.finetune_batch_size=256 --set encoder.finetune_max_pairs=100000 --set encoder.finetune_lr=0.00005"
fi

BENCH="$PY -m benchmarks.ranking --dataset amazon-scientific --protocols loo --no-ablations --device $DEVICE --finetuned
  --set encoder.model_name=$MODEL $FT $EPOCHS --out $OUT/amazon"
if [ -n "${RESUME_FROM:-}" ]; then  # a second lease: the fit logs of the first come back in, only part 3 runs
  mkdir -p "$OUT/amazon" && cp "$RESUME_FROM"/*.fits.jsonl "$OUT/amazon/"
else
echo "== 1. fine-tuning throughput ($(left) s left)"
timeout $(( $(left) / 6 )) $PY benchmarks/experiments/finetune_speed.py $FT_STEPS $BATCHES --trainer-only --device $DEVICE --model $MODEL \
  --json "$OUT/finetune-throughput.json" > /tmp/finetune-throughput.log 2>&1; echo "rc $?"; tail -5 /tmp/finetune-throughput.log

echo "== 2. Amazon Scientific, leave-one-out: interest (frozen encoder) vs fine-tuned, SASRec; seed 42 ($(left) s left)"
timeout $(( $(left) * 2 / 3 )) $BENCH --models interest,sasrec --seeds 1 > "$OUT/amazon-seed1.log" 2>&1; echo "rc $?"
tail -12 "$OUT/amazon-seed1.log"
fi

echo "== 3. the same, seeds 43 and 44 added (fits of seed 42 reused) ($(left) s left)"
timeout $(( $(left) - 15 )) $BENCH --models interest,sasrec --seeds 3 --resume > "$OUT/amazon-seed3.log" 2>&1; echo "rc $?"
tail -12 "$OUT/amazon-seed3.log"
echo "== done in $(( $(date +%s) - START )) s"
