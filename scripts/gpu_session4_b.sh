# GPU call 2 of 2026-12-01 (session 4): noise-aware fine-tuning of the sMNIST real model in the
# increment form (2 epochs, batch 128), each simulated on PCM and Gaussian error; and an ablation
# of what limits the FP real model on PCM (converters, read noise, drift, programming error).
# Smoke: G=/tmp/g LIMIT=8 EPOCHS=1 TRAIN_LIMIT=64 CHIPS=2 DEV=cpu T=900 bash scripts/gpu_session4_b.sh
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
test -f .data/train-images-idx3-ubyte.gz || { echo "no .data"; exit 1; }
G=${G:-/tmp/g}; LIMIT=${LIMIT:-2000}; EPOCHS=${EPOCHS:-2}; CHIPS=${CHIPS:-10}; DEV=${DEV:-cuda}; T=${T:-500}
TL=${TRAIN_LIMIT:+--limit $TRAIN_LIMIT}
mkdir -p $G
R=results/analog-ssm/smnist-real-64x4-seed0
S="python3 -m imssa simulate --data-dir .data --chips $CHIPS --limit $LIMIT --device $DEV --batch-size 2000"
PCM="--memristor pcm --dac-bits 8 --adc-bits 8 --compensation global"
INC="--transition increment --transition-scale mode"
j(){ n=$1; shift; (timeout $T bash -c "$*" > $G/$n.log 2>&1; echo "rc=$?" >> $G/$n.log) & }
NZ="--train-noise-on all --train-noise-transition increment --train-noise-granularity mode --mode conv --epochs $EPOCHS --batch-size 128 --data-dir .data --device $DEV $TL"
sim_noise(){ echo "$S $1 $PCM $INC --t-inference 1s,1d --out $G/$2-pcm.nc && $S $1 --memristor gaussian --sweep prog_noise=0.01,0.02 --t-inference 0 $INC --out $G/$2-gauss.nc"; }
j n-g2 "python3 -m imssa qat $R --preset fp --train-noise 0.02 $NZ --out $G/n-g2 && $(sim_noise $G/n-g2 n-g2)"
j n-pcm "python3 -m imssa qat $R --preset fp --train-noise 1.0 --train-noise-kind pcm $NZ --out $G/n-pcm && $(sim_noise $G/n-pcm n-pcm)"
j n-pcm-m3 "python3 -m imssa qat $R --preset fp --train-noise 1.0 --train-noise-kind pcm --a-margin 3 $NZ --out $G/n-pcm-m3 && $(sim_noise $G/n-pcm-m3 n-pcm-m3)"
# what limits the FP real model, all analog, increment form: each noise source alone
j ab-conv "$S $R --memristor gaussian --sweep prog_noise=0,0.01 --t-inference 0 --dac-bits 8 --adc-bits 8 $INC --out $G/ab-conv.nc"
j ab-conv-ch "$S $R --memristor gaussian --sweep prog_noise=0,0.01 --t-inference 0 --dac-bits 8 --adc-bits 8 --adc-granularity channel $INC --out $G/ab-conv-ch.nc"
j ab-read "$S $R $PCM $INC --t-inference 1s --sweep read_noise_scale=0,0.5 --out $G/ab-read.nc"
j ab-drift "$S $R $PCM $INC --t-inference 1d --sweep drift_scale=0,0.5 --out $G/ab-drift.nc"
j ab-prog "$S $R $PCM $INC --t-inference 1s --sweep prog_noise_scale=0,0.5 --out $G/ab-prog.nc"
j ab-ideal-conv "$S $R --memristor pcm --compensation global $INC --t-inference 1s,1d --out $G/ab-ideal-conv.nc"
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
wait
for f in $G/*.log; do echo "== $f"; tr '\r' '\n' < $f | grep -v "it/s\|s/it\|it\]" | tail -7; done
