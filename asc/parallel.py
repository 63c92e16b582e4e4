"""Several experiment processes at once: the folds of one ``asc cv`` (``cv.parallel_folds``)
and the runs of ``asc sweep FILE --local --parallel N``.

Each job is a child process of the command, started with at most ``N`` running at a time,
its stdout and stderr kept in a log file (``fold-<k>/log.txt``, ``<run>/log.txt``).  The
parent prints one line when a job starts and one when it ends.  A job that fails does not
stop the others.  Ctrl-C (or SIGTERM) reaches the parent only (children run in their own
session): it passes the signal on to every running child, which stops as a sequential run
does (its last checkpoint, at most an epoch old, kept), waits for them, and raises
KeyboardInterrupt so the command says how to resume.

Threads: on a CPU every child uses one thread (``torch.set_num_threads(1)``,
``OMP_NUM_THREADS=1``), so ``N`` children share ``N`` cores without oversubscription; on
a GPU each gets ``cpu_count // N`` CPU threads.  The thread count changes floating-point
summation order, so a parallel run's numbers can differ slightly from those of a sequential
run that uses several threads (they agree with a sequential run at one thread:
``OMP_NUM_THREADS=1 asc cv ...``).

A fold's child is ``python -m asc.parallel fold <experiment>/config.yaml <k> <complexity>``:
it runs :func:`asc.fold.run_fold` exactly as the sequential loop does (its own W&B
run, its own ``fold-<k>`` folder, resumed from ``last.ckpt``); the parent does everything
else (skipping finished folds, bag-of-frames, results.json, the aggregate run).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from asc.errors import AscError

STOP_GRACE_S = 60.0  # how long stopped children get to save and exit before they are killed


def check_parallel(value, key: str = "cv.parallel_folds") -> int:
    """``value`` as a number of processes at once: an integer ≥ 1, else a clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AscError(f"{key}={value!r} must be an integer >= 1 (1: one at a time, in this process)")
    return value


