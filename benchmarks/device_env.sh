# Sourced by the benchmarks/device_*.sh scripts: sets $PY to a Python that imports asc.
# When nnAudio, omegaconf or wandb are missing and .whl/ holds wheels (made on a machine with
# network by ../shared/device/prepare-wheels.sh), they are installed into /tmp/site without
# network and put on PYTHONPATH with this checkout; otherwise, when asc is not importable,
# the package is installed into a fresh .venv (needs network).
PY=${PYTHON:-python3}
if ! $PY -c "import nnAudio, omegaconf, wandb" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
elif ! $PY -c "import asc, nnAudio, omegaconf, wandb" 2>/dev/null; then
  test -x .venv/bin/python || $PY -m venv .venv
  .venv/bin/python -m pip install -q -e . 2>&1 | grep -v "is ignored" || true
  PY=.venv/bin/python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, also in child processes
