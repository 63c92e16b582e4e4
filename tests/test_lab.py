"""Lab-scale runs: resume after a kill, DDP evaluation, local sweeps."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from asc.errors import AscError
from helpers.cli import TINY, asc
from helpers.wandb_offline import read_run


@pytest.mark.slow
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
    dirs = [d for d in (tmp_path / "killed" / "wandb").glob("offline-run-*") if d.name.endswith(run_id)]
    assert len(dirs) == 2  # the killed run and its continuation share the id
    finished = [read_run(d) for d in dirs]
    finished = [r for r in finished if "test/acc" in r["summary"]]
    assert len(finished) == 1 and finished[0]["run"]["id"] == run_id
    assert finished[0]["summary"]["test/acc"] == pytest.approx(first["test/acc"])


@pytest.mark.slow
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
    args = ("train", "experiment.name=ddp", f"output_dir={tmp_path}", "logger.mode=offline", *tiny,
            "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp")
    proc = asc(*args, cwd=tmp_path)
    if proc.returncode < 0 and "terminate called without an active exception" in proc.stderr:
        # known, rare (1 run in 17 under pytest here, never reproduced from a shell): a rank
        # of the 2-process gloo run aborts in C++; one retry in a fresh folder, any other
        # failure fails the test
        tmp_path = tmp_path / "retry"
        tmp_path.mkdir()
        proc = asc(*args[:2], f"output_dir={tmp_path}", *args[3:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    row = json.loads((tmp_path / "ddp" / "results.json").read_text())["folds"][0]
    assert row["n_test"] == 9
    assert round(row["test/acc"] * 9, 4) == round(row["test/acc"] * 9)  # k/9, not k/10 (no padding)

    cfg = load_config(overrides=[*tiny, "trainer.accelerator=cpu"])
    model = SceneClassifier.load_from_checkpoint(row["best_checkpoint"], map_location="cpu", weights_only=True)
    dm = SceneDataModule(load_clipset(cfg.data), 1, cfg)
    single = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                       enable_model_summary=False).test(model, dm, verbose=False)[0]
    assert single["test/acc"] == pytest.approx(row["test/acc"], abs=1e-6)
    assert single["test/macro_f1"] == pytest.approx(row["test/macro_f1"], abs=1e-6)
    # band statistics: each rank fitted its half of the training clips and the sums were added
    # across ranks, so the checkpoint holds those of all of them, as one process fits them
    stored = torch.load(row["best_checkpoint"], map_location="cpu", weights_only=True)["SceneDataModule"]["band_stats"]
    assert dm.pipeline.fitted and bool(stored["fitted"])
    torch.testing.assert_close(stored["mean"], dm.pipeline.norm.mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stored["std"], dm.pipeline.norm.std, rtol=1e-5, atol=1e-5)
    runs = list((tmp_path / "ddp" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # the fold (rank 0 only) and the aggregate


@pytest.mark.slow
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
    assert "ranks its runs by the test metric 'mean/test/acc'" in proc.stderr
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

    # a pinned part of the sweep runs (here: skips) only its runs; the table keeps the whole grid
    proc = asc("sweep", str(sweep), "--local", "model.variant=mean", f"output_dir={tmp_path}/runs", *TINY,
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("=== sweep grid: run") == 2 and proc.stdout.count("already finished") == 4
    again = list(csv.DictReader(open(tmp_path / "runs" / "grid" / "sweep.csv")))
    assert sorted((r["model.variant"], r["augment.mix"], r["mean/test/acc mean"]) for r in again) == sorted(
        (r["model.variant"], r["augment.mix"], r["mean/test/acc mean"]) for r in rows)  # ties may swap places


def test_seeds_are_pooled_per_configuration(tmp_path):
    from asc.sweep import pool_seeds, write_tables

    metric = "mean/test/acc"

    def row(seed, variant, accs):
        return {"seed": seed, "model.variant": variant, metric: float(np.mean(accs)),
                f"{metric} std": float(np.std(accs)), "macro_f1": float(np.mean(accs)) - 0.01,
                "macro_f1 std": 0.0, "folds": len(accs), "fold_values": accs,
                "fold_macro_f1": [a - 0.01 for a in accs], "experiment": f"x/{seed}-{variant}"}

    rows = [row(0, "stap", [0.9, 1.0]), row(1, "stap", [0.7, 0.8]), row(0, "mean", [0.6, 0.6]),
            row(1, "mean", [0.9, 0.9])]
    pooled = pool_seeds(rows, ["seed", "model.variant"], metric)
    assert [p["model.variant"] for p in pooled] == ["stap", "mean"]  # 0.85 > 0.75
    stap, mean = pooled
    assert stap["seeds"] == [0, 1] and stap["results"] == 4
    assert stap[metric] == pytest.approx(0.85) and stap[f"{metric} std"] == pytest.approx(np.std([.9, 1, .7, .8]))
    assert stap[f"{metric} seed std"] == pytest.approx(0.1)  # per-seed means 0.95 and 0.75
    assert mean[f"{metric} seed std"] == pytest.approx(0.15) and mean["macro_f1"] == pytest.approx(0.74)
    assert pool_seeds(rows[:1] + rows[2:3], ["seed", "model.variant"], metric) == []  # one seed: nothing to pool
    assert pool_seeds(rows, ["model.variant"], metric) == []  # seed is not a parameter
    lowest_first = pool_seeds(rows, ["seed", "model.variant"], metric, goal="minimize")
    assert [p["model.variant"] for p in lowest_first] == ["mean", "stap"]  # a loss: lower is better

    write_tables(rows, ["seed", "model.variant"], metric, tmp_path, pooled)
    md = (tmp_path / "sweep.md").read_text()
    assert "| 1 | stap | 0,1 | 85.00 ± 11.18 | 10.00 | 84.00 ± 11.18 | 4 |" in md
    import csv

    over = list(csv.DictReader(open(tmp_path / "sweep_over_seeds.csv")))
    assert [(r["model.variant"], r["seeds"], r[f"{metric} mean"]) for r in over] == [
        ("stap", "0 1", "0.8500"), ("mean", "0 1", "0.7500")]


def test_overrides_naming_a_parameter_pin_it():
    from asc.sweep import expand, load_sweep, pin_parameters, run_name

    sweep = load_sweep(Path(__file__).parents[1] / "experiments" / "sweeps" / "accuracy_study.yaml")
    assert len(expand(sweep)) == 36
    pinned, rest = pin_parameters(sweep, ["seed=1", "trainer.max_epochs=3", "model.variant=stap"])
    assert rest == ["trainer.max_epochs=3"]
    runs = expand(pinned)
    assert runs == [{"seed": 1, "model.variant": "stap", "augment.mix": "bc"},
                    {"seed": 1, "model.variant": "stap", "augment.mix": "none"}]
    # the same experiment names as in the full sweep, so a later full run skips them
    full = {run_name(sweep["name"], a) for a in expand(sweep)}
    assert {run_name(pinned["name"], a) for a in runs} <= full
    assert sweep["parameters"]["seed"] == {"values": [0, 1, 2]}  # the loaded sweep is left as it was


def test_a_loss_metric_is_not_printed_as_a_percentage(tmp_path):
    from asc.sweep import write_tables

    metric = "mean/val/loss"
    rows = [{"optim.lr": 0.01, metric: 0.5, f"{metric} std": 0.1, "macro_f1": 0.8, "macro_f1 std": 0.0,
             "folds": 2, "experiment": "x/a"}]
    write_tables(rows, ["optim.lr"], metric, tmp_path)
    md = (tmp_path / "sweep.md").read_text()
    assert "| mean/val/loss |" in md and "| 0.5000 ± 0.1000 |" in md and "(%)" not in md.split("|")[3]
    from asc.sweep_tables import metric_text

    assert metric_text(rows[0], metric) == "0.5000 ± 0.1000"
    assert metric_text({"mean/val/acc": 0.9, "mean/val/acc std": 0.01}, "mean/val/acc") == "90.00 ± 1.00 %"


def test_sweep_errors(tmp_path):
    from asc.sweep import load_sweep

    bad = tmp_path / "bayes.yaml"
    bad.write_text("method: bayes\nmetric: {name: mean/test/acc}\nparameters: {seed: {values: [0]}}\n")
    proc = asc("sweep", str(bad), "--local", cwd=tmp_path)
    assert proc.returncode == 2 and "use grid or random" in proc.stderr
    proc = asc("sweep", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "wandb sweep" in proc.stderr
    misspelt = tmp_path / "goal.yaml"
    misspelt.write_text("metric: {name: mean/val/loss, goal: minimise}\nparameters: {seed: {values: [0]}}\n")
    with pytest.raises(AscError, match="goal 'minimise' is neither maximize nor minimize"):
        load_sweep(misspelt)


def test_a_sweep_ranked_by_a_test_metric_says_so(tmp_path, capsys):
    """Ranking by mean/test/acc is allowed but named as choosing on test folds; the shipped
    sweep files rank by validation and get no such notice."""
    from asc.sweep import load_sweep

    on_test = tmp_path / "on_test.yaml"
    on_test.write_text("metric: {name: mean/test/acc, goal: maximize}\nparameters: {seed: {values: [0]}}\n")
    load_sweep(on_test)
    err = capsys.readouterr().err
    assert "notice:" in err and "'mean/test/acc'" in err and "mean/val/acc" in err
    for shipped in sorted((Path(__file__).resolve().parents[1] / "experiments" / "sweeps").glob("*.yaml")):
        assert load_sweep(shipped)["metric"]["name"].startswith("mean/val/")
    assert capsys.readouterr().err == ""


def test_a_null_sweep_value_reaches_the_config_as_null():
    """`wandb agent` passes a null value as `key=None`; a local sweep passes `key=null`."""
    from asc.config import load_config
    from asc.sweep import run_name

    for value in ("None", "null"):
        assert load_config(overrides=[f"data.segment_seconds={value}"]).data.segment_seconds is None
    assert run_name("seg", {"data.segment_seconds": None}).startswith("seg_segment_seconds=null-")
    from asc.sweep import pin_parameters

    sweep = {"name": "seg", "parameters": {"data.segment_seconds": {"values": [None, 4.0]}}}
    for value in ("None", "null"):  # pinned either way: the full sweep's run name
        pinned, _ = pin_parameters(sweep, [f"data.segment_seconds={value}"])
        assert pinned["parameters"]["data.segment_seconds"] == {"value": None}


def _csv_rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fold_result(exp_dir: Path, fold: int = 1) -> dict:
    return json.loads((exp_dir / f"fold-{fold}" / "result.json").read_text())


@pytest.mark.slow
def test_last_checkpoint_holds_this_epochs_validation_choice(tmp_path):
    """best.ckpt is updated before last.ckpt is written, so a fold resumed from last.ckpt
    knows the choice of the epoch it resumes from.  Killed after its last epoch and before
    result.json (deleted here), the fold is tested again on the same validation choice."""
    import torch

    args = ["cv", "experiment.name=order", f"output_dir={tmp_path}", "logger.mode=disabled", *TINY,
            "cv.folds=[1]", "cv.checkpoint=best"]
    first = asc(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    fold = tmp_path / "order" / "fold-1"
    states = torch.load(fold / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["callbacks"]
    best_state = next(v for k, v in states.items() if "val/select" in k)
    assert Path(best_state["best_model_path"]).name == "best.ckpt"
    before = _fold_result(tmp_path / "order")
    (fold / "result.json").unlink()
    again = asc(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    after = _fold_result(tmp_path / "order")
    assert after["checkpoint"] == "best" and after["best_epoch"] == before["best_epoch"] == 1
    assert after["test/acc"] == before["test/acc"]


@pytest.mark.slow
def test_a_narrower_run_keeps_the_other_folds_in_results_json(tmp_path):
    """asc train (the first fold) after asc cv over two folds: results.json still holds both
    folds; a fold started but not finished makes it incomplete."""
    args = [f"output_dir={tmp_path}", "experiment.name=keep", "logger.mode=disabled", *TINY]
    assert asc("cv", *args, cwd=tmp_path).returncode == 0
    results = tmp_path / "keep" / "results.json"
    both = json.loads(results.read_text())
    again = asc("train", *args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    res = json.loads(results.read_text())
    assert [f["fold"] for f in res["folds"]] == [1, 2] and res["complete"]
    assert res["mean"]["test/acc"] == pytest.approx(both["mean"]["test/acc"])
    (tmp_path / "keep" / "fold-2" / "result.json").unlink()  # as if fold 2 had been killed
    assert asc("train", *args, cwd=tmp_path).returncode == 0
    res = json.loads(results.read_text())
    assert [f["fold"] for f in res["folds"]] == [1] and not res["complete"]


@pytest.mark.slow
def test_a_fold_trained_without_a_test_is_tested_when_cv_test_turns_on(tmp_path):
    """cv.test=false over 2 folds, then cv.test=true: the checkpoint chosen then is tested,
    without training more; metrics.csv keeps the training rows even where last.ckpt is gone,
    and a result.json from before cv.checkpoint existed (no tested_checkpoint) works.  Testing
    fold 1 only leaves results.json incomplete (fold 2 untested) with fold 1's test mean."""
    args = ["cv", f"output_dir={tmp_path}", "experiment.name=later", "logger.mode=disabled", *TINY,
            "cv.checkpoint=best"]
    assert asc(*args, "cv.test=false", cwd=tmp_path).returncode == 0
    fold = tmp_path / "later" / "fold-1"
    untested = _fold_result(tmp_path / "later")
    assert "test/acc" not in untested
    old_style = {k: v for k, v in untested.items() if k not in ("tested_checkpoint", "checkpoint", "tested_epoch")}
    (fold / "result.json").write_text(json.dumps(old_style))
    (fold / "checkpoints" / "last.ckpt").unlink()
    history = _csv_rows(fold / "metrics.csv")
    tested = asc(*args, "cv.test=true", "cv.folds=[1]", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert "trained earlier without a test (cv.test=false); testing its checkpoint now" in tested.stdout
    row = _fold_result(tmp_path / "later")
    assert 0 <= row["test/acc"] <= 1 and (fold / "test_predictions.csv").is_file()
    assert row["epochs"] == untested["epochs"] and row["tested_epoch"] == untested["tested_epoch"]
    assert row["checkpoint"] == "best" and row["val/acc"] == pytest.approx(untested["val/acc"])
    kept = _csv_rows(fold / "metrics.csv")  # the test adds columns: compare the training rows' own
    assert [{k: r[k] for k in history[0]} for r in kept[:len(history)]] == history and len(kept) > len(history)
    res = json.loads((tmp_path / "later" / "results.json").read_text())
    assert [f["fold"] for f in res["folds"]] == [1] and not res["complete"]
    assert res["mean"]["test/acc"] == pytest.approx(row["test/acc"])
    assert asc(*args, "cv.test=true", cwd=tmp_path).returncode == 0
    res = json.loads((tmp_path / "later" / "results.json").read_text())
    assert [f["fold"] for f in res["folds"]] == [1, 2] and res["complete"] and "test/acc" in res["mean"]


