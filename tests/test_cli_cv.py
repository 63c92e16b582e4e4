"""End to end: a one-epoch `asc cv` on a tiny config, as a user runs it."""

import json
from pathlib import Path

import pytest

from helpers.audio_trees import make_folder
from helpers.cli import TINY, asc
from helpers.wandb_offline import read_run


@pytest.fixture(scope="module")
def tiny_cv(tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    proc = asc("cv", "experiment.name=tiny", f"output_dir={root}", "logger.mode=offline",
               "cv.bag_of_frames=true", "logger.attention_every_n_epochs=1", *TINY, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "tiny", proc


@pytest.mark.slow
def test_results_json(tiny_cv):
    exp, proc = tiny_cv
    res = json.loads((exp / "results.json").read_text())
    assert [f["fold"] for f in res["folds"]] == [1, 2]
    for f in res["folds"]:
        assert 0 <= f["test/acc"] <= 1 and 0 <= f["test/macro_f1"] <= 1 and 0 <= f["bof/acc"] <= 1
        assert f["n_test"] == 9 and f["n_train"] + f["n_val"] == 9 and f["n_val"] == 3
        assert len(f["confusion_matrix"]) == 3 and sum(map(sum, f["confusion_matrix"])) == 9
        # each fold's scores as it ends, not only in the table at the end
        assert (f"[{f['fold']}/2] fold {f['fold']}: finished in {f['seconds']:.0f} s "
                f"(val/acc {100 * f['val/acc']:.2f} %, test/acc {100 * f['test/acc']:.2f} %)") in proc.stdout
    mean = sum(f["test/acc"] for f in res["folds"]) / 2
    assert res["mean"]["test/acc"] == pytest.approx(mean) and "test/acc" in res["std"]
    assert res["complete"] is True
    assert "mean±std" in proc.stdout and "bag-of-frames" in proc.stdout
    # the network described once, from results.json's complexity, instead of Lightning's table per fold
    c = res["complexity"]
    assert proc.stdout.count(f"model crnn/stap: {c['params']:,d} parameters, ") == 1 and c["params"] > 0
    assert "Trainable params" not in proc.stdout + proc.stderr
    # selection on validation: the chosen epoch and its validation metrics, per-clip predictions
    for f in res["folds"]:
        assert 1 <= f["best_epoch"] <= f["epochs"] and 0 <= f["val/acc"] <= 1 and f["val/loss"] > 0
        # cv.checkpoint=auto: the test scored the last checkpoint; the validation choice is recorded
        assert f["checkpoint"] == "last" and f["tested_epoch"] == f["epochs"]
        assert f["tested_checkpoint"].endswith("last.ckpt") and f["best_checkpoint"].endswith("best.ckpt")
        lines = (exp / f"fold-{f['fold']}" / "test_predictions.csv").read_text().splitlines()
        assert len(lines) == 1 + f["n_test"] and lines[0].startswith("clip,true,predicted,p_")
    assert res["mean"]["val/acc"] == pytest.approx(sum(f["val/acc"] for f in res["folds"]) / 2)
    # model complexity: the checkpoint's network has exactly the counted parameters
    import torch

    state = torch.load(exp / "fold-1" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    n_params = sum(v.numel() for k, v in state["state_dict"].items() if k.startswith("model.")
                   and "running_" not in k and "num_batches" not in k)
    assert res["complexity"]["params"] == n_params and res["complexity"]["macs_per_second"] > 0


@pytest.mark.slow
def test_run_artifacts(tiny_cv):
    exp, _ = tiny_cv
    assert "pooling: stap" in (exp / "config.yaml").read_text()
    for k in (1, 2):
        fold = exp / f"fold-{k}"
        assert (fold / "checkpoints" / "best.ckpt").is_file() and (fold / "checkpoints" / "last.ckpt").is_file()
        pngs = list((fold / "attention").glob("test-*.png"))
        assert len(pngs) == 3  # one clip per class
        assert len(list((fold / "attention").glob("epoch001-*.png"))) == 3  # attention_every_n_epochs=1
        assert pngs[0].read_bytes()[:4] == b"\x89PNG"
        assert (fold / "confusion.png").is_file() and (fold / "metrics.csv").is_file()


@pytest.mark.slow
def test_wandb_offline_runs(tiny_cv):
    """What W&B itself wrote: one run per fold plus an aggregate, all in the experiment's
    group, each fold's summary holding its test metrics, images as files."""
    exp, _ = tiny_cv
    runs = {}
    for run_dir in sorted((exp / "wandb").glob("offline-run-*")):
        run = read_run(run_dir)
        runs[run["run"]["job_type"]] = (run_dir, run)
    assert set(runs) == {"fold-1", "fold-2", "aggregate"}
    said = [line for line in tiny_cv[1].stdout.splitlines() if line.startswith("W&B:")]
    wb = exp / "wandb"
    assert said == [f"W&B: offline, runs in {wb}; upload later with `wandb sync {wb}/offline-run-*`"]
    assert runs["fold-1"][1]["run"]["tags"] == [] and runs["fold-1"][1]["run"]["name"] == "tiny/fold-1"
    for k in (1, 2):
        run_dir, run = runs[f"fold-{k}"]
        result = json.loads((exp / f"fold-{k}" / "result.json").read_text())
        assert run["run"]["group"] == "tiny" and run["run"]["id"] == result["wandb_run_id"]
        assert run["summary"]["test/acc"] == pytest.approx(result["test/acc"])
        assert run["summary"]["test/macro_f1"] == pytest.approx(result["test/macro_f1"])
        assert run["summary"]["n_test"] == 9 and "test/acc/up_sweep" in run["summary"]
        assert {"train/loss_epoch", "val/loss", "val/acc", "val/macro_f1", "train/lr"} <= run["history_keys"]
        assert any(k.startswith("val/attention") for k in run["history_keys"])
        assert run["config"]["model"]["pooling"] == "stap" and run["config"]["fold"] == k
        images = list((run_dir / "files" / "media" / "images").rglob("*.png"))
        assert any("attention" in str(p) for p in images) and any("confusion" in str(p) for p in images)
    _, agg = runs["aggregate"]
    assert agg["run"]["group"] == "tiny" and agg["summary"]["n_folds"] == 2
    assert "mean/test/acc" in agg["summary"] and "std/test/acc" in agg["summary"]


@pytest.mark.slow
def test_rerun_skips_finished_folds(tiny_cv, tmp_path):
    exp, _ = tiny_cv
    before = set((exp / "wandb").glob("offline-run-*"))
    proc = asc("cv", "experiment.name=tiny", f"output_dir={exp.parent}", "logger.mode=offline",
               "cv.bag_of_frames=true", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("already finished") == 2
    # no fold trained again; the aggregate run is the same W&B run, updated, not a second line
    added = [read_run(d)["run"] for d in set((exp / "wandb").glob("offline-run-*")) - before]
    assert [r["job_type"] for r in added] == ["aggregate"]
    assert added[0]["id"] == (exp / "aggregate_wandb_run_id").read_text().strip()
    assert {read_run(d)["run"]["id"] for d in before if read_run(d)["run"]["job_type"] == "aggregate"} == {
        added[0]["id"]}


@pytest.mark.slow
def test_changed_config_is_refused(tiny_cv, tmp_path):
    exp, _ = tiny_cv
    proc = asc("cv", "experiment.name=tiny", f"output_dir={exp.parent}", "model.pooling=mean", *TINY, cwd=tmp_path)
    assert proc.returncode == 2 and "different config" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_unknown_fold(tmp_path):
    proc = asc("train", f"output_dir={tmp_path}", "cv.folds=[9]", *TINY, cwd=tmp_path)
    assert proc.returncode == 2 and "fold(s) [9] do not exist" in proc.stderr
    proc = asc("baseline", "cv.folds=[9]", *TINY, cwd=tmp_path)
    assert proc.returncode == 2 and "fold(s) [9] do not exist" in proc.stderr and "Traceback" not in proc.stderr
    proc = asc("cv", f"output_dir={tmp_path}", "cv.folds=[1,2,1]", *TINY, cwd=tmp_path)
    assert proc.returncode == 2 and "names fold(s) [1] more than once" in proc.stderr  # not counted twice


@pytest.mark.slow
def test_folder_of_recordings_end_to_end(tmp_path):
    """`asc cv data.name=folder` on recordings of mixed lengths (1-30 s), rates and channels."""
    data = tmp_path / "recordings"
    make_folder(data, per_class=4, seconds=(1.0, 30.0, 2.5, 7.0))
    proc = asc("cv", "data.name=folder", f"data.root={data}", "data.folder_folds=2", "experiment.name=rec",
               f"output_dir={tmp_path}/runs", "logger.mode=disabled", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "runs" / "rec" / "results.json").read_text())
    assert [f["fold"] for f in res["folds"]] == [1, 2]
    assert all(f["n_test"] == 6 and f["n_train"] + f["n_val"] == 6 for f in res["folds"])


@pytest.mark.slow
def test_data_check_report(tmp_path, data_tree):
    ok = data_tree("folder", per_class=3)
    proc = asc("data", "check", "data.name=folder", f"data.root={ok}", "data.folder_folds=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "9 files, 3 classes, 3 folds" in out and "problems: none" in out
    assert "sample rates:" in out and "channels:" in out and "durations: min 1.00 s" in out
    assert any(l.startswith("total") and l.split()[1:] == ["9", "3", "3", "3"] for l in out.splitlines())
    bad = data_tree("bad_files")
    proc = asc("data", "check", "data.name=folder", f"data.root={bad}", cwd=tmp_path)
    assert proc.returncode == 1 and "problems (5):" in proc.stdout and "silent" in proc.stdout
    proc = asc("data", "check", "data.name=folder", f"data.root={tmp_path / 'missing'}", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: data.root") and "Traceback" not in proc.stderr


def test_synth_writes_wavs_that_the_file_loaders_read(tmp_path):
    proc = asc("synth", "--out", str(tmp_path / "syn"), "data.synthetic.n_classes=2",
               "data.synthetic.clips_per_class=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "syn" / "meta.csv").read_text().splitlines()
    assert lines[0] == "filename,label,fold,events" and len(lines) == 5
    assert len(list((tmp_path / "syn" / "audio").glob("*.wav"))) == 4
    import csv

    row = next(csv.DictReader(open(tmp_path / "syn" / "meta.csv")))
    assert json.loads(row["events"])[0]["kind"] == "class"
    from asc.config import load_config
    from asc.data import load_clipset

    clips = load_clipset(load_config(overrides=["data.name=esc50", f"data.root={tmp_path / 'syn'}"]).data)
    assert clips.class_names == ["down_sweep", "up_sweep"] and len(clips) == 4 and sorted(clips.folds) == [1, 2]
    assert [clips.class_names[l] for l in clips.labels] == [Path(i).stem.rsplit("_", 1)[0] for i in clips.items]
