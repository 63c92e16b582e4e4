#!/usr/bin/env bash
# The benchmark on a GPU machine: front-end and training throughput (float32 and bf16,
# with and without the data pipeline, torch.compile), peak RSS and device memory.
# Installs the package into a fresh venv when asc is not importable; prints the table and
# writes bench_gpu.json.  Takes under 5 minutes on an H100 after the install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! $PY -c "import asc" 2>/dev/null; then
  test -x .venv/bin/python || $PY -m venv .venv
  .venv/bin/python -m pip install -q -e . 2>&1 | grep -v "is ignored" || true
  PY=.venv/bin/python
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
OUT=${OUT:-.}
$PY -m asc.cli bench --device cuda --out "$OUT/bench_gpu.json"
