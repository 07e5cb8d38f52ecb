#!/usr/bin/env bash
# Table III of the seed paper and beyond (docs/results.md, "Quantization"): PTQ and recurrent QAT
# of the committed full-precision runs (results/foundation), every configuration side by side
# on one GPU. Re-running resumes unfinished QAT runs.
#   DATA=../shared/data OUT=runs/quant bash scripts/reproduce_quant.sh
set -u
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/quant}
FP=${FP:-results/foundation}
EPOCHS=${EPOCHS:-10}
JOBS=${JOBS:-34}
mkdir -p "$OUT"
QAT="--epochs $EPOCHS --batch-size 256 --lr 2e-3 --data-dir $DATA --resume"
BEST="--param polar --x-granularity mode"   # our stable A_bar grid + per-(head, mode) state ranges
{
  for model in s4d-16 s4d-64; do
    for seed in 0 1 2; do
      run=$FP/smnist-$model-seed$seed
      # the paper's PTQ: Cartesian A_bar, one state range per tensor
      echo "ptq $run --preset W4A6 --a-bits 8 --x-bits 8 --data-dir $DATA --out $OUT/ptq-W4A6-8-8-$model-s$seed"
      echo "qat $run --preset W8A8 $BEST $QAT --seed $seed --out $OUT/qat-W8A8-$model-s$seed"
      for ax in 8 6; do
        echo "qat $run --preset W4A6 --a-bits $ax --x-bits $ax $BEST $QAT --seed $seed --out $OUT/qat-W4A6-$ax-$ax-$model-s$seed"
      done
    done
    echo "qat $FP/smnist-$model-seed0 --preset W4A6 --a-bits 16 --x-bits 16 $BEST $QAT --out $OUT/qat-W4A6-16-16-$model-s0"
  done
  for seed in 0 1 2; do
    echo "qat $FP/smnist-s4d-64-seed$seed --preset W4A6 --a-bits 4 --x-bits 4 $BEST $QAT --seed $seed --out $OUT/qat-W4A6-4-4-s4d-64-s$seed"
  done
  run=$FP/smnist-s4d-64-seed0   # the paper's Cartesian grid with per-tensor state ranges, and QS4D conv-mode QAT
  echo "qat $run --preset W4A6 --a-bits 8 --x-bits 8 --param continuous $QAT --out $OUT/qat-W4A6-8-8-cartesian-s4d-64-s0"
  echo "qat $run --preset W4A6 --a-bits 8 --x-bits 8 $BEST --mode conv $QAT --out $OUT/qatconv-W4A6-8-8-s4d-64-s0"
  run=$FP/fsdd-s4d-64-seed0
  for ax in 8 6 4; do
    echo "ptq $run --preset W4A6 --a-bits $ax --x-bits $ax --data-dir $DATA --out $OUT/fsdd-ptq-W4A6-$ax-$ax-s4d-64-s0"
    echo "qat $run --preset W4A6 --a-bits $ax --x-bits $ax $BEST $QAT --out $OUT/fsdd-qat-W4A6-$ax-$ax-s4d-64-s0"
  done
} > "$OUT/jobs.txt"
# one process per job; each writes its log beside its results
xargs -P "$JOBS" -I {} bash -c 'set -- {}; name=${@: -1}; mkdir -p "$name"; python3 -m imssa {} > "$name.log" 2>&1' < "$OUT/jobs.txt"
python3 scripts/summarize_quant.py "$OUT"
