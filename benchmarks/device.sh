#!/usr/bin/env bash
# The whole benchmark on a GPU machine, in at most 5 minutes on one H100/H200: front-end
# throughput, loader throughput against DataLoader workers and with the audio on the device,
# training throughput at steady state (float32 and bf16, with and without the data pipeline),
# an end-to-end LITIS-shaped fold through asc cv's run_fold (3 026 clips of 30 s at 22.05 kHz
# generated into a float16 cache, 4.2 GB on disk; 4 epochs; benchmarks/litis_b6efd54.yaml)
# with epoch / validation / test times and the 20-split protocol estimate, files per second
# of predict --attention (32 files), cv.parallel_folds 1 -> 2 -> 4 on a demo-like config,
# torch.compile, peak RSS and device memory.  Sections run in that order and
# $OUT/bench_gpu.json is rewritten as each one finishes; the run is cut at BENCH_LIMIT_S
# (default 285 s), keeping the sections it finished, and the tables of those are printed.
# Not yet run on a GPU (no device in the sessions that wrote it): the sizes are chosen from
# the issue's H200 rates (about 1 300 clips/s with data: a LITIS-shaped epoch of ~2 200
# clips in ~2 s, validation and test in a few seconds, the cache in ~20 s).
#
# Packages: see benchmarks/device_env.sh.
#   OUT=/some/folder benchmarks/device.sh        # default OUT: .
#   BENCH_ARGS=--quick benchmarks/device.sh       # smoke run (small counts)
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/device_env.sh
export WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
OUT=${OUT:-.}
mkdir -p "$OUT"
rc=0
timeout --signal=INT --kill-after=10 "${BENCH_LIMIT_S:-285}" \
  $PY -m asc.cli bench --device cuda --out "$OUT/bench_gpu.json" ${BENCH_ARGS:-} || rc=$?
if [ "$rc" -ne 0 ] && [ -f "$OUT/bench_gpu.json" ]; then
  echo "bench stopped (exit $rc); the sections it finished:"
  $PY -c "import json, sys; from asc.bench import format_result; print(format_result(json.load(open(sys.argv[1]))))" \
    "$OUT/bench_gpu.json"
fi
exit "$rc"
