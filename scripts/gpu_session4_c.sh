# GPU call 3 of 2026-12-01 (session 4): the sMNIST real model with one ADC range per column
# (the 8-bit per-tensor ADC is what limits it: gpu_session4_b.sh), FP and PCM-noise-trained, and
# the remaining sMNIST mitigation rows re-run with aihwkit's global compensation (issue 11).
# Smoke: G=/tmp/g LIMIT=8 CHIPS=2 DEV=cpu T=900 bash scripts/gpu_session4_c.sh
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
test -f .data/train-images-idx3-ubyte.gz || { echo "no .data"; exit 1; }
G=${G:-/tmp/g}; LIMIT=${LIMIT:-2000}; CHIPS=${CHIPS:-10}; DEV=${DEV:-cuda}; T=${T:-500}
mkdir -p $G
R=results/analog-ssm/smnist-real-64x4-seed0; N=results/analog-ssm/smnist-real-64x4-noise-pcm-inc
FP=results/foundation/smnist-s4d-64-seed0; X=results/crossbar-smnist
S="python3 -m imssa simulate --data-dir .data --chips $CHIPS --limit $LIMIT --device $DEV --batch-size 500"
PCM="--memristor pcm --dac-bits 8 --adc-bits 8 --compensation global"
INC="--transition increment --transition-scale mode"; CH="--adc-granularity channel"
j(){ n=$1; shift; (timeout $T bash -c "$*" > $G/$n.log 2>&1; echo "rc=$?" >> $G/$n.log) & }
j real-fp-ch "$S $R $PCM $CH $INC --t-inference 1s,1d --out $G/real-fp-ch.nc"
j real-np-ch "$S $N $PCM $CH $INC --t-inference 1s,1h,1d,1y --out $G/real-np-ch.nc"
j real-np-ideal "$S $N --memristor pcm --compensation global $INC --t-inference 1s,1d --out $G/real-np-ideal.nc"
j real-np-ch-a10 "$S $N $PCM $CH $INC --per-tensor A:adc_bits=10 --t-inference 1d --out $G/real-np-ch-a10.nc"
j real-np-ch-gauss "$S $N --memristor gaussian --sweep prog_noise=0.01,0.02,0.05 --t-inference 0 --dac-bits 8 --adc-bits 8 $CH $INC --out $G/real-np-ch-gauss.nc"
j cplx-fp-ch "$S $FP $PCM $CH $INC --t-inference 1d --out $G/cplx-fp-ch.nc"
# issue 11: the remaining mitigation rows at 1 day, A_bar digital
D1="--t-inference 1d --digital A"
j mit-verify-fp "$S $FP $PCM $D1 --sweep verify_tol=0.04,0.02,0.01 --out $G/mit-verify-fp.nc"
j mit-verify-noise-pcm "$S $X/noise-pcm-1.0 $PCM $D1 --sweep verify_tol=0.04,0.02,0.01 --out $G/mit-verify-noise-pcm.nc"
j mit-10bit-fp "$S $FP --memristor pcm --dac-bits 10 --adc-bits 10 --compensation global $D1 --out $G/mit-10bit-fp.nc"
j mit-ssm-digital-fp "$S $FP $PCM --t-inference 1d --digital A,B,C,D --out $G/mit-ssm-digital-fp.nc"
j mit-devices4-verify-noise-pcm "$S $X/noise-pcm-1.0 $PCM $D1 --n-devices 4 --sweep verify_tol=0.04,0.02 --out $G/mit-devices4-verify-noise-pcm.nc"
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
wait
for f in $G/*.log; do echo "== $f"; tr '\r' '\n' < $f | grep -v "it/s\|s/it\|it\]" | tail -6; done
