#!/usr/bin/env bash
# Install imssa and everything its tests need into the current Python environment.
#   scripts/install.sh          runtime + test dependencies (no aihwkit)
#   scripts/install.sh --aihwkit   also build aihwkit 1.2.0 from source (about 4 min on 2 cores)
set -euo pipefail
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."

# torch 2.13.0: on machines whose pip is pointed at a local CPU wheel this takes it; elsewhere pip
# fetches the default build for the platform.
$PY -m pip install -q --upgrade pip
$PY -m pip install -q "torch==2.13.0" 2>/dev/null || $PY -m pip install -q "torch>=2.4"
$PY -m pip install -q -e ".[test]"

if [[ "${1:-}" == "--aihwkit" ]]; then
  if $PY -c "import aihwkit" 2>/dev/null; then
    echo "aihwkit already installed"
  else
    # aihwkit 1.2.0 ships no wheel: build it. It needs BLAS headers and its build tools first.
    if ! ldconfig -p 2>/dev/null | grep -q libopenblas || [[ ! -e /usr/include/x86_64-linux-gnu/cblas.h && ! -e /usr/include/cblas.h ]]; then
      if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev >/dev/null
      else
        echo "aihwkit needs OpenBLAS headers: install libopenblas-dev (Debian/Ubuntu) and rerun" >&2; exit 1
      fi
    fi
    $PY -m pip install -q scikit-build "pybind11>=3" "cmake>=4.2.1" ninja mypy
    # --no-deps: aihwkit pins torchvision, which breaks beside torch 2.13; its runtime needs are
    # named in pyproject's [aihwkit] extra instead.
    $PY -m pip install -q --no-build-isolation --no-deps "aihwkit==1.2.0"
    $PY -m pip install -q -e ".[aihwkit]"
  fi
  $PY -c "import aihwkit; print('aihwkit', aihwkit.__version__)"
fi
