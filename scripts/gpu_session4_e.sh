# GPU call 5 of 2026-12-01 (session 4): the jobs of gpu_session4_d.sh that ran out of GPU memory
# side by side, and the hardware levers on the noise-trained sMNIST real model (10-bit
# converters, 4 devices per weight) at 1 day; the fused kernel checked against the step loop.
# Smoke: G=/tmp/g LIMIT=6 CHIPS=2 DEV=cpu T=900 bash scripts/gpu_session4_e.sh
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
test -f .data/train-images-idx3-ubyte.gz || { echo "no .data"; exit 1; }
G=${G:-/tmp/g}; LIMIT=${LIMIT:-2000}; CHIPS=${CHIPS:-10}; DEV=${DEV:-cuda}; T=${T:-240}
mkdir -p $G
R=results/analog-ssm/smnist-real-64x4-seed0; N=results/analog-ssm/smnist-real-64x4-noise-pcm-inc
X=results/crossbar-smnist
S0="python3 -m imssa simulate --data-dir .data --chips $CHIPS --device $DEV --batch-size 500"
S="$S0 --limit $LIMIT"
PCM="--memristor pcm --dac-bits 8 --adc-bits 8 --compensation global"
P10="--memristor pcm --dac-bits 10 --adc-bits 10 --compensation global"
INC="--transition increment --transition-scale mode"; CH="--adc-granularity channel"
j(){ n=$1; shift; (timeout $T bash -c "$*" > $G/$n.log 2>&1; echo "rc=$?" >> $G/$n.log) & }
j real-fp-ch "$S $R $PCM $CH $INC --t-inference 1d --out $G/real-fp-ch.nc"
j real-np-ch-a10 "$S $N $PCM $CH $INC --per-tensor A:adc_bits=10 --t-inference 1d --out $G/real-np-ch-a10.nc"
j real-np-ch-dir "$S $N $PCM $CH --transition direct --transition-scale mode --t-inference 1d --out $G/real-np-ch-dir.nc"
j real-np-ch-10bit "$S $N $P10 $CH $INC --t-inference 1d --out $G/real-np-ch-10bit.nc"
j real-np-ch-dev4 "$S $N $PCM $CH $INC --n-devices 4 --t-inference 1d --out $G/real-np-ch-dev4.nc"
j real-np-ch-10bit-dev4 "$S $N $P10 $CH $INC --n-devices 4 --t-inference 1d --out $G/real-np-ch-10bit-dev4.nc"
j check-fused "$S0 --limit 300 $N $PCM $CH $INC --t-inference 1d --out $G/check-fused.nc"
j check-loop "IMSSA_CROSSBAR_SCAN=torch $S0 --limit 300 $N $PCM $CH $INC --t-inference 1d --out $G/check-loop.nc"
j mit-devices4-verify-noise-pcm "$S $X/noise-pcm-1.0 $PCM --t-inference 1d --digital A --n-devices 4 --sweep verify_tol=0.04,0.02 --out $G/mit-devices4-verify-noise-pcm.nc"
sleep 40; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
wait
for f in $G/*.log; do echo "== $f"; tr '\r' '\n' < $f | grep -v "it/s\|s/it\|it\]" | tail -5; done
