export PYTHONUNBUFFERED=1; test -f .data/train-images-idx3-ubyte.gz || exit 1; mkdir -p /tmp/g
R=results/analog-ssm/smnist-real-64x4-seed0; C=results/foundation/smnist-s4d-64-seed0
S="python3 -m imssa simulate --data-dir .data --chips 10 --limit 2000 --device cuda --transition-scale mode"
P="--memristor pcm --compensation global --dac-bits 8 --adc-bits 8"
G="--memristor gaussian --sweep prog_noise=0,0.01,0.02,0.05 --t-inference 0"
j(){ n=$1; shift; (timeout 430 $S "$@" --out /tmp/g/$n.nc > /tmp/g/$n.log 2>&1 &); }
j real-inc-pcm $R --transition increment $P --t-inference 1s,1h,1d,1y
j real-inc-gauss $R --transition increment $G
j real-dir-gauss $R --transition direct $G
j real-dir-pcm $R --transition direct $P --t-inference 1d,1y
j cplx-inc-gauss $C --transition increment $G
j cplx-dir-gauss $C --transition direct $G
j cplx-inc-pcm $C --transition increment $P --t-inference 1d,1y
sleep 40; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv; sleep 395
for f in /tmp/g/*.log; do echo "== $f"; tr '\r' '\n' < $f | grep -v "it/s\|s/it\|it\]" | tail -7; done
tar czf $OUT/g.tgz -C /tmp/g .; ls -la $OUT
