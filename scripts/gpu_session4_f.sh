# GPU call 6 of 2026-12-01 (session 4): the strongest hardware levers on the noise-trained sMNIST
# real model at 1 day (10-bit converters with 4 or 8 devices per weight, program-and-verify), the
# best on the full test set. Smoke: G=/tmp/g LIMIT=6 FULL=6 CHIPS=2 DEV=cpu T=900 bash scripts/gpu_session4_f.sh
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
test -f .data/train-images-idx3-ubyte.gz || { echo "no .data"; exit 1; }
G=${G:-/tmp/g}; LIMIT=${LIMIT:-2000}; FULL=${FULL:-10000}; CHIPS=${CHIPS:-10}; DEV=${DEV:-cuda}; T=${T:-150}
mkdir -p $G
N=results/analog-ssm/smnist-real-64x4-noise-pcm-inc
S0="python3 -m imssa simulate --data-dir .data --chips $CHIPS --device $DEV --batch-size 500"
P10="--memristor pcm --dac-bits 10 --adc-bits 10 --compensation global --adc-granularity channel --transition increment --transition-scale mode"
j(){ n=$1; shift; (timeout $T bash -c "$*" > $G/$n.log 2>&1; echo "rc=$?" >> $G/$n.log) & }
j full-np-10bit-dev4 "$S0 --limit $FULL $N $P10 --n-devices 4 --t-inference 1s,1d,1y --out $G/full-np-10bit-dev4.nc"
j np-10bit-dev8 "$S0 --limit $LIMIT $N $P10 --n-devices 8 --t-inference 1d --out $G/np-10bit-dev8.nc"
j np-10bit-dev4-verify "$S0 --limit $LIMIT $N $P10 --n-devices 4 --sweep verify_tol=0.02,0.01 --t-inference 1d --out $G/np-10bit-dev4-verify.nc"
wait
for f in $G/*.log; do echo "== $f"; tr '\r' '\n' < $f | grep -v "it/s\|s/it\|it\]" | tail -5; done
