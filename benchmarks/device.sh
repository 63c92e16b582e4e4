#!/usr/bin/env bash
# The benchmark on a GPU machine, in at most 5 minutes on one H100/H200: front-end
# throughput, loader throughput against DataLoader workers and with the audio on the device,
# training throughput at steady state (float32 and bf16, with and without the data pipeline),
# where a training step's time goes (profiler), an end-to-end LITIS-shaped fold through asc
# cv's run_fold (3 026 clips of 30 s at 22.05 kHz generated into a float16 cache, 4.2 GB on
# disk; 4 epochs; benchmarks/litis_b6efd54.yaml) with epoch / validation / test times and the
# 20-split protocol estimate, files per second of predict --attention (32 files), and 1 and
# 8 LITIS-shaped folds side by side on the GPU with the protocol estimate from them; peak
# RSS and device memory.  The demo-like parallel_folds and the torch.compile sections are
# left out (add them with BENCH_ARGS="--sections ...").  Sections run in that order and
# $OUT/bench_gpu.json is rewritten as each one finishes; the run is cut at BENCH_LIMIT_S
# (default 300 s), keeping the sections it finished, and the tables of those are printed.
# On an H200 they should take about 280 s: the sum of their times there in two runs of
# 2026-11-27 (the side-by-side folds 43 s with 1 and 58 s with 8; docs/benchmarks.md).
#
# Packages: see benchmarks/device_env.sh.
#   OUT=/some/folder benchmarks/device.sh        # default OUT: .
#   BENCH_ARGS="--quick" benchmarks/device.sh     # smoke run (small counts; BENCH_ARGS replaces the
#                                                 # default --sections: give them too, or all run)
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/device_env.sh
export WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
OUT=${OUT:-.}
mkdir -p "$OUT"
rc=0
timeout --signal=INT --kill-after=10 "${BENCH_LIMIT_S:-300}" \
  $PY -m asc.cli bench --device cuda --out "$OUT/bench_gpu.json" \
  ${BENCH_ARGS:---sections complexity frontends loader training step_profile litis_fold pictures litis_parallel} \
  || rc=$?
if [ "$rc" -ne 0 ] && [ -f "$OUT/bench_gpu.json" ]; then
  echo "bench stopped (exit $rc); the sections it finished:"
  $PY -c "import json, sys; from asc.bench import format_result; print(format_result(json.load(open(sys.argv[1]))))" \
    "$OUT/bench_gpu.json"
fi
exit "$rc"
