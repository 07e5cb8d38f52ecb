#!/usr/bin/env bash
# Install imssa and everything its tests need into the Python environment of $PYTHON.
#   scripts/install.sh             torch (unless present), imssa, its test needs (no aihwkit)
#   scripts/install.sh --aihwkit   also build aihwkit 1.2.0 from source (C++: about 4 min on 2
#                                  idle cores, 12 min or more on a loaded machine)
#
# torch: an installed torch is kept. Otherwise IMSSA_TORCH chooses the build:
#   cpu    the CPU-only wheel torch==2.13.0+cpu (about 200 MB), from PyTorch's CPU index
#   cuda   the default PyPI wheel, on Linux x86_64 the CUDA build (about 2.5 GB with its NVIDIA
#          libraries)
#   auto   (default) cuda when nvidia-smi finds a GPU, else cpu
set -euo pipefail
PY=${PYTHON:-python3}
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
cd "$(dirname "$0")/.."

# Build tools (cmake, ninja, mypy's stubgen) are installed beside the interpreter: put its own
# scripts folder first on PATH, so a venv works without being activated (PYTHON=venv/bin/python).
SCRIPTS=$($PY -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$SCRIPTS:$PATH"

step() { echo; echo "==> $*"; }

step "pip: upgrading pip itself"
$PY -m pip install --upgrade pip

if $PY -c "import torch" 2>/dev/null; then
  step "torch: keeping the installed $($PY -c 'import torch; print(torch.__version__, "(CUDA", torch.version.cuda or "none", end=")")')"
else
  choice=${IMSSA_TORCH:-auto}
  if [[ $choice == auto ]]; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then choice=cuda; else choice=cpu; fi
  fi
  case $choice in
    cpu)
      step "torch $TORCH_VERSION, CPU-only build (about 200 MB; IMSSA_TORCH=cuda for the CUDA build)"
      # the +cpu local version exists only on the CPU index (and in local wheel folders)
      # probe the CPU index first (5 s): an unreachable index costs pip minutes of retries
      if ! $PY -c "import urllib.request; urllib.request.urlopen('$TORCH_CPU_INDEX/torch/', timeout=5)" \
          2>/dev/null || ! $PY -m pip install "torch==$TORCH_VERSION+cpu" --extra-index-url "$TORCH_CPU_INDEX"; then
        step "torch: PyTorch's CPU index is not reachable; trying the indexes pip is configured with."
        echo "    On Linux x86_64 PyPI serves the CUDA build there (about 2.5 GB); press Ctrl-C now"
        echo "    and install a CPU torch by hand if you do not want it."
        sleep 5
        $PY -m pip install "torch==$TORCH_VERSION"
      fi
      ;;
    cuda)
      step "torch $TORCH_VERSION, default build: on Linux x86_64 the CUDA build (about 2.5 GB)"
      $PY -m pip install "torch==$TORCH_VERSION"
      ;;
    *) echo "IMSSA_TORCH must be auto, cpu or cuda, got '$choice'" >&2; exit 2 ;;
  esac
fi

step "imssa (editable) and its test needs"
$PY -m pip install -e ".[test]"
# imssa sweep runs on Dask distributed and writes NetCDF4 through h5netcdf (pyproject's
# dependencies): fail here, not in the first sweep, when either did not install
$PY -c "import distributed, h5netcdf, h5py; print('dask distributed', distributed.__version__, '| h5netcdf', h5netcdf.__version__)"

if [[ "${1:-}" == "--aihwkit" ]]; then
  if $PY -c "import aihwkit" 2>/dev/null; then
    step "aihwkit $($PY -c 'import aihwkit; print(aihwkit.__version__)') already installed"
  else
    # aihwkit 1.2.0 ships no wheel: build it. It needs BLAS headers and its build tools first.
    if ! ldconfig -p 2>/dev/null | grep -q libopenblas || [[ ! -e /usr/include/x86_64-linux-gnu/cblas.h && ! -e /usr/include/cblas.h ]]; then
      if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
        step "aihwkit needs OpenBLAS: apt-get install libopenblas-dev"
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y libopenblas-dev
      else
        echo "aihwkit needs OpenBLAS headers: install libopenblas-dev (Debian/Ubuntu) and rerun" >&2; exit 1
      fi
    fi
    step "aihwkit build tools (scikit-build, pybind11, cmake, ninja, mypy for stubgen)"
    $PY -m pip install scikit-build "pybind11>=3" "cmake>=4.2.1" ninja mypy
    step "building aihwkit 1.2.0 from source: C++, about 4 min on 2 idle cores, 12 min or more on a loaded machine; the compiler's progress follows"
    start=$SECONDS
    # --no-deps: aihwkit pins torchvision, which breaks beside torch 2.13; its runtime needs are
    # named in pyproject's [aihwkit] extra instead. -v shows the build as it goes.
    $PY -m pip install -v --no-build-isolation --no-deps "aihwkit==1.2.0"
    echo "    aihwkit built in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
    $PY -m pip install -e ".[aihwkit]"
  fi
  $PY -c "import aihwkit; print('aihwkit', aihwkit.__version__)"
  # aihwkit-lightning: a pure-Python peer of the crossbar benchmark and tests (imssa.crossbar.peers);
  # --no-deps because it pins other torch/triton versions; it runs on torch's CPU path here.
  step "aihwkit-lightning 2.1.0 (pure Python, the benchmark's GPU peer)"
  $PY -m pip install --no-deps "aihwkit-lightning==2.1.0"
fi
