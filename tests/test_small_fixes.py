"""Smaller items: checkpoints that are not, cv.folds=1, the W&B fold run's config and
warnings, validation pictures, the decoded-audio cache's place."""

import json
from pathlib import Path

import pytest
import torch

from asc.config import load_config
from asc.errors import AscError
from helpers.cli import TINY, asc


def test_text_file_or_pickled_objects_as_checkpoint(tmp_path):
    from asc.predict import load_model

    (tmp_path / "notes.ckpt").write_text("epoch 12: acc 0.93\nlooks good\n")
    with pytest.raises(AscError, match=r"is not a loadable weights-only PyTorch checkpoint: "
                       r"it is a text file \(starting 'epoch 12"):
        load_model(tmp_path / "notes.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(AscError, match="the file is empty"):
        load_model(tmp_path / "empty.ckpt")
    torch.save({"state_dict": {}, "thing": Path("x")}, tmp_path / "obj.ckpt")  # a zip holding a pickled object
    with pytest.raises(AscError, match="holds Python objects beyond tensors"):
        load_model(tmp_path / "obj.ckpt")
    proc = asc("predict", "--checkpoint", str(tmp_path / "notes.ckpt"), str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "text file" in proc.stderr
    assert "(101)" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_one_fold_as_a_number(tmp_path):
    assert list(load_config(overrides=["cv.folds=1"]).cv.folds) == [1]
    f = tmp_path / "c.yaml"
    f.write_text("cv: {folds: 2}\n")
    assert list(load_config(f).cv.folds) == [2]


def test_user_cache_dir_is_the_default(tmp_path, monkeypatch):
    from asc.data import load_clipset
    from helpers.audio_trees import make_folder

    make_folder(tmp_path / "data", per_class=2)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    clips = load_clipset(load_config(overrides=["data.name=folder", f"data.root={tmp_path / 'data'}",
                                                "data.folder_folds=2"]).data)
    assert len(clips) == 6
    assert list((tmp_path / "xdg" / "asc").glob("*.f16")) and not (tmp_path / "data" / ".asc_cache").exists()


def test_fold_run_config_once_no_anonymous_warning_and_val_pictures(tmp_path):
    from asc.data import load_clipset
    from asc.data.datamodule import SceneDataModule
    from helpers.wandb_offline import read_run

    proc = asc("cv", "experiment.name=one", f"output_dir={tmp_path}", "logger.mode=offline", "cv.folds=1",
               "logger.attention_every_n_epochs=1", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "anonymous" not in proc.stderr + proc.stdout
    res = json.loads((tmp_path / "one" / "results.json").read_text())
    assert [f["fold"] for f in res["folds"]] == [1]
    runs = [read_run(d) for d in (tmp_path / "one" / "wandb").glob("offline-run-*")]
    (fold,) = [r for r in runs if r["run"]["job_type"] == "fold-1"]
    assert fold["config"]["model"]["pooling"] == "stap" and fold["config"]["fold"] == 1
    assert "cfg" not in fold["config"] and "class_names" not in fold["config"]  # the config once, not twice
    # attention at test time as a W&B Table: one row per picked clip (one per class)
    run_dir = next(d for d in (tmp_path / "one" / "wandb").glob("offline-run-*")
                   if read_run(d)["run"]["job_type"] == "fold-1")
    (table_file,) = (run_dir / "files" / "media" / "table").rglob("attention_table*.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["fold", "clip", "true", "predicted", "probability", "attention", "audio",
                                "event_score"]
    assert len(table["data"]) == 3 and {r[2] for r in table["data"]} == {"up_sweep", "down_sweep", "rising_pair"}
    assert all(r[0] == 1 and r[7] is not None and r[7] > 0 for r in table["data"])
    # pictures during training are of validation clips; at test time of test clips
    cfg = load_config(overrides=[*TINY])
    clips = load_clipset(cfg.data)
    dm = SceneDataModule(clips, 1, cfg)
    stems = lambda idx: sorted(Path(clips.items[i]).stem for i in idx)  # noqa: E731
    pics = tmp_path / "one" / "fold-1" / "attention"
    stem = lambda png: "-".join(png.stem.split("-")[1:-2])  # noqa: E731 - <tag>-<stem>-<class>-<hash>.png
    epoch = sorted(stem(p) for p in pics.glob("epoch001-*.png"))
    test = sorted(stem(p) for p in pics.glob("test-*.png"))
    assert epoch and set(epoch) <= set(stems(dm.val_idx)) and not set(epoch) & set(stems(dm.test_idx))
    assert test and set(test) <= set(stems(dm.test_idx))


def test_device_out_of_memory_is_one_error_naming_the_keys_to_lower(tmp_path, monkeypatch, capsys):
    import asc.experiment
    from asc.cli import main

    def out_of_memory(cfg, only_first=False):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")

    monkeypatch.setattr(asc.experiment, "run_cv", out_of_memory)
    assert main(["cv", f"output_dir={tmp_path}", "logger.mode=disabled", *TINY]) == 1
    err = capsys.readouterr().err
    assert "ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB" in err
    assert "data.batch_size" in err and "data.on_device=off" in err and "run the same command again" in err
    assert "Traceback" not in err
    monkeypatch.setattr(asc.experiment, "run_cv", lambda cfg, only_first=False: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # any other failure is not dressed up as one
        main(["cv", f"output_dir={tmp_path}", "logger.mode=disabled", *TINY])


def test_the_resume_hint_names_the_asc_that_ran(tmp_path, monkeypatch):
    from asc.cli import _command_line

    exe = tmp_path / "venv" / "bin" / "asc"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))  # make demo: .venv/bin/asc, not on the PATH
    monkeypatch.setattr("sys.argv", [str(exe), "cv", "--config", "experiments/demo.yaml", "seed=1"])
    assert _command_line() == f"{exe} cv --config experiments/demo.yaml seed=1"
    monkeypatch.setenv("PATH", str(exe.parent))  # an activated venv: plain asc
    assert _command_line() == "asc cv --config experiments/demo.yaml seed=1"
    monkeypatch.setattr("sys.argv", ["/src/asc/cli.py", "cv", "a=b c"])  # python -m asc.cli
    assert _command_line() == "asc cv 'a=b c'"


def test_where_the_wandb_runs_go(tmp_path, monkeypatch):
    from asc.tracking import where_runs_go

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # not logged in
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config(None, ["logger.project=lab", "logger.entity=team"])
    wb = tmp_path / "x" / "wandb"
    assert where_runs_go(cfg, tmp_path / "x") == (f"W&B: offline (not logged in), runs in {wb}; "
                                                  f"upload later with `wandb sync {wb}/offline-run-*`")
    monkeypatch.setenv("WANDB_MODE", "online")
    assert where_runs_go(cfg, tmp_path / "x") == "W&B: online, project team/lab"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert where_runs_go(cfg, tmp_path / "x") is None
