#!/usr/bin/env bash
# The whole benchmark on a GPU machine, in under 5 minutes on an H100/H200: front-end
# throughput, loader throughput against DataLoader workers, training throughput at steady
# state (float32 and bf16, with and without the data pipeline), cv.parallel_folds 1 -> 2 -> 4
# on a demo-like config, torch.compile, peak RSS and device memory.  Prints the tables and
# writes $OUT/bench_gpu.json, rewritten as each section finishes (a run cut short keeps the
# sections it finished).
#
# Packages: when nnAudio, omegaconf or wandb are missing and .whl/ holds wheels (made on a
# machine with network by ../shared/device/prepare-wheels.sh), they are installed into
# /tmp/site without network and put on PYTHONPATH with this checkout; otherwise, when asc is
# not importable, the package is installed into a fresh .venv (needs network).
#   OUT=/some/folder benchmarks/device.sh        # default OUT: .
#   BENCH_ARGS=--quick benchmarks/device.sh       # smoke run (small counts)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! $PY -c "import nnAudio, omegaconf, wandb" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
elif ! $PY -c "import asc, nnAudio, omegaconf, wandb" 2>/dev/null; then
  test -x .venv/bin/python || $PY -m venv .venv
  .venv/bin/python -m pip install -q -e . 2>&1 | grep -v "is ignored" || true
  PY=.venv/bin/python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, also in the benchmark's child processes
export WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
OUT=${OUT:-.}
mkdir -p "$OUT"
$PY -m asc.cli bench --device cuda --out "$OUT/bench_gpu.json" ${BENCH_ARGS:-}
