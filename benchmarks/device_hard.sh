#!/usr/bin/env bash
# The method study's sparse-event grids (`benchmarks/study.py $HARD_GRIDS`, default `hard`:
# 22 jobs of fold 1, experiments/hard.yaml, side by side on one GPU, one CPU thread each; the
# first 16 took 3.2 min each on an H200; `hard-e200`: 15 jobs of 200 epochs), then
# `asc attention` on the attention models' best checkpoints
# (mass on the class event, 1.0 = chance).  The small files (results.json, metrics.csv,
# logs, summary, attention scores) are copied to $OUT; the checkpoints stay on the machine
# (in $STUDY, a fresh folder unless given).  The grid is cut at HARD_LIMIT_S (default
# 300 s), keeping the jobs it finished.  Packages: see benchmarks/device_env.sh.
#   OUT=/some/folder benchmarks/device_hard.sh
#   HARD_ARGS="--extra trainer.max_epochs=1" benchmarks/device_hard.sh   # smoke run
set -uo pipefail
cd "$(dirname "$0")/.."
source benchmarks/device_env.sh
export WANDB_MODE=disabled
OUT=${OUT:-.}
STUDY=${STUDY:-$(mktemp -d /tmp/study-hard.XXXX)}  # fresh: study.py skips jobs it finds complete
mkdir -p "$OUT"
rm -f "$STUDY/summary.md"
timeout --signal=INT --kill-after=10 "${HARD_LIMIT_S:-300}" \
  $PY benchmarks/study.py ${HARD_GRIDS:-hard} --out "$STUDY" --jobs "${HARD_JOBS:-22}" ${HARD_ARGS:-} > "$OUT/hard_study.log" 2>&1
echo "hard grid: exit $?"
pkill -INT -f "asc.cli cv" && sleep 3; pkill -KILL -f "asc.cli cv" || true  # jobs the cut left running
ckpts=()
for d in "$STUDY"/runs/hard-stap-*s? "$STUDY"/runs/hard-temporal-*s?; do
  [ -f "$d/fold-1/checkpoints/best.ckpt" ] && [ -f "$d/results.json" ] && ckpts+=(--checkpoint "$d/fold-1/checkpoints/best.ckpt")
done
if [ ${#ckpts[@]} -gt 0 ]; then
  timeout "${ATTENTION_LIMIT_S:-60}" $PY -m asc.cli attention "${ckpts[@]}" --out "$OUT/hard_attention" > "$OUT/hard_attention.log" 2>&1
  echo "attention: exit $?"; cat "$OUT/hard_attention.log"
fi
(cd "$STUDY" && find . -name results.json -o -name metrics.csv -o -name "*.log" -o -name "summary.*" \
  -o -name test_predictions.csv | tar -cf - -T -) | tar -xf - -C "$OUT"
cat "$STUDY/summary.md" 2>/dev/null || grep '^{' "$OUT/hard_study.log"  # the jobs finished before the cut
