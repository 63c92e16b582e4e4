"""Lab features: early stopping from the config, one line per epoch in log files, the
reproducibility record and cross-fold summary in results.json, `asc config show`."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from asc.config import load_config
from asc.errors import AscError
from helpers.cli import TINY, asc


def test_early_stopping_lines_per_epoch_and_results_record(tmp_path):
    from helpers.wandb_offline import read_run

    tiny = [a for a in TINY if not a.startswith(("trainer.max_epochs", "trainer.enable_progress_bar"))]
    proc = asc("cv", "experiment.name=es", f"output_dir={tmp_path}", "logger.mode=offline", *tiny,
               "trainer.max_epochs=30", "early_stopping.monitor=val/loss", "early_stopping.patience=2",
               "early_stopping.min_delta=100", cwd=tmp_path)  # no change of val/loss counts: stops after 3 epochs
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "es" / "results.json").read_text())
    assert [f["epochs"] for f in res["folds"]] == [3, 3]  # 3 epochs run of 30
    # stdout is a pipe, not a terminal: one line per epoch, no progress bar
    lines = [l for l in proc.stdout.splitlines() if l.startswith("fold 1 epoch")]
    assert [l.split(":")[0] for l in lines] == ["fold 1 epoch 1/30", "fold 1 epoch 2/30", "fold 1 epoch 3/30"]
    assert "val/acc" in lines[0] and "train/loss" in lines[0] and "\r" not in proc.stdout + proc.stderr
    # cross-fold: confusion matrix summed over folds, per-class accuracy mean ± std
    cm = np.sum([f["confusion_matrix"] for f in res["folds"]], axis=0)
    assert res["confusion_matrix_sum"] == cm.tolist() and cm.sum() == 18
    c = res["class_names"][0]
    accs = [f["per_class_acc"][c] for f in res["folds"]]
    assert res["per_class_acc"]["mean"][c] == pytest.approx(np.mean(accs))
    assert res["per_class_acc"]["std"][c] == pytest.approx(np.std(accs))
    # reproducibility record
    rec = res["reproducibility"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1]).stdout.strip()
    assert rec["git"]["commit"] == head and isinstance(rec["git"]["dirty"], bool)
    assert rec["packages"]["torch"] and rec["packages"]["lightning"] and rec["threads"]["torch"] >= 1
    assert rec["device"]["accelerator"] == "auto" and rec["data"]["n_clips"] == 18
    assert len(rec["data"]["fingerprint"]) == 16
    from asc.data import load_clipset
    from asc.repro import data_fingerprint

    assert data_fingerprint(load_clipset(load_config(overrides=TINY).data))["fingerprint"] == rec["data"]["fingerprint"]
    other = load_clipset(load_config(overrides=[*TINY, "data.synthetic.seed=1"]).data)
    assert data_fingerprint(other)["fingerprint"] != rec["data"]["fingerprint"]
    # the aggregate W&B run: summed confusion matrix (picture and interactive) and per-class stats
    (agg,) = [r for r in map(read_run, (tmp_path / "es" / "wandb").glob("offline-run-*"))
              if r["run"]["job_type"] == "aggregate"]
    keys = {k.split("/_")[0].rsplit("/", 1)[0] for k in agg["history_keys"]}
    assert {"test/confusion_matrix_sum", "test/confusion_matrix_table"} <= keys
    assert f"mean/test/acc/{c}" in agg["summary"] and f"std/test/acc/{c}" in agg["summary"]


def test_early_stopping_only_on_validation_metrics():
    with pytest.raises(AscError, match="early_stopping.monitor='test/acc' is not allowed"):
        load_config(overrides=["early_stopping.monitor=test/acc"])
    with pytest.raises(AscError, match="needs a validation split"):
        load_config(overrides=["early_stopping.monitor=val/acc", "data.val_fraction=0"])


def test_config_show(tmp_path):
    proc = asc("config", "show", "--config", str(Path(__file__).parents[1] / "experiments" / "demo.yaml"),
               "model.variant=cnn", "early_stopping.monitor=val/acc", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert "  name: cnn  # crnn | cnn" in out and "  max_epochs: 80  # lightning.Trainer argument" in out
    assert any(l.startswith("  monitor: val/acc  # null: off; a validation metric") for l in out)
    assert any(l.startswith("  sample_rate: 16000  # Hz") for l in out)
    import yaml

    assert yaml.safe_load(proc.stdout)["model"]["name"] == "cnn"  # still YAML: the documentation is comments
    assert not list(tmp_path.iterdir())  # nothing written
    proc = asc("config", "show", "model.pooling=nope", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: model.pooling='nope'")
