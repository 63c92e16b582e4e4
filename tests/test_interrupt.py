"""Ctrl-C: a line saying how to resume, exit 130; the resumed fold appends to metrics.csv
and continues its W&B run's step count."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

from helpers.cli import TINY, asc, ctrl_c_as_in_a_terminal


def _steps(run_dir):
    from helpers.wandb_offline import records

    (log,) = run_dir.glob("run-*.wandb")
    return [r.history.step.num for r in records(log) if r.WhichOneof("record_type") == "history"]


def _has_val_row(path) -> bool:
    try:
        with open(path) as f:
            return any(r.get("val/acc") for r in csv.DictReader(f))
    except OSError:
        return False


def test_ctrl_c_says_how_to_resume_and_the_resumed_fold_continues(tmp_path):
    args = ["cv", "experiment.name=int", f"output_dir={tmp_path}", "logger.mode=offline", "cv.folds=[1]",
            *[a for a in TINY if not a.startswith("trainer.max_epochs")], "trainer.max_epochs=12"]
    proc = subprocess.Popen([sys.executable, "-m", "asc.cli", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=ctrl_c_as_in_a_terminal)
    fold = tmp_path / "int" / "fold-1"
    deadline = time.time() + 300
    # wait for the first checkpoint and a validation row on disk (the CSV file can exist
    # before its first rows are flushed)
    while not (fold / "checkpoints" / "last.ckpt").exists() or not _has_val_row(fold / "metrics.csv"):
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    hint = [l for l in err.splitlines() if l.startswith("interrupted:")]
    assert len(hint) == 1 and "run the same command again to resume: asc cv experiment.name=int" in hint[0]
    assert not (fold / "result.json").exists()
    before = list(csv.DictReader(open(fold / "metrics.csv")))
    assert before and {"val/acc", "epoch"} <= set(before[0])

    again = asc(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "fold 1: resuming from" in again.stdout
    rows = list(csv.DictReader(open(fold / "metrics.csv")))
    val_epochs = [int(r["epoch"]) for r in rows if r.get("val/acc")]
    assert val_epochs == list(range(12))  # every epoch once: kept before the interruption, appended after
    resumed = json.loads((fold / "result.json").read_text())["resumed_from_epoch"]
    assert f"({resumed + 1} of 12 epochs done)" in again.stdout  # counted as the progress lines count
    kept = [{k: v for k, v in r.items() if v} for r in before if int(r["epoch"]) <= resumed]
    assert kept and [{k: v for k, v in r.items() if v} for r in rows[: len(kept)]] == kept
    # the same W&B run id in two offline folders; the second goes on counting steps
    run_id = (fold / "wandb_run_id").read_text().strip()
    dirs = sorted(d for d in (tmp_path / "int" / "wandb").glob("offline-run-*") if run_id in d.name)
    assert len(dirs) == 2
    first, second = _steps(dirs[0]), _steps(dirs[1])
    print("W&B steps", first, second)
    assert first and second and min(second) > max(first)  # appended after the first part, nothing overwritten
