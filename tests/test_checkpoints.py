"""Checkpoint schema versions: old checkpoints keep loading and predicting as they did.

The fixture tests/fixtures/ckpt_b6efd54/ was written by main at b6efd54, before
checkpoints carried a version (see make_ckpt_b6efd54.py there).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from asc import checkpoints
from asc.checkpoints import (
    DATAMODULE_KEY,
    SCHEMA_VERSION,
    VERSION_KEY,
    migrate,
    rename_config_keys,
    schema_version,
    stamp,
)
from asc.config import Config
from asc.errors import AscError
from asc.pipeline import FeaturePipeline

WAVS = ["scene0_up_sweep.wav", "scene4_down_sweep.wav", "chirp_11025.wav"]


@pytest.fixture(scope="module")
def expected(old_checkpoint_dir):
    return json.loads((old_checkpoint_dir / "expected_predictions.json").read_text())


def check_predictions(rows: dict, expected: dict) -> None:
    """``rows``: file name -> (prediction, probabilities in class order)."""
    assert set(rows) == set(expected["files"])
    for name, want in expected["files"].items():
        prediction, probs = rows[name]
        assert prediction == want["prediction"], name
        np.testing.assert_allclose(probs, want["probabilities"], atol=1e-4, rtol=0, err_msg=name)


def test_old_checkpoint_predicts_as_at_b6efd54(old_checkpoint_dir, expected, asc_cli, tmp_path):
    wavs = [str(old_checkpoint_dir / w) for w in WAVS]
    proc = asc_cli("predict", "--checkpoint", str(old_checkpoint_dir / "model.ckpt"), *wavs, "--out",
                   str(tmp_path), "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 of 3 files classified" in proc.stdout
    out = json.loads((tmp_path / "predictions.json").read_text())
    assert out["classes"] == expected["classes"]
    rows = {}
    for row in out["files"]:
        name, p = Path(row["file"]).name, {t["class"]: t["probability"] for t in row["top_k"]}
        rows[name] = (row["prediction"], [p[c] for c in out["classes"]])
        assert len(row["segments"]["start_s"]) == expected["files"][name]["n_segments"]
    check_predictions(rows, expected)


def test_old_checkpoint_attention_scores_as_at_b6efd54(old_checkpoint_dir, expected, asc_cli, tmp_path):
    proc = asc_cli("attention", "--checkpoint", str(old_checkpoint_dir / "model.ckpt"), "--out", str(tmp_path),
                   "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (got,) = json.loads((tmp_path / "attention_scores.json").read_text()).values()
    want = expected["attention"]
    assert got["n_clips"] == want["n_clips"] and got["accuracy"] == pytest.approx(want["accuracy"])
    # #13 stitches overlapping segments' attention with a taper instead of a plain mean (no
    # spikes at segment boundaries), so the scores may move a little; the network's
    # per-segment attention is what it was.
    assert got["overall"] == pytest.approx(want["overall"], abs=2e-3)
    for c, v in want["per_class"].items():
        assert got["per_class"][c] == pytest.approx(v, abs=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_old_checkpoint_exports_and_predicts_as_at_b6efd54(old_checkpoint_dir, expected, asc_cli, tmp_path, fmt):
    """The exported graph (front-end + network) gives the clip probabilities `asc predict`
    gave at b6efd54: mean over the clip's evenly spaced segments."""
    from asc.data.audio import read_audio
    from asc.data.batches import segment_starts
    from asc.export import run_exported

    out = tmp_path / f"model.{fmt}"
    proc = asc_cli("export", "--checkpoint", str(old_checkpoint_dir / "model.ckpt"), "--format", fmt, "--out",
                   str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert side["frontend"]["included"] and side["max_abs_diff_vs_checkpoint"] < 1e-4
    assert side["classes"] == expected["classes"]
    sr, seg = side["sample_rate"], side["segment_samples"]
    rows = {}
    for name in WAVS:
        wave, _ = read_audio(old_checkpoint_dir / name, sr)
        starts = segment_starts(len(wave), seg, seg // 2)  # eval hop: half a segment (the default)
        segs = torch.stack([torch.as_tensor(wave[s:s + seg], dtype=torch.float32) for s in starts])
        probs = run_exported(fmt, out, segs).mean(0)
        rows[name] = (expected["classes"][int(probs.argmax())], probs)
    check_predictions(rows, expected)


def test_unversioned_checkpoint_migrates_to_current(old_checkpoint_dir):
    ck = torch.load(old_checkpoint_dir / "model.ckpt", map_location="cpu", weights_only=True)
    assert VERSION_KEY not in ck and schema_version(ck) == 0
    weights = {k: v.clone() for k, v in ck["state_dict"].items()}
    cfg = json.loads(json.dumps(ck["hyper_parameters"]["cfg"]))
    out = migrate(ck)
    assert out[VERSION_KEY] == SCHEMA_VERSION == schema_version(out)
    from asc.checkpoints import ADDED_IN_V2

    for key, value in ADDED_IN_V2.items():  # the only change: keys added in 2, at their old behaviour
        section, leaf = key.split(".")
        assert out["hyper_parameters"]["cfg"][section].pop(leaf) == value
    # ... and config keys renamed since (RENAMED_KEYS: data.n_folds -> data.folder_folds)
    assert cfg["data"]["n_folds"] == out["hyper_parameters"]["cfg"]["data"]["folder_folds"]
    assert out["hyper_parameters"]["cfg"] == rename_config_keys(cfg, "the checkpoint", notice=None)
    # 3: the network's weights stay; the band statistics move to the DataModule's state
    network = {k: v for k, v in weights.items() if k.startswith("model.")}
    assert out["state_dict"].keys() == network.keys()
    assert all(torch.equal(out["state_dict"][k], v) for k, v in network.items())
    stats = out[DATAMODULE_KEY]["band_stats"]
    assert stats.keys() == {"mean", "std", "fitted"}
    assert all(torch.equal(stats[k], weights[f"norm.{k}"]) for k in stats)
    assert migrate(out)[VERSION_KEY] == SCHEMA_VERSION  # idempotent


def test_dropped_filterbank_is_rebuilt_identically_from_the_config(old_checkpoint_dir):
    """Schema 3 drops ``frontend.*`` from old checkpoints: the filterbank the stored config
    builds today is the one they were trained with."""
    ck = torch.load(old_checkpoint_dir / "model.ckpt", map_location="cpu", weights_only=True)
    stored = {k[len("frontend."):]: v for k, v in ck["state_dict"].items() if k.startswith("frontend.")}
    cfg = migrate(ck)["hyper_parameters"]["cfg"]
    rebuilt = FeaturePipeline(OmegaConf.create(cfg), len(ck["hyper_parameters"]["class_names"])).frontend
    assert stored and rebuilt.state_dict().keys() == stored.keys()
    for k, v in rebuilt.state_dict().items():
        torch.testing.assert_close(v, stored[k], rtol=1e-6, atol=1e-7)


def test_datamodule_key_is_the_datamodule_class_name():
    from asc.data.datamodule import SceneDataModule

    assert SceneDataModule.__qualname__ == DATAMODULE_KEY  # where Lightning stores its state


def test_every_migration_step_is_registered():
    assert sorted(checkpoints.MIGRATIONS) == list(range(SCHEMA_VERSION))


def test_newer_or_invalid_schema_is_refused(old_checkpoint_dir, tmp_path):
    from asc.predict import load_model

    ck = torch.load(old_checkpoint_dir / "model.ckpt", map_location="cpu", weights_only=True)
    ck[VERSION_KEY] = SCHEMA_VERSION + 1
    torch.save(ck, tmp_path / "future.ckpt")
    with pytest.raises(AscError, match="newer than this asc reads"):
        load_model(tmp_path / "future.ckpt", "cpu")
    with pytest.raises(AscError, match="invalid asc_schema_version"):
        migrate({VERSION_KEY: "1"})


def test_renamed_key_in_an_old_checkpoint_is_migrated(old_checkpoint_dir, expected, tmp_path, monkeypatch):
    """A checkpoint whose config uses a key's old name loads and predicts as before."""
    from asc.data.audio import read_audio
    from asc.predict import load_model

    ck = torch.load(old_checkpoint_dir / "model.ckpt", map_location="cpu", weights_only=True)
    feats = ck["hyper_parameters"]["cfg"]["features"]
    feats["n_bands"] = feats.pop("n_bins")  # as if `features.n_bins` had once been `features.n_bands`
    torch.save(ck, tmp_path / "renamed.ckpt")
    with pytest.raises(AscError, match="does not fit this version"):
        load_model(tmp_path / "renamed.ckpt", "cpu")
    monkeypatch.setitem(checkpoints.RENAMED_KEYS, "features.n_bands", "features.n_bins")
    model = load_model(tmp_path / "renamed.ckpt", "cpu")
    assert model.cfg.features.n_bins == 16
    rows = {}
    for name in WAVS:
        wave, _ = read_audio(old_checkpoint_dir / name, model.sample_rate)
        probs = model.analyse_clip(wave, with_spec=False)["probs"]
        rows[name] = (model.class_names[int(probs.argmax())], probs)
    check_predictions(rows, expected)


def test_old_key_names_are_aliases_in_yaml_and_on_the_command_line(tmp_path, capsys):
    table = {"features.n_bands": "features.n_bins", "data.clip_len": "data.segment_seconds"}
    yaml = tmp_path / "old.yaml"
    yaml.write_text("features:\n  n_bands: 32\n  name: mel\n")
    layers = [(str(yaml), OmegaConf.load(yaml)),
              ("the command line", OmegaConf.from_dotlist(["data.clip_len=1.5", "seed=3"]))]
    cfg = OmegaConf.structured(Config)
    for source, layer in layers:
        layer = OmegaConf.create(rename_config_keys(OmegaConf.to_container(layer), source, table))
        cfg = OmegaConf.merge(cfg, layer)
    assert cfg.features.n_bins == 32 and cfg.features.name == "mel"
    assert cfg.data.segment_seconds == 1.5 and cfg.seed == 3
    notices = capsys.readouterr().err.splitlines()
    assert notices == [
        f"notice: config key 'features.n_bands' in {yaml} is now called 'features.n_bins'; "
        "the old name still works for now",
        "notice: config key 'data.clip_len' in the command line is now called 'data.segment_seconds'; "
        "the old name still works for now"]
    with pytest.raises(AscError, match="sets both 'features.n_bands' and its new name 'features.n_bins'"):
        rename_config_keys({"features": {"n_bands": 8, "n_bins": 16}}, "x.yaml", table)
    assert rename_config_keys({"seed": 1}, "x.yaml", table) == {"seed": 1}  # nothing to rename: no notice
    assert capsys.readouterr().err == ""


def test_pre_v2_checkpoint_gets_the_behaviour_it_was_trained_with(old_checkpoint_dir):
    """Keys added in schema 2 default to new behaviour (an auxiliary classifier, augmentation);
    an older checkpoint's config gets the values it was built with, so its weights fit."""
    ck = torch.load(old_checkpoint_dir / "model.ckpt", map_location="cpu", weights_only=True)
    cfg = migrate(ck)["hyper_parameters"]["cfg"]
    assert cfg["model"]["max_aux_weight"] == 0.0 and cfg["augment"]["roll"] is False
    assert not any(k.startswith("model.max_head") for k in ck["state_dict"])


def test_stamp_marks_the_current_version():
    ck = {"state_dict": {}}
    stamp(ck)
    assert ck[VERSION_KEY] == SCHEMA_VERSION


@pytest.mark.slow
def test_checkpoints_written_by_asc_carry_the_schema_version(trained_checkpoint):
    ck = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    assert ck[VERSION_KEY] == SCHEMA_VERSION
