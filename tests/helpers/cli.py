"""The tiny experiment config of the tests and a runner for the ``asc`` command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

# data and model small enough to train an epoch in seconds on a CPU
TINY_MODEL = ["data.synthetic.n_classes=3", "data.synthetic.clips_per_class=6", "data.synthetic.n_folds=2",
              "data.batch_size=6", "model.conv_channels=[4,8,8]", "model.rnn_hidden=8", "model.attention_dim=8"]
# ... plus a one-epoch quiet trainer: what end-to-end CLI tests pass
TINY = TINY_MODEL + ["trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                     "trainer.enable_model_summary=false"]


def asc(*args, cwd, env=None) -> subprocess.CompletedProcess:
    """Run ``python -m asc.cli *args`` in ``cwd`` as a user would; output captured as text
    (``env``: variables added to this process's environment).  The command starts its own
    W&B service, as from a shell: it does not inherit one that a test started in this
    process (``WANDB_SERVICE``), which would keep an interrupted command's run "in use"."""
    child = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return subprocess.run([sys.executable, "-m", "asc.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env={**child, **(env or {})})


def ctrl_c_as_in_a_terminal() -> None:
    """``preexec_fn`` of a child that a test stops with Ctrl-C: SIGINT back to its default,
    as in a terminal.  A test suite started as a background job of a non-interactive shell
    (`make test &`, a CI runner) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
