#!/usr/bin/env bash
# The width analysis (paper Fig. 3) and the state/A_bar sensitivity on the full sMNIST test set
# (docs/results.md, "Quantization analyses"), on one GPU. Needs the s4d-256 / s4d-512 runs of
# scripts/reproduce_quant_beyond.sh.
#   DATA=../shared/data OUT=results/analyses BEYOND=runs/quant-beyond bash scripts/reproduce_width_sensitivity.sh
set -eu
DATA=${DATA:-../shared/data}
OUT=${OUT:-results/analyses}
BEYOND=${BEYOND:-runs/quant-beyond}
FP=${FP:-results/foundation}
mkdir -p "$OUT"
python3 -m imssa analyze width $FP/smnist-s4d-16-seed{0,1,2} $FP/smnist-s4d-64-seed{0,1,2} \
  $BEYOND/smnist-s4d-256-seed0 $BEYOND/smnist-s4d-512-seed0 --bits 3,4,5,6,8,10,12,16 \
  --data-dir "$DATA" --out "$OUT/width_smnist.nc" &
python3 -m imssa analyze sensitivity $FP/smnist-s4d-64-seed0 --targets A_bar,x --bits 3,4,5,6,8,10,12 \
  --data-dir "$DATA" --out "$OUT/sensitivity_state_smnist_s4d-64.nc" &
wait
