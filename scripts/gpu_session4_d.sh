# GPU call 4 of 2026-12-01 (session 4). Phase 1, alone on the GPU: the kernel profile and the QAT
# epoch benchmark (issue 12). Phase 2, side by side: the GPU tests of the fused kernel, the sMNIST
# real model with one ADC range per column (full test set for the best recipe), FSDD on all 300
# test recordings, s4d-16 on sMNIST, and the remaining sMNIST mitigation rows with aihwkit's
# global compensation (issue 11). Everything ends by END seconds; outputs under $G.
# Smoke: G=/tmp/g LIMIT=8 FULL=8 CHIPS=2 DEV=cpu END=3000 SKIP_BENCH=1 bash scripts/gpu_session4_d.sh
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=.
test -f .data/train-images-idx3-ubyte.gz || { echo "no .data"; exit 1; }
G=${G:-/tmp/g}; LIMIT=${LIMIT:-2000}; FULL=${FULL:-10000}; CHIPS=${CHIPS:-10}; DEV=${DEV:-cuda}; END=${END:-560}
mkdir -p $G
if [ -z "${SKIP_BENCH:-}" ]; then
  timeout 130 python3 benchmarks/profile_kernel.py --sequences 500 --repeats 2 > $G/profile_kernel.log 2>&1
  timeout 110 python3 benchmarks/bench_qat.py --batch-size 64 --full-epoch > $G/bench_qat.log 2>&1
  cp benchmarks/results/*.json $G/ 2>/dev/null
fi
T=$((END - SECONDS)); echo "phase 2 at ${SECONDS}s, $T s left"
R=results/analog-ssm/smnist-real-64x4-seed0; N=results/analog-ssm/smnist-real-64x4-noise-pcm-inc
FP=results/foundation/smnist-s4d-64-seed0; X=results/crossbar-smnist; F=results/analog-ssm/fsdd-real-64x4-noise2-inc
S0="python3 -m imssa simulate --data-dir .data --chips $CHIPS --device $DEV --batch-size 1000"
S="$S0 --limit $LIMIT"
PCM="--memristor pcm --dac-bits 8 --adc-bits 8 --compensation global"
INC="--transition increment --transition-scale mode"; CH="--adc-granularity channel"
j(){ n=$1; shift; (timeout $T bash -c "$*" > $G/$n.log 2>&1; echo "rc=$?" >> $G/$n.log) & }
[ -z "${SKIP_BENCH:-}" ] && j gpu-tests "python3 -m pytest -q -m gpu tests/test_crossbar_triton.py tests/test_quant.py tests/test_scan.py"
# the best recipe on the full test set; a slice run through the step loop checks the kernel
j full-np-ch "$S0 --limit $FULL $N $PCM $CH $INC --t-inference 1s,1h,1d,1y --out $G/full-np-ch.nc"
j full-np-ch-gauss "$S0 --limit $FULL $N --memristor gaussian --sweep prog_noise=0.01,0.02,0.05 --t-inference 0 --dac-bits 8 --adc-bits 8 $CH $INC --out $G/full-np-ch-gauss.nc"
j check-fused "$S0 --limit 500 $N $PCM $CH $INC --t-inference 1d --out $G/check-fused.nc"
j check-loop "IMSSA_CROSSBAR_SCAN=torch $S0 --limit 500 $N $PCM $CH $INC --t-inference 1d --out $G/check-loop.nc"
j real-fp-ch "$S $R $PCM $CH $INC --t-inference 1s,1d --out $G/real-fp-ch.nc"
j real-np-ideal "$S $N --memristor pcm --compensation global $INC --t-inference 1s,1d --out $G/real-np-ideal.nc"
j real-np-ch-a10 "$S $N $PCM $CH $INC --per-tensor A:adc_bits=10 --t-inference 1d --out $G/real-np-ch-a10.nc"
j real-np-ch-dir "$S $N $PCM $CH --transition direct --transition-scale mode --t-inference 1d --out $G/real-np-ch-dir.nc"
j cplx-fp-ch "$S $FP $PCM $CH $INC --t-inference 1d --out $G/cplx-fp-ch.nc"
j s16-ch "$S0 --limit $FULL results/foundation/smnist-s4d-16-seed0 $PCM $CH $INC --t-inference 1d --out $G/s16-ch.nc"
j fsdd-ch "$S0 $F $PCM $CH $INC --t-inference 1s,1h,1d,1y --out $G/fsdd-ch.nc"
j fsdd-t "$S0 $F $PCM $INC --t-inference 1d --out $G/fsdd-t.nc"
# issue 11: the remaining mitigation rows at 1 day, A_bar digital
D1="--t-inference 1d --digital A"
j mit-verify-fp "$S $FP $PCM $D1 --sweep verify_tol=0.04,0.02,0.01 --out $G/mit-verify-fp.nc"
j mit-verify-noise-pcm "$S $X/noise-pcm-1.0 $PCM $D1 --sweep verify_tol=0.04,0.02,0.01 --out $G/mit-verify-noise-pcm.nc"
j mit-10bit-fp "$S $FP --memristor pcm --dac-bits 10 --adc-bits 10 --compensation global $D1 --out $G/mit-10bit-fp.nc"
j mit-ssm-digital-fp "$S $FP $PCM --t-inference 1d --digital A,B,C,D --out $G/mit-ssm-digital-fp.nc"
j mit-devices4-verify-noise-pcm "$S $X/noise-pcm-1.0 $PCM $D1 --n-devices 4 --sweep verify_tol=0.04,0.02 --out $G/mit-devices4-verify-noise-pcm.nc"
sleep 45; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
wait
for f in $G/*.log; do echo "== $f"; tr '\r' '\n' < $f | grep -v "it/s\|s/it\|it\]" | tail -6; done
