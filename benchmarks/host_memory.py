"""Where a training process's host memory goes: resident pages, the process's own (RssAnon)
and file-mapped (RssFile), after each step of starting one up: Python and the packages,
the device's runtime, cuBLAS, cuDNN (a convolution and the GRU), the front-end, and then
training steps of the LITIS-shaped STAP-CRNN + BC (benchmarks/litis_b6efd54.yaml) from
random waveforms on the device.  What is left of a fold process's peak after these is the
fold's own (its data, loaders, logging).

    python benchmarks/host_memory.py [--device cuda] [--set model.compile=reduce-overhead]

Prints one line per step (MB); Linux only (/proc/self/status).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def resident_mb() -> tuple[float, float, float]:
    """(own, file-mapped, peak) resident MB of this process (read without importing torch)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile", "VmHWM"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--steps", type=int, default=30, help="training steps at the end")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()

    def mark(stage: str) -> None:
        own, file, peak = resident_mb()
        print(f"{stage:<48} own {own:7.0f}  file-mapped {file:7.0f}  peak {peak:7.0f}", flush=True)

    mark("python")
    import torch
    mark("import torch")
    import lightning  # noqa: F401
    import nnAudio  # noqa: F401
    import torchmetrics  # noqa: F401
    import wandb  # noqa: F401
    mark("import lightning, torchmetrics, nnAudio, wandb")
    from asc.bench.common import N_LITIS_CLASSES, litis_shaped_config
    from asc.bench.training import make_step, training_setup
    mark("import asc")
    device = torch.device(args.device)
    x = torch.ones(1, device=device)
    torch.cuda.synchronize() if device.type == "cuda" else None
    mark(f"runtime on {device} (one tensor)")
    a = torch.randn(256, 256, device=device)
    (a @ a).sum().item()
    mark("matrix product (cuBLAS)")
    conv = torch.nn.Conv2d(1, 16, 3, padding=1).to(device)
    conv(torch.randn(8, 1, 64, 200, device=device, requires_grad=True)).sum().backward()
    mark("convolution forward and backward (cuDNN)")
    gru = torch.nn.GRU(64, 64, batch_first=True, bidirectional=True).to(device)
    gru(torch.randn(8, 100, 64, device=device))[0].sum().backward()
    mark("GRU forward and backward (cuDNN)")
    cfg = litis_shaped_config(args.set)
    module, opt, features, batch = training_setup(cfg, [f"class{c}" for c in range(N_LITIS_CLASSES)], device)
    mark("the network, optimizer and front-end built")
    step = make_step(module, opt, features, device)  # under model.compile: network and front-end compiled
    t0 = time.perf_counter()
    step(dict(batch))
    torch.cuda.synchronize() if device.type == "cuda" else None
    mark(f"first training step ({time.perf_counter() - t0:.1f} s)")
    for _ in range(args.steps - 1):
        step(dict(batch))
    torch.cuda.synchronize() if device.type == "cuda" else None
    mark(f"{args.steps} training steps")
    del x


if __name__ == "__main__":
    main()
