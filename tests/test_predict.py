"""Using trained models: predict, attention analysis, export, notebooks."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asc.attention_score import attention_in_events, event_frames
from asc.errors import AscError
from helpers.audio_trees import make_folder
from helpers.cli import asc

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkpoint(trained_checkpoint):
    return trained_checkpoint  # best.ckpt of `asc train` on the tiny config (tests/conftest.py)


@pytest.mark.slow
def test_predict_files_and_folders(checkpoint, tmp_path):
    make_folder(tmp_path / "in", per_class=2)  # mixed rates, channels, WAV and FLAC
    short = tmp_path / "short.wav"
    sf.write(short, 0.1 * np.random.default_rng(0).standard_normal(4000).astype(np.float32), 8000)  # 0.5 s
    (tmp_path / "in" / "street" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    out = tmp_path / "out"
    proc = asc("predict", "--checkpoint", str(checkpoint), str(tmp_path / "in"), str(short), "--out", str(out),
               "--top-k", "2", "--attention", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]  # a file failed: the exit status says so
    assert "7 of 8 files classified; 1 could not be read" in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "error: 1 of 8 files could not be classified (reasons in predictions.csv)"
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 8 and list(rows[0])[:8] == ["file", "status", "prediction", "probability", "top1",
                                                    "top1_probability", "top2", "top2_probability"]
    bad = [r for r in rows if r["status"] == "error"]
    assert len(bad) == 1 and bad[0]["file"].endswith("corrupt.wav") and bad[0]["error"]
    data = json.loads((out / "predictions.json").read_text())
    classes = data["classes"]
    for f in data["files"]:
        if f["status"] != "ok":
            continue
        probs = [t["probability"] for t in f["top_k"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True) and f["prediction"] == f["top_k"][0]["class"]
        seg = np.array(f["segments"]["probabilities"])
        assert seg.shape == (len(f["segments"]["start_s"]), len(classes))
        np.testing.assert_allclose(seg.sum(1), 1, atol=1e-3)
        np.testing.assert_allclose(seg.mean(0).max(), f["probability"], atol=1e-3)  # mean_prob aggregation
        assert Path(f["attention_png"]).read_bytes()[:4] == b"\x89PNG"
    short_row = next(f for f in data["files"] if f["file"].endswith("short.wav"))
    assert short_row["duration_s"] == 0.5 and short_row["segments"]["start_s"] == [0.0]


@pytest.mark.slow
def test_predict_long_file_in_batches(checkpoint, tmp_path):
    from asc.predict import load_model, predict_files

    sr = 8000
    t = np.arange(10 * 60 * sr) / sr  # 10 minutes
    sf.write(tmp_path / "long.wav", (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    model = load_model(checkpoint, "cpu")
    (row,) = predict_files(model, [tmp_path / "long.wav"], tmp_path / "out", batch_segments=32, progress=False)
    assert row["status"] == "ok" and row["duration_s"] == 600.0
    assert len(row["segments"]["start_s"]) == 599  # 2 s segments, 1 s hop
    assert row["segments"]["start_s"][-1] == 598.0


@pytest.mark.slow
def test_bad_checkpoints(checkpoint, tmp_path):
    from asc.predict import load_model

    with pytest.raises(AscError, match="not found"):
        load_model(tmp_path / "nope.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(AscError, match="not a loadable weights-only PyTorch checkpoint"):
        load_model(tmp_path / "junk.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(AscError, match="not an asc checkpoint"):
        load_model(tmp_path / "other.ckpt")
    ck = torch.load(checkpoint, weights_only=True)
    ck["hyper_parameters"]["cfg"]["model"]["rnn_hidden"] = 16  # config and weights disagree
    torch.save(ck, tmp_path / "mismatch.ckpt")
    with pytest.raises(AscError, match="does not match the model"):
        load_model(tmp_path / "mismatch.ckpt")
    proc = asc("predict", "--checkpoint", str(tmp_path / "junk.ckpt"), str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


def test_attention_score_known_answer():
    hop = 0.02
    inside = event_frames(100, hop, [(0.2, 0.4), (1.0, 1.2)])  # frames 10-19 and 50-59
    assert inside.sum() == 20 and inside[10] and not inside[20] and inside[59] and not inside[60]
    uniform = np.full(100, 0.01)
    assert attention_in_events(uniform, hop, [(0.2, 0.4), (1.0, 1.2)]) == pytest.approx(1.0)
    focused = inside / inside.sum()
    assert attention_in_events(focused, hop, [(0.2, 0.4), (1.0, 1.2)]) == pytest.approx(5.0)  # 1 / coverage
    half = 0.5 * focused + 0.5 * (~inside) / (~inside).sum()
    assert attention_in_events(half, hop, [(0.2, 0.4), (1.0, 1.2)]) == pytest.approx(2.5)
    assert attention_in_events(uniform, hop, []) is None


def test_attention_spread_known_answers():
    from asc.models.pooling import weight_spread

    def spread(w):
        return float(weight_spread(torch.as_tensor(w, dtype=torch.float32)[None])[0])

    assert spread(np.full(50, 0.02)) == pytest.approx(1.0)  # uniform: pools like a mean
    assert spread(np.eye(50)[3]) == pytest.approx(1 / 50)  # all weight on one frame
    assert spread([0.5, 0.5, 0.0, 0.0]) == pytest.approx(0.5)  # two of four, unnormalised input is fine
    assert spread([3.0, 3.0, 0.0, 0.0]) == pytest.approx(0.5)
    near_uniform = torch.softmax(1e-3 * torch.randn(1000, 397, generator=torch.Generator().manual_seed(0)), -1)
    assert float(weight_spread(near_uniform).max()) <= 1.0  # float32 rounding gave 1.000002 before


def test_attention_table_of_checkpoints_with_and_without_events(tmp_path):
    from asc.attention_score import figure, table

    synthetic = {"per_class": {"up": 3.0, "down": None}, "overall": 3.0, "time_spread": 0.4, "feature_spread": 0.9}
    folder = {"per_class": {"cough": None}, "overall": None, "time_spread": 0.8, "feature_spread": 0.7}
    text = table({"stap (syn/fold-1)": synthetic, "stap (rec/fold-1)": folder})
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:3]}
    assert rows == {"up": ["3.00", "-"], "down": ["-", "-"]}  # the scenes' classes only
    assert "spread in time" in text and "0.40" in text and "0.80" in text and "cough" not in text
    assert table({"a": folder}).splitlines()[0].split()[0] == "attention" and "overall" not in table({"a": folder})
    figure({"a": folder, "b": synthetic}, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0


@pytest.mark.slow
def test_attention_command(checkpoint, tmp_path):
    proc = asc("attention", "--checkpoint", str(checkpoint), "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "attention_scores.json").read_text())
    (r,) = res.values()
    assert r["pooling"] == "stap" and r["fold"] == 1 and r["n_clips"] == r["n_scored"] == 9 and r["overall"] > 0
    assert 0 < r["time_spread"] <= 1 and 0 < r["feature_spread"] <= 1
    assert set(r["per_class"]) == {"up_sweep", "down_sweep", "rising_pair"}
    assert (tmp_path / "attention_scores.png").is_file() and "overall" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_matches_checkpoint(checkpoint, tmp_path, fmt):
    from asc.export import run_exported
    from asc.predict import load_model

    out = tmp_path / f"model.{fmt}"
    proc = asc("export", "--checkpoint", str(checkpoint), "--format", fmt, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["frontend"]["included"] and side["max_abs_diff_vs_checkpoint"] < 1e-4
    assert side["frontend"]["subtract_clip_mean"] is False  # the sidecar says how the input was made
    model = load_model(checkpoint, "cpu")
    rng = np.random.default_rng(1)
    wave = torch.tensor(0.1 * rng.standard_normal((5, model.segment)), dtype=torch.float32)
    with torch.no_grad():
        logits, _ = model(model.features(wave))
    want = torch.softmax(logits, -1).numpy()
    np.testing.assert_allclose(run_exported(fmt, out, wave), want, atol=1e-4)


@pytest.mark.slow
def test_bad_predict_arguments_are_one_error_line(checkpoint, tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(8000, dtype=np.float32), 8000)
    for args, message in ((["--device", "gpu"], "--device 'gpu' is not a device asc runs on"),
                          (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "cuda:99"],
                           "--device cuda:"),
                          (["--batch-segments", "0"], "argument --batch-segments: 0 must be at least 1"),
                          (["--top-k", "-1"], "argument --top-k: -1 must be at least 1")):
        proc = asc("predict", "--checkpoint", str(checkpoint), str(wav), "--out", str(tmp_path / "out"), *args,
                   cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_a_whole_clip_model_exports_for_clips_of_any_length(tmp_path):
    """data.segment_seconds=null: the exported file takes clips of any length (checked at
    two lengths, here and by export itself), and the sidecar says so.  Exported by W&B run
    id, the file goes next to the checkpoint; a folder as --out is refused."""
    from asc.export import run_exported
    from asc.predict import load_model
    from helpers.cli import TINY

    proc = asc("train", "experiment.name=whole", f"output_dir={tmp_path / 'runs'}", "logger.mode=disabled", *TINY,
               "data.segment_seconds=null", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fold = tmp_path / "runs" / "whole" / "fold-1"
    run_id = (fold / "wandb_run_id").read_text().strip()
    refused = asc("export", "--checkpoint", run_id, "--format", "onnx", "--out", str(tmp_path), cwd=tmp_path)
    assert refused.returncode == 2 and "is a folder: name the file to write" in refused.stderr
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt")):
        proc = asc("export", "--checkpoint", run_id, "--format", fmt, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = fold / "checkpoints" / f"last{suffix}"  # next to the checkpoint the fold's test scored
        side = json.loads(Path(str(out) + ".json").read_text())
        assert side["segment_samples"] is None and "any length" in side["clip_decision"]
        assert side["max_abs_diff_vs_checkpoint"] < 1e-4
        model = load_model(out.with_suffix(".ckpt"), "cpu")
        for seconds in (0.7, 2.3):
            wave = torch.tensor(0.1 * np.random.default_rng(2).standard_normal((2, int(seconds * model.sample_rate))),
                                dtype=torch.float32)
            with torch.no_grad():
                want = torch.softmax(model(model.features(wave))[0], -1).numpy()
            np.testing.assert_allclose(run_exported(fmt, out, wave), want, atol=1e-4)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["attention_maps", "compare_runs"])
def test_notebooks_run_top_to_bottom(checkpoint, tmp_path, name):
    import nbformat
    from nbclient import NotebookClient

    results = checkpoint.parents[2] / "results.json"
    os.environ.update(ASC_CHECKPOINT=str(checkpoint), ASC_CLIPS="2", ASC_RESULTS=f"{results},{results}")
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "the notebook shows no figure"
    if name == "attention_maps":
        assert "overall" in text and len(images) == 2
    else:
        assert "tiny" in text and "1 experiments" in text


@pytest.mark.slow
def test_checkpoint_found_by_wandb_run_id(checkpoint, monkeypatch):
    from asc.predict import resolve_checkpoint

    run_id = (checkpoint.parents[1] / "wandb_run_id").read_text().strip()
    # the checkpoint the fold's test scored (cv.checkpoint=last by default)
    assert json.loads((checkpoint.parents[1] / "result.json").read_text())["checkpoint"] == "last"
    assert resolve_checkpoint(run_id, checkpoint.parents[3]) == checkpoint.parent / "last.ckpt"
    monkeypatch.chdir(checkpoint.parents[3])
    with pytest.raises(AscError, match="neither a file nor the W&B run id"):
        resolve_checkpoint("zzzzzzzz", ".")


def test_track_attention_with_an_odd_window_predicts_short_and_long_clips():
    """A network built for a fixed number of frames (``track``) with an odd analysis window
    (201 samples: one frame fewer than an even one on a multiple of the hop): built for the
    frames the front-end gives, and a clip shorter than a segment is padded and masked."""
    from asc.config import load_config
    from asc.inference import Predictor

    cfg = load_config(overrides=["data.sample_rate=8000", "features.win_ms=25.125", "features.hop_ms=10",
                                 "features.n_bins=16", "data.segment_seconds=0.5", "model.spatial_attention=track",
                                 "model.conv_channels=[4,8]", "model.freq_pool=[4,4]", "model.time_pool=[2,1]",
                                 "model.rnn_hidden=8"])
    torch.manual_seed(0)
    predictor = Predictor(cfg, ["a", "b", "c"])
    assert (predictor.frontend.win, predictor.frontend.hop) == (201, 80)
    outs = {}
    for seconds in (0.2, 0.5, 1.3):
        out = predictor.analyse_clip(np.random.default_rng(0).normal(size=int(seconds * 8000)).astype(np.float32))
        assert out["probs"].shape == (3,) and np.isfinite(out["probs"]).all() and np.isfinite(out["temporal"]).all()
        outs[seconds] = out
    # the 0.2 s clip (1600 samples, 20 frames) padded to 0.5 s (50 frames): its attention,
    # its uniform level and its spread are of its own 20 frames, not of the padding
    short = outs[0.2]
    assert len(short["temporal"]) == 20 and short["uniform"] == pytest.approx(1 / 20)
    assert short["temporal"].sum() == pytest.approx(1.0, abs=0.02)
    assert short["spread_time"] > 0.8 and outs[0.5]["uniform"] == pytest.approx(1 / 50)
