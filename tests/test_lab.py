"""Lab-scale runs: resume after a kill, DDP evaluation, local sweeps."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli_cv import TINY, asc


def test_killed_run_resumes_same_folds_and_wandb_run(tmp_path):
    args = ["cv", "experiment.name=killed", f"output_dir={tmp_path}", "logger.mode=offline",
            *[a for a in TINY if not a.startswith("trainer.max_epochs")], "trainer.max_epochs=25"]
    proc = subprocess.Popen([sys.executable, "-m", "asc.cli", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    fold1 = tmp_path / "killed" / "fold-1"
    deadline = time.time() + 300
    while not (fold1 / "checkpoints" / "last.ckpt").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up
    proc.wait()
    run_id = (fold1 / "wandb_run_id").read_text().strip()
    assert not (fold1 / "result.json").exists()
    results = tmp_path / "killed" / "results.json"
    assert not results.exists() or json.loads(results.read_text())  # never half-written

    again = asc(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "fold 1: resuming from" in again.stdout
    res = json.loads(results.read_text())
    assert [f["fold"] for f in res["folds"]] == [1, 2] and res["complete"]
    first = res["folds"][0]
    assert first["wandb_run_id"] == run_id and first["resumed_from_epoch"] >= 0 and first["epochs"] == 25
    assert res["folds"][1]["resumed_from_epoch"] is None
    from wandb_offline import read_run

    dirs = [d for d in (tmp_path / "killed" / "wandb").glob("offline-run-*") if d.name.endswith(run_id)]
    assert len(dirs) == 2  # the killed run and its continuation share the id
    finished = [read_run(d) for d in dirs]
    finished = [r for r in finished if "test/acc" in r["summary"]]
    assert len(finished) == 1 and finished[0]["run"]["id"] == run_id
    assert finished[0]["summary"]["test/acc"] == pytest.approx(first["test/acc"])


def test_ddp_evaluation_counts_every_clip_once(tmp_path):
    """2 CPU processes with DDP; the test set (9 clips) is not a multiple of 2.  test/acc
    must equal a 1-process evaluation of the same checkpoint."""
    import lightning as L

    from asc.config import load_config
    from asc.data import load_clipset
    from asc.data.datamodule import SceneDataModule
    from asc.module import SceneClassifier

    tiny = [a for a in TINY if not a.startswith("data.synthetic.clips_per_class")] + [
        "data.synthetic.clips_per_class=5", "trainer.max_epochs=2"]
    proc = asc("train", "experiment.name=ddp", f"output_dir={tmp_path}", "logger.mode=offline", *tiny,
               "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    row = json.loads((tmp_path / "ddp" / "results.json").read_text())["folds"][0]
    assert row["n_test"] == 9
    assert round(row["test/acc"] * 9, 4) == round(row["test/acc"] * 9)  # k/9, not k/10 (no padding)

    cfg = load_config(overrides=[*tiny, "trainer.accelerator=cpu"])
    model = SceneClassifier.load_from_checkpoint(row["best_checkpoint"], map_location="cpu", weights_only=True)
    dm = SceneDataModule(load_clipset(cfg.data), 1, cfg.data)
    single = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                       enable_model_summary=False).test(model, dm, verbose=False)[0]
    assert single["test/acc"] == pytest.approx(row["test/acc"], abs=1e-6)
    assert single["test/macro_f1"] == pytest.approx(row["test/macro_f1"], abs=1e-6)
    runs = list((tmp_path / "ddp" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # the fold (rank 0 only) and the aggregate


def test_local_sweep_writes_ranked_table(tmp_path):
    sweep = tmp_path / "grid.yaml"
    sweep.write_text("""
program: asc
name: grid
method: grid
metric: {name: mean/test/acc, goal: maximize}
parameters:
  model.variant: {values: [stap, mean]}
  augment.mix: {values: [bc, none]}
command: ["${env}", asc, cv, logger.mode=disabled, "${args_no_hyphens}"]
""")
    started = time.time()
    proc = asc("sweep", str(sweep), "--local", f"output_dir={tmp_path}/runs", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"local 2x2 sweep: {time.time() - started:.1f} s")
    md = (tmp_path / "runs" / "grid" / "sweep.md").read_text().splitlines()
    assert md[0].startswith("| rank | model.variant | augment.mix | mean/test/acc (%)") and len(md) == 6
    import csv

    rows = list(csv.DictReader(open(tmp_path / "runs" / "grid" / "sweep.csv")))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    accs = [float(r["mean/test/acc mean"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    assert {(r["model.variant"], r["augment.mix"]) for r in rows} == {
        ("stap", "bc"), ("stap", "none"), ("mean", "bc"), ("mean", "none")}
    for r in rows:
        res = json.loads((Path(r["experiment"]) / "results.json").read_text())
        assert res["mean"]["test/acc"] == pytest.approx(float(r["mean/test/acc mean"]), abs=1e-4)
        assert res["config"]["model"]["variant"] == r["model.variant"]
        assert res["config"]["augment"]["mix"] == r["augment.mix"]


def test_sweep_errors(tmp_path):
    bad = tmp_path / "bayes.yaml"
    bad.write_text("method: bayes\nmetric: {name: mean/test/acc}\nparameters: {seed: {values: [0]}}\n")
    proc = asc("sweep", str(bad), "--local", cwd=tmp_path)
    assert proc.returncode == 2 and "use grid or random" in proc.stderr
    proc = asc("sweep", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "wandb sweep" in proc.stderr
