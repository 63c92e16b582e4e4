"""What the terminal shows: :func:`quiet` keeps library chatter (W&B, Lightning's notices
and warnings that need no action) off it, for the command line and for the child
processes it starts (:mod:`asc.parallel`).
"""

from __future__ import annotations

import os
import warnings


def quiet() -> None:
    """Keep the terminal for progress bars and tables, not library chatter."""
    os.environ.setdefault("WANDB_SILENT", "true")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*isinstance.*treespec.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    warnings.filterwarnings("ignore", message=".*Experiment logs directory.*exists and is not empty.*")
    import logging

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)


def close_interrupted_wandb_run(exit_code: int) -> None:
    """Write out and close the W&B run an interruption left open (exit code 130 or 143), so
    that its history up to now reaches its files before the process ends; a resumed fold
    continues the same run id.  Best effort: the metrics are in ``metrics.csv`` anyway."""
    import sys

    wandb = sys.modules.get("wandb")  # never imported: no run to close
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            wandb.finish(exit_code=exit_code)
        except Exception:  # noqa: BLE001 - a failing W&B must not hide the resume hint
            pass
