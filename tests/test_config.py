import subprocess
import sys

import pytest

from asc.config import load_config
from asc.errors import AscError


def test_defaults_and_overrides(tmp_path):
    cfg = load_config()
    assert cfg.model.pooling == "stap" and cfg.augment.mix == "bc" and cfg.data.name == "synthetic"
    f = tmp_path / "exp.yaml"
    f.write_text("experiment: {name: x}\ntrainer: {max_epochs: 3}\nmodel: {pooling: mean}\n")
    cfg = load_config(f, ["trainer.max_epochs=7", "cv.folds=[1,2]", "data.batch_size=8"])
    assert cfg.experiment.name == "x" and cfg.model.pooling == "mean"
    assert cfg.trainer.max_epochs == 7 and list(cfg.cv.folds) == [1, 2] and cfg.data.batch_size == 8


@pytest.mark.parametrize("overrides, match", [
    (["model.poolin=stap"], r"unknown config key 'model.poolin' .*\(did you mean 'model.pooling'\?\)"),
    (["max_epochs=3"], r"unknown config key 'max_epochs' .*\(did you mean 'trainer.max_epochs'\?\)"),
    (["model.colour=red"], r"unknown config key 'model.colour' in the command line; `asc config show` lists"),
    (["augment.bc=true"], r"unknown config key 'augment.bc' in the command line; "),  # no section suggested
    (["model.pooling=attention"], "model.pooling='attention' is not allowed"),
    (["data.batch_size=abc"], "data.batch_size"),
    (["data.batch_size=0"], "data.batch_size=0 must be a positive"),
    (["trainer.max_epoch=3", "trainer.devics=1"], r"unknown trainer key\(s\): trainer.devics \(did you mean "
     r"'trainer.devices'\?\), trainer.max_epoch \(did you mean 'trainer.max_epochs'\?\); "),
    (["data.name=litis"], "needs data.root"),
    (["cv.folds=[]"], "cv.folds"),
    (["novalue"], "not of the form key=value"),
    (["optim.ema_epochs=0"], "optim.ema_epochs=0.0 must be positive"),
    (["data.eval_hop_seconds=3"], r"data.eval_hop_seconds=3.0 must be positive and at most data.segment_seconds=2.0"),
    (["data.eval_hop_seconds=-1"], r"data.eval_hop_seconds=-1.0 must be positive"),
    (["data.eval_hop_seconds=0"], r"data.eval_hop_seconds=0.0 must be positive"),
    (["optim.ema_epochs=nan"], "optim.ema_epochs=nan must be positive"),
    (["early_stopping.monitor=val/acc", "cv.checkpoint=last"], "test that epoch with cv.checkpoint=best"),
    (["cv.checkpoint=first"], "cv.checkpoint='first' is not allowed; choose one of: auto, last, best"),
    (["model.compile=fast"], "model.compile='fast' is not allowed; choose one of: null, default, reduce-overhead"),
    (["model.compile=reduce-overhead", "trainer.accumulate_grad_batches=2"], "cannot accumulate gradients"),
    (["model.compile_eval=true"], "set model.compile too"),
    (["model.compile=default", "model.compile_eval=true", "data.segment_seconds=null"],
     "needs evaluation windows of one length"),
    (["model.compile=default", "model.compile_eval=true", "trainer.inference_mode=true"],
     "drop trainer.inference_mode=true"),
])
def test_bad_config_is_one_clear_error(overrides, match):
    with pytest.raises(AscError, match=match) as err:
        load_config(overrides=overrides)
    assert len(str(err.value).splitlines()) == 1, str(err.value)


