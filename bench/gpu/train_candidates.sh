#!/usr/bin/env bash
# Train lite-model candidates side by side on a lent GPU machine (see bench/gpu/README.md).
# Usage (on the device, repo root): bash bench/gpu/train_candidates.sh MINUTES NAME=CONFIG[::OVERRIDE...] ...
# Each candidate writes $OUT/NAME/ (weights, JSON, train_log.jsonl). Needs .whl/ and .gpu/sources.npz.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
minutes=$1; shift
pids=()
for spec in "$@"; do
  name=${spec%%=*}; rest=${spec#*=}; cfg=${rest%%::*}
  sets=(--set "train.output_dir=$OUT/$name" --set "train.max_minutes=$minutes" --set train.threads=2)
  if [[ $rest == *::* ]]; then
    IFS='|' read -ra extra <<< "${rest#*::}"
    for e in "${extra[@]}"; do sets+=(--set "$e"); done
  fi
  python3 bench/gpu/finetune_packed.py --config "$cfg" --sources .gpu/sources.npz "${sets[@]}" \
    > "/tmp/$name.log" 2>&1 &
  pids+=($!)
done
( while sleep 60; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done ) &
mon=$!
for p in "${pids[@]}"; do wait "$p"; done
kill $mon
for spec in "$@"; do name=${spec%%=*}; echo "== $name"; tail -n 25 "/tmp/$name.log"; done