def uses_cpu(cfg) -> bool:
    """Whether the experiment trains on the CPU (trainer.accelerator cpu, or auto without a GPU)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto")).lower()
    if accelerator == "cpu":
        return True
    if accelerator in ("auto", "gpu", "cuda"):
        import torch

        return not torch.cuda.is_available()
    return False


def threads_per_child(n: int, cpu: bool) -> int:
    """CPU threads of each of ``n`` children: 1 on a CPU (documented: results differ
    slightly from a multi-threaded run), an equal share of the cores beside a GPU."""
    return 1 if cpu else max(1, (os.cpu_count() or 1) // n)


def child_env(threads: int) -> dict:
    # each child starts its own W&B service: one inherited from this process (WANDB_SERVICE)
    # would outlive a crashed child and keep its run id "in use" when the fold is run again
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"  # the log shows progress as it happens
    # the children import the same asc as this process, whatever their working folder
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


@dataclass
class Job:
    key: object  # fold number, or sweep run
    label: str  # how the parent names it: "fold 2", "run 3/8"
    argv: list[str]
    log: Path
    env: dict
    proc: subprocess.Popen | None = None
    started: float = 0.0
    seconds: float = 0.0
    returncode: int | None = None
    _log_file: object = field(default=None, repr=False)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log, "a")
        self._log_file.write(f"$ {' '.join(self.argv)}\n")
        self._log_file.flush()
        self.started = time.time()
        # own session: a Ctrl-C at the terminal reaches the parent, which passes it on
        self.proc = subprocess.Popen(self.argv, stdout=self._log_file, stderr=subprocess.STDOUT, env=self.env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def poll(self) -> int | None:
        rc = self.proc.poll()
        if rc is not None and self.returncode is None:
            self.returncode, self.seconds = rc, time.time() - self.started
            self._log_file.close()
        return rc

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # the child and its DataLoader workers
        except ProcessLookupError:
            pass


def last_error(log: Path) -> str | None:
    """The last ``error:`` line, else the last line of a traceback, in a child's log."""
    try:
        lines = [l.strip() for l in log.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Traceback"):
            return lines[-1]
    return None


class _Terminated(KeyboardInterrupt):
    """SIGTERM to the parent, handled like Ctrl-C (children stopped with SIGTERM)."""


def run_jobs(jobs: list[Job], n: int, on_start: Callable[[Job], None] | None = None,
             on_done: Callable[[Job], None] | None = None, poll_s: float = 0.2) -> list[Job]:
    """Run ``jobs`` with at most ``n`` at a time, in order; ``on_done`` is called in the
    parent as each one ends (whatever its exit status).  Returns the jobs, each with its
    ``returncode``.  Ctrl-C / SIGTERM: every running child gets the same signal and
    :data:`STOP_GRACE_S` to stop, then KeyboardInterrupt is raised."""
    pending, running = list(jobs), []
    previous = None
    if threading.current_thread() is threading.main_thread():
        def terminate(signum, frame):
            raise _Terminated()

        previous = signal.signal(signal.SIGTERM, terminate)
    try:
        while pending or running:
            while pending and len(running) < n:
                job = pending.pop(0)
                job.start()
                running.append(job)
                if on_start:
                    on_start(job)
            for job in list(running):
                if job.poll() is not None:
                    running.remove(job)
                    if on_done:
                        on_done(job)
            time.sleep(poll_s)
    except KeyboardInterrupt as e:
        stop(running, signal.SIGTERM if isinstance(e, _Terminated) else signal.SIGINT)
        raise KeyboardInterrupt from None
    except BaseException:  # the parent's own error (e.g. in on_done): no child is left running unsupervised
        stop(running, signal.SIGTERM)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return jobs


def stop(running: list[Job], sig: int) -> None:
    if running:
        print(f"\nstopping {', '.join(j.label for j in running)} ...", file=sys.stderr, flush=True)
    for job in running:
        job.signal(sig)
    deadline = time.time() + STOP_GRACE_S
    for job in running:
        try:
            job.proc.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            job.signal(signal.SIGKILL)
            job.proc.wait()
        job.poll()


def fold_command(config_path: Path, fold: int, complexity: dict) -> list[str]:
    return [sys.executable, "-m", "asc.parallel", "fold", str(config_path), str(fold), json.dumps(complexity)]


def fold_main(argv: list[str]) -> int:
    """A fold's child process: ``fold CONFIG_YAML K COMPLEXITY_JSON``.  Exit status as
    the command line's (0 done, 2 a user error, 130 interrupted, 143 SIGTERM, 1 a crash)."""
    import torch

    from asc.console import close_interrupted_wandb_run, quiet

    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    quiet()
    config_path, fold, complexity = argv[0], int(argv[1]), json.loads(argv[2])
    from asc.config import load_config
    from asc.data import load_clipset
    from asc.fold import run_fold

    try:
        cfg = load_config(config_path)
        print(f"fold {fold}: process {os.getpid()}, {torch.get_num_threads()} CPU thread(s)", flush=True)
        # the experiment's folder is the one holding its config.yaml (written there by the parent)
        run_fold(cfg, load_clipset(cfg.data), fold, Path(config_path).parent, complexity)
        return 0
    except AscError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        close_interrupted_wandb_run(130)
        print("interrupted: the last checkpoint is kept", file=sys.stderr)
        return 130
    except SystemExit as e:
        if type(e).__name__ == "SIGTERMException":
            close_interrupted_wandb_run(143)
            print("stopped by SIGTERM: the last checkpoint is kept", file=sys.stderr)
            return 143
        raise


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "fold":
        sys.exit("usage: python -m asc.parallel fold CONFIG_YAML FOLD COMPLEXITY_JSON (started by asc cv)")
    sys.exit(fold_main(sys.argv[2:]))
