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
    (["model.poolin=stap"], "unknown config key 'model.poolin'"),
    (["model.pooling=attention"], "model.pooling='attention' is not allowed"),
    (["data.batch_size=abc"], "data.batch_size"),
    (["data.batch_size=0"], "data.batch_size=0 must be a positive"),
    (["trainer.max_epoch=3"], "unknown trainer key.*trainer.max_epoch"),
    (["data.name=litis"], "needs data.root"),
    (["cv.folds=[]"], "cv.folds"),
    (["novalue"], "not of the form key=value"),
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
