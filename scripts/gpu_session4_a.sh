# GPU call 1 of 2026-12-01 (session 4): noise-aware training of the sMNIST real model in the
# increment form, ablations of what limits it on PCM, and the sMNIST global-compensation tables
# re-run with aihwkit's global method (issue 11). Jobs side by side; every output under $G.
# Smoke: G=/tmp/g LIMIT=8 EPOCHS=1 TRAIN_LIMIT=64 CHIPS=2 DEV=cpu T=600 bash scripts/gpu_session4_a.sh
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
test -f .data/train-images-idx3-ubyte.gz || { echo "no .data"; exit 1; }
G=${G:-/tmp/g}; LIMIT=${LIMIT:-2000}; EPOCHS=${EPOCHS:-4}; CHIPS=${CHIPS:-10}; DEV=${DEV:-cuda}; T=${T:-500}
TL=${TRAIN_LIMIT:+--limit $TRAIN_LIMIT}
mkdir -p $G
R=results/analog-ssm/smnist-real-64x4-seed0; FP=results/foundation/smnist-s4d-64-seed0; X=results/crossbar-smnist
S="python3 -m imssa simulate --data-dir .data --chips $CHIPS --limit $LIMIT --device $DEV"
PCM="--memristor pcm --dac-bits 8 --adc-bits 8 --compensation global"
INC="--transition increment --transition-scale mode"
j(){ n=$1; shift; (timeout $T bash -c "$*" > $G/$n.log 2>&1; echo "rc=$?" >> $G/$n.log) & }
NZ="--train-noise-on all --train-noise-transition increment --train-noise-granularity mode --mode conv --epochs $EPOCHS --batch-size 64 --data-dir .data --device $DEV $TL"
sim_noise(){ echo "$S $1 $PCM $INC --t-inference 1s,1d,1y --out $G/$2-pcm.nc && $S $1 --memristor gaussian --sweep prog_noise=0.02,0.05 --t-inference 0 $INC --out $G/$2-gauss.nc"; }
j n-g2 "python3 -m imssa qat $R --preset fp --train-noise 0.02 $NZ --out $G/n-g2 && $(sim_noise $G/n-g2 n-g2)"
j n-pcm "python3 -m imssa qat $R --preset fp --train-noise 1.0 --train-noise-kind pcm $NZ --out $G/n-pcm && $(sim_noise $G/n-pcm n-pcm)"
j n-pcm-m3 "python3 -m imssa qat $R --preset fp --train-noise 1.0 --train-noise-kind pcm --a-margin 3 $NZ --out $G/n-pcm-m3 && $(sim_noise $G/n-pcm-m3 n-pcm-m3)"
# what limits the FP real model on PCM at 1 day: A alone analog, A alone digital, A with more devices or verify
j ab-only-a "$S $R $PCM $INC --t-inference 1d --digital B,C,D,encoder,mix,decoder --out $G/ab-only-a.nc"
j ab-a-dig "$S $R $PCM --t-inference 1d --digital A --out $G/ab-a-dig.nc"
j ab-a-dev "$S $R $PCM $INC --t-inference 1d --per-tensor A:n_devices=8 --sweep n_devices=1,4 --out $G/ab-a-dev.nc"
j ab-a-ver "$S $R $PCM $INC --t-inference 1d --per-tensor A:verify_tol=0.005 --sweep verify_tol=0.04,0.01 --out $G/ab-a-ver.nc"
# issue 11: the sMNIST tables that used global compensation, re-run with aihwkit's method
D1="--t-inference 1d --digital A"
j pcm-global-fp "$S $FP $PCM --t-inference 1s,1h,1d,1y --digital A --out $G/pcm-global-fp.nc"
j pcm-global-qat "$S $X/qat-W8A8 $PCM --t-inference 1s,1h,1d,1y --digital A --out $G/pcm-global-qat.nc"
j pcm-global-noise-0.03 "$S $X/noise-gauss-0.03 $PCM --t-inference 1s,1h,1d,1y --digital A --out $G/pcm-global-noise-0.03.nc"
j pcm-global-noise-pcm "$S $X/noise-pcm-1.0 $PCM --t-inference 1s,1h,1d,1y --digital A --out $G/pcm-global-noise-pcm.nc"
j pcm-global-all-analog-fp "$S $FP $PCM --t-inference 1s,1h,1d,1y --out $G/pcm-global-all-analog-fp.nc"
j mit-devices-fp "$S $FP $PCM $D1 --sweep n_devices=1,2,4,8 --out $G/mit-devices-fp.nc"
j mit-devices-noise-pcm "$S $X/noise-pcm-1.0 $PCM $D1 --sweep n_devices=1,2,4,8 --out $G/mit-devices-noise-pcm.nc"
sleep 30; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
wait
for f in $G/*.log; do echo "== $f"; tr '\r' '\n' < $f | grep -v "it/s\|s/it\|it\]" | tail -6; done
