# GPU calls of 2026-12-01 (session 5): the analog-SSM sweeps of issue 9 on one H200, each spec its
# own `imssa sweep` (a LocalCluster of workers pinned to the GPU), side by side, resumed across
# calls from runs/a (carried back and forth). Dask and h5netcdf travel as wheels in .wheels/.
# Usage on the device: END=520 bash scripts/gpu_session5.sh SPEC:WORKERS ...
# Smoke here: DEV=cpu END=60 bash scripts/gpu_session5.sh analog-ssm-a-real16:1
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if ! python3 -c "import distributed, h5netcdf" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .wheels/dask-* .wheels/distributed-* .wheels/partd-* .wheels/locket-* .wheels/tornado-* \
    .wheels/zict-* .wheels/tblib-* .wheels/h5netcdf-* || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ ! -e ../shared/data ]; then mkdir -p ../shared && ln -sfn "$PWD/.data" ../shared/data; fi
test -f ../shared/data/train-images-idx3-ubyte.gz || { echo "no sMNIST data"; exit 1; }
END=${END:-520}; R=${R:-runs/a}; mkdir -p $R/logs
T=$((END - SECONDS))
for job in "$@"; do
  spec=${job%%:*}; w=${job##*:}
  (timeout $T python3 -m imssa sweep sweeps/$spec.toml --out $R/$spec --workers-per-gpu $w \
     > $R/logs/$spec.log 2>&1; echo "rc=$?" >> $R/logs/$spec.log) &
done
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
sleep 120; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
wait
for f in $R/logs/*.log; do echo "== $f"; tr '\r' '\n' < $f | grep -v "^\s*$" | tail -4; done