def test_bad_config_file(tmp_path):
    with pytest.raises(AscError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  colour: red\n")
    with pytest.raises(AscError, match=r"unknown config key 'model.colour' in .*bad.yaml"):
        load_config(bad)


def test_cli_reports_user_mistakes_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "asc.cli", "cv", "model.pooling=nope"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: model.pooling='nope' is not allowed")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_shipped_configs_are_valid_and_default_yaml_is_current():
    from pathlib import Path

    from omegaconf import OmegaConf

    from asc.config import to_dict

    experiments = Path(__file__).resolve().parents[1] / "experiments"
    for f in experiments.glob("*.yaml"):
        load_config(f, ["data.root=/tmp"])
    assert to_dict(OmegaConf.load(experiments / "default.yaml")) == to_dict(load_config())


def test_variant_shorthand():
    assert load_config(overrides=["model.variant=cnn"]).model.name == "cnn"
    cfg = load_config(overrides=["model.variant=max"])
    assert cfg.model.name == "crnn" and cfg.model.pooling == "max"
    with pytest.raises(AscError, match="model.variant='lstm' is not allowed"):
        load_config(overrides=["model.variant=lstm"])


@pytest.mark.parametrize("override, match", [
    ("trainer.max_epochs=two", "trainer.max_epochs='two' does not fit"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 must be at least 1"),
    ("trainer.callbacks=[]", "trainer.callbacks cannot be set"),
    ("trainer.logger=false", "trainer.logger cannot be set"),
    ("trainer.use_distributed_sampler=true", "trainer.use_distributed_sampler cannot be set"),
    ("trainer.overfit_batches=2", "trainer.overfit_batches cannot be set"),
    ("trainer.enable_checkpointing=false", "trainer.enable_checkpointing=false cannot work"),
    ("trainer.precision=17", "trainer.precision=17 does not fit"),
])
def test_bad_trainer_values_are_one_error_before_anything_is_written(tmp_path, override, match, capsys,
                                                                      monkeypatch):
    """In this process (test_cli_reports_user_mistakes_without_traceback runs the command as
    its own process): the exit status, the one error line, and no experiment folder."""
    import re

    from asc.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")  # what the command sets, undone after the test
    assert main(["cv", f"output_dir={tmp_path}", override]) == 2
    err = capsys.readouterr().err
    assert re.match(f"error: {match}", err), err[-2000:]
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "default").exists()


def test_good_trainer_values_pass():
    for override in ("trainer.precision=bf16-mixed", "trainer.devices=[0,1]", "trainer.max_time=00:01:00:00",
                     "trainer.gradient_clip_val=1", "trainer.limit_train_batches=0.5"):
        load_config(overrides=[override])


def test_a_config_nothing_was_trained_with_may_be_replaced(tmp_path):
    from asc.experiment import prepare_experiment

    exp = prepare_experiment(load_config(overrides=[f"output_dir={tmp_path}", "optim.lr=0.1"]))
    cfg = load_config(overrides=[f"output_dir={tmp_path}", "optim.lr=0.2"])
    assert prepare_experiment(cfg) == exp and "lr: 0.2" in (exp / "config.yaml").read_text()
    (exp / "fold-1" / "checkpoints").mkdir(parents=True)
    (exp / "fold-1" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(AscError, match="different config"):
        prepare_experiment(load_config(overrides=[f"output_dir={tmp_path}", "optim.lr=0.3"]))


def test_an_experiment_written_before_a_key_existed_still_resumes(tmp_path):
    """A config.yaml without keys added since (here optim.ema_epochs and
    features.subtract_clip_mean) is the same experiment when they are at their defaults."""
    import yaml

    from asc.experiment import prepare_experiment

    cfg = load_config(overrides=[f"output_dir={tmp_path}"])
    exp = prepare_experiment(cfg)
    old = yaml.safe_load((exp / "config.yaml").read_text())
    del old["optim"]["ema_epochs"], old["features"]["subtract_clip_mean"]
    (exp / "config.yaml").write_text(yaml.safe_dump(old))
    (exp / "fold-1" / "checkpoints").mkdir(parents=True)
    (exp / "fold-1" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert prepare_experiment(cfg) == exp
    with pytest.raises(AscError, match="different config.*optim.ema_epochs: None -> 2"):  # set away from its default
        prepare_experiment(load_config(overrides=[f"output_dir={tmp_path}", "optim.ema_epochs=2"]))


def test_an_experiment_from_before_cv_checkpoint_resumes_testing_the_validation_choice(tmp_path):
    """Before cv.checkpoint the test scored best.ckpt: an old experiment keeps that rule on
    resuming (one rule for all its folds), and says which key to give."""
    import yaml

    from asc.experiment import prepare_experiment

    exp = prepare_experiment(load_config(overrides=[f"output_dir={tmp_path}"]))
    old = yaml.safe_load((exp / "config.yaml").read_text())
    del old["cv"]["checkpoint"]
    (exp / "config.yaml").write_text(yaml.safe_dump(old))
    (exp / "fold-1").mkdir()
    (exp / "fold-1" / "result.json").write_text("{}")
    with pytest.raises(AscError, match="cv.checkpoint: best -> auto"):
        prepare_experiment(load_config(overrides=[f"output_dir={tmp_path}"]))
    assert prepare_experiment(load_config(overrides=[f"output_dir={tmp_path}", "cv.checkpoint=best"])) == exp


def test_old_name_of_folder_folds_still_works_with_a_notice(tmp_path, capsys):
    """``data.n_folds`` (folds of the folder layout) is now ``data.folder_folds``, apart from
    ``data.synthetic.n_folds``: the old name works in YAML and on the command line, with a
    one-line notice, and an old config.yaml compares equal to its loaded form."""
    from omegaconf import OmegaConf

    from asc.config import to_dict

    old = tmp_path / "old.yaml"
    old.write_text("data:\n  n_folds: 3\n  synthetic:\n    n_folds: 2\n")
    cfg = load_config(old)
    assert cfg.data.folder_folds == 3 and cfg.data.synthetic.n_folds == 2 and "n_folds" not in cfg.data
    assert capsys.readouterr().err == (f"notice: config key 'data.n_folds' in {old} is now called "
                                       "'data.folder_folds'; the old name still works for now\n")
    assert load_config(overrides=["data.n_folds=7"]).data.folder_folds == 7
    assert capsys.readouterr().err == ("notice: config key 'data.n_folds' in the command line is now called "
                                       "'data.folder_folds'; the old name still works for now\n")
    assert load_config(overrides=["data.folder_folds=4"]).data.folder_folds == 4
    assert capsys.readouterr().err == ""
    with pytest.raises(AscError, match="sets both 'data.n_folds' and its new name 'data.folder_folds'"):
        load_config(overrides=["data.n_folds=2", "data.folder_folds=3"])
    written = to_dict(load_config())
    written["data"]["n_folds"] = written["data"].pop("folder_folds")  # a config.yaml of an older run
    assert to_dict(OmegaConf.create(written)) == to_dict(load_config())


def test_the_tested_checkpoint_rule():
    from asc.fold import tested_checkpoint_rule

    assert tested_checkpoint_rule(load_config()) == "last"  # auto: the end of training
    assert tested_checkpoint_rule(load_config(overrides=["early_stopping.monitor=val/acc"])) == "best"
    assert tested_checkpoint_rule(load_config(overrides=["cv.checkpoint=best"])) == "best"
