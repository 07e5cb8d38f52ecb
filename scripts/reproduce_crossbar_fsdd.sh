#!/usr/bin/env bash
# Crossbar results on FSDD (docs/results.md, "Crossbar"): s4d-64 full-precision (committed run)
# and noise-trained, on Gaussian programming noise and on PCM drift, 10 chips, the 300 test
# recordings. Small enough for a CPU (minutes).
#   DATA=../shared/data OUT=runs/crossbar-fsdd bash scripts/reproduce_crossbar_fsdd.sh
set -eu
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/crossbar-fsdd}
FP=${FP:-results/foundation/fsdd-s4d-64-seed0}
DEV=${DEV:-auto}
mkdir -p "$OUT"
# noise-aware training: Gaussian weight noise of 3 % of each tensor's max |w| on every component
[ -f "$OUT/noise-trained/metrics.json" ] || python3 -m imssa qat "$FP" --preset fp --train-noise 0.03 \
  --mode conv --epochs 10 --batch-size 64 --data-dir "$DATA" --device "$DEV" --out "$OUT/noise-trained"
for name in fp noise-trained; do
  run=$FP; [ "$name" = fp ] || run=$OUT/noise-trained
  python3 -m imssa simulate "$run" --memristor gaussian --sweep prog_noise=0,0.005,0.01,0.02,0.05,0.1 \
    --t-inference 0 --chips 10 --data-dir "$DATA" --device "$DEV" --out "$OUT/gaussian-$name.nc"
  for comp in none global; do
    python3 -m imssa simulate "$run" --memristor pcm --t-inference 1s,1h,1d,1y --chips 10 \
      --dac-bits 8 --adc-bits 8 --compensation $comp --data-dir "$DATA" --device "$DEV" \
      --out "$OUT/pcm-$comp-$name.nc"
  done
done
