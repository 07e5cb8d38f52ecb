# GPU call 3 of 2026-12-01 (session 5). Phase 1, side by side: the rest of the analog-SSM sweeps
# (scripts/gpu_session5.sh) and the GPU tests of the fused kernel. Phase 2, alone on the GPU one
# after another: the kernel profile (current against previous kernel), the whole sMNIST job, and
# aihwkit-lightning against imssa in one process (issue 12). Outputs under $OUT.
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD
END=${P1:-230} bash scripts/gpu_session5.sh analog-ssm-best:4 analog-ssm-a-real:1 > $OUT/sweeps.log 2>&1 &
timeout ${P1:-230} python3 -m pytest -q -m gpu tests/test_crossbar_triton.py tests/test_crossbar_triton_ops.py > $OUT/gpu_tests.log 2>&1 &
wait
tar czf $OUT/runs_c.tgz runs/a
timeout 80 python3 benchmarks/profile_kernel.py --sequences 500 --repeats 2 > $OUT/profile.log 2>&1
timeout 70 python3 benchmarks/bench_crossbar.py --skip-aihwkit --skip-lightning --skip-plain --variants s4d-64:previous-kernel --out benchmarks/results/crossbar_nvidia-h200.json > $OUT/bench_crossbar.log 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/sitel .wheels/aihwkit_lightning-*.whl
PYTHONPATH=$PWD:/tmp/sitel TRITON_ALLOW_NON_CONSTEXPR_GLOBALS=1 timeout 80 python3 benchmarks/bench_peers.py --skip-cpu --out benchmarks/results/peers_nvidia-h200.json > $OUT/peers.log 2>&1
tar czf $OUT/bench.tgz benchmarks/results
tail -5 $OUT/*.log
