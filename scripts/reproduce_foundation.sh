#!/usr/bin/env bash
# Full-precision results of docs/results.md ("Foundation"): sMNIST s4d-16/s4d-64 x 3 seeds, psMNIST
# and FSDD s4d-64, each evaluated in convolutional and recurrent mode, all side by side on one GPU.
#   DATA=../shared/data RUNS=runs/foundation bash scripts/reproduce_foundation.sh
# Re-running resumes unfinished runs from their checkpoints.
set -u
DATA=${DATA:-../shared/data}
RUNS=${RUNS:-runs/foundation}
EPOCHS=${EPOCHS:-30}
mkdir -p "$RUNS"
run() {
  local name=$1; shift
  { python3 -m imssa train "$@" --epochs "$EPOCHS" --data-dir "$DATA" --out "$RUNS/$name" --resume &&
    python3 -m imssa eval "$RUNS/$name" --mode conv --data-dir "$DATA" &&
    python3 -m imssa eval "$RUNS/$name" --mode recurrent --data-dir "$DATA"; } > "$RUNS/$name.log" 2>&1
}
for seed in 0 1 2; do
  run "smnist-s4d-16-seed$seed" --task smnist --model s4d-16 --seed "$seed" &
  run "smnist-s4d-64-seed$seed" --task smnist --model s4d-64 --seed "$seed" &
done
run psmnist-s4d-64-seed0 --task psmnist --model s4d-64 --seed 0 &
run fsdd-s4d-64-seed0 --task fsdd --model s4d-64 --seed 0 &
wait
python3 scripts/summarize_runs.py "$RUNS"
