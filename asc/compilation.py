"""``model.compile``: the training step's network and front-end through ``torch.compile``.

A STAP-CRNN + BC training step launches about 350 small kernels; on a GPU the host's
launching, not the device, sets its pace (docs/benchmarks.md).  ``torch.compile`` fuses
kernels, and its ``reduce-overhead`` mode also replays each compiled graph as one CUDA
graph.  On an H200 (LITIS-shaped batches, random tensors, float32): eager 3 360 clips/s,
the network compiled in ``default`` mode 3 341, in ``reduce-overhead`` 4 776, the network
and the feature step (front-end and standardisation) in ``reduce-overhead`` 5 904.  What
ships compiles the network and the front-end; in LITIS-shaped folds on one H200 its
training epoch took 0.63 s against 1.06 s eager.

Training steps are compiled: with ``data.segment_seconds`` set their shapes are fixed
(``data.batch_size`` crops of that length).  Evaluation batches hold a varying number of
windows, each new shape a new compilation (and, with CUDA graphs, a new graph in memory),
so validation and test stay plain unless ``model.compile_eval`` is set: then each forward
pass of evaluation windows is padded to a fixed count of rows (:func:`fixed_rows_call`), one
compiled shape for all of them.  Graphs are compiled for static shapes (``dynamic=False``):
otherwise the second batch size seen (evaluation's, from the sanity check, or training's)
would turn the batch dimension symbolic in every graph of the network, training's too.
Dynamo does not trace the GRU: a CRNN compiles as the conv stack and the pooling around an
eager GRU (and a frame mask adds a few graph breaks), in training as in evaluation.  With
whole clips (``data.segment_seconds: null``) every new batch width compiles again, and a
batch with padding takes another graph than one without: compiling pays for fixed-size
batches.  Checkpoints and inference (``asc predict``) use the plain modules, so a
checkpoint is the same with or without compilation; compiled kernels sum in another order,
so results differ slightly, as with another thread count.  CUDA graphs keep the gradients
in their own memory, so they cannot accumulate gradients over several batches (the config
check refuses ``trainer.accumulate_grad_batches`` > 1 with them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # modes that replay CUDA graphs (on CUDA)


class Compiled:
    """A module's ``torch.compile``'d wrapper in ``mode`` (None: the module itself), made
    on first use.  Held by the module's owner as a plain attribute: the wrapper is not a
    submodule (not in any state dict; it shares the module's parameters, so ``.to`` moves
    both), and it is not copied or pickled (a copy compiles again on its first use).

    Parameters
    ----------
    mode : str or None
        One of :data:`MODES`.
    """

    def __init__(self, mode: str | None):
        if mode not in MODES:
            raise ValueError(f"compile mode {mode!r} is not one of {MODES}")
        self.mode = mode
        self._wrapper = None

    def __call__(self, module: nn.Module) -> nn.Module:
        if not self.mode:
            return module
        if self._wrapper is None or self._wrapper._orig_mod is not module:
            self._wrapper = torch.compile(module, mode=self.mode, dynamic=False)
        return self._wrapper

    def __deepcopy__(self, memo) -> "Compiled":
        return Compiled(self.mode)

    def __getstate__(self) -> dict:
        return {"mode": self.mode, "_wrapper": None}


def begin_step(mode: str | None) -> None:
    """Tell CUDA graphs that a new training step begins: the previous step's graph outputs
    may now be overwritten (nothing keeps them: the loss and metrics are computed outside)."""
    if mode in CUDA_GRAPH_MODES:
        torch.compiler.cudagraph_mark_step_begin()


def fixed_rows_call(fn, spec: torch.Tensor, valid: torch.Tensor | None, rows: int, keep: tuple[str, ...] = ()):
    """``fn(spec, valid)`` -> ``(logits, attn)`` on exactly ``rows`` rows, for compiled
    evaluation: ``spec`` (n, F, T) is padded with zero rows and ``valid`` (n, T) with
    all-valid rows up to ``rows`` (n <= rows), so that every call has one shape (one
    compilation; with CUDA graphs, one graph).  The logits and the ``keep`` entries of
    ``attn`` come back cut to the n real rows and cloned: a CUDA graph overwrites its
    outputs at its next replay.  Rows are independent in eval mode (BatchNorm's running
    statistics, no dropout, per-row pooling), so the padding changes no real row's output."""
    n = len(spec)
    if n > rows:
        raise ValueError(f"{n} windows in one pass of {rows} rows")
    if n < rows:
        spec = F.pad(spec, (0, 0, 0, 0, 0, rows - n))
        if valid is not None:
            valid = torch.cat([valid, valid.new_ones(rows - n, valid.shape[1])])
    logits, attn = fn(spec, valid)
    return logits[:n].clone(), {k: attn[k][:n].clone() for k in keep}
