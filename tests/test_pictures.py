"""Attention pictures: the uniform reference, stitching of overlapping segments, unique
file names, labels of compared checkpoints, and the notebook's refusal of other data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers.cli import TINY, asc

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pictures")
    proc = asc("train", "experiment.name=tiny", f"output_dir={root}", "logger.mode=disabled", *TINY, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "tiny"


def test_stitching_leaves_no_spikes_at_segment_boundaries():
    from asc.inference import stitch_segments

    # 4-s clip, 2-s segments of 101 frames every 50 frames; each segment's attention sums
    # to 1 and is 5x higher on its two edge frames (what padding does to a trained model)
    seg = torch.full((101,), 1.0)
    seg[[0, -1]] = 5.0
    seg = seg / seg.sum()
    out = stitch_segments([(0, seg), (50, seg), (100, seg)], 201).numpy()
    level = np.median(out)
    for boundary in (50, 100, 150):  # 1.0, 2.0, 3.0 s
        assert out[boundary] < 1.05 * level, (boundary, out[boundary] / level)
    flat = torch.full((101,), 1 / 101)
    np.testing.assert_allclose(stitch_segments([(0, flat), (50, flat), (100, flat)], 201).numpy(), 1 / 101,
                               rtol=1e-5)  # uniform attention stays at 1/(frames in a segment)
    two_d = stitch_segments([(0, flat[:, None].repeat(1, 3)), (50, flat[:, None].repeat(1, 3))], 151)
    assert two_d.shape == (151, 3) and torch.allclose(two_d, torch.tensor(1 / 101))


def test_uniform_line_is_one_over_the_frames_of_a_segment(trained):
    from asc.data import load_synthetic
    from asc.predict import load_model
    from asc.viz import attention_figure

    model = load_model(trained / "fold-1" / "checkpoints" / "best.ckpt", "cpu")
    clips = load_synthetic(model.cfg.data)
    wave = clips.audio.get(0)
    assert len(wave) == 4 * model.sample_rate  # a clip of two segments' length: 3 segments, 201 frames
    analysis = model.analyse_clip(wave)
    a = analysis["temporal"]
    assert len(a) == 201 and analysis["uniform"] > 1.9 / len(a)  # one segment has ~101 frames, not 201
    assert abs(np.median(a) / analysis["uniform"] - 1) < 0.2  # the line sits where the curve's level is
    fig = attention_figure(analysis, model.frontend.hop / model.sample_rate, "t")
    lines = [l for ax in fig.axes for l in ax.get_lines() if l.get_label() == "uniform"]
    assert len(lines) == 1 and lines[0].get_ydata()[0] == pytest.approx(analysis["uniform"])


def test_picture_fit_for_a_paper(trained):
    from asc.data import load_synthetic
    from asc.predict import load_model
    from asc.viz import attention_figure, band_frequencies

    model = load_model(trained / "fold-1" / "checkpoints" / "best.ckpt", "cpu")
    clips = load_synthetic(model.cfg.data)
    hz = band_frequencies(model.frontend)
    assert len(hz) == 64 and 40 <= hz[0] <= 100 and 6000 <= hz[-1] <= 8000 and (np.diff(hz) >= 0).all()
    fig = attention_figure(model.analyse_clip(clips.audio.get(0)), model.frontend.hop / model.sample_rate, "t",
                           clips.events[0], clips.class_names, hz)
    spec_ax = fig.axes[0]
    assert spec_ax.get_ylabel() == "frequency (Hz)"
    assert any(ax.get_ylabel() == "standardised log power" for ax in fig.axes)  # a colour bar
    legend = [t.get_text() for t in spec_ax.get_legend().get_texts()]
    assert "class event" in legend and "distractor" in legend
    titles = [ax.get_title() for ax in fig.axes]
    assert "segment probabilities" in titles and not any("mask" in t for t in titles)


def test_picture_names_are_unique_and_carry_the_class(trained, tmp_path):
    import lightning as L

    from asc.callbacks import AttentionPictures
    from asc.config import load_config
    from asc.data import load_clipset
    from asc.predict import load_model

    # asc predict --attention on a/rec001.wav and b/rec001.wav: two pictures
    ckpt = trained / "fold-1" / "checkpoints" / "best.ckpt"
    rng = np.random.default_rng(0)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        sf.write(tmp_path / d / "rec001.wav", 0.1 * rng.standard_normal(32000).astype(np.float32), 16000)
    proc = asc("predict", "--checkpoint", str(ckpt), "a", "b", "--out", "out", "--attention", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())["files"]
    pngs = {r["attention_png"] for r in rows}
    assert len(pngs) == 2 and all((tmp_path / p).is_file() for p in pngs)
    assert all(Path(r["attention_png"]).name.startswith(f"rec001-{r['prediction']}-") for r in rows)

    # training pictures of a folder data set whose classes hold the same file names
    for c in ("x", "y", "z"):  # as many classes as the model knows
        for k in range(3):
            (tmp_path / "data" / c).mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "data" / c / f"rec{k}.wav", 0.1 * rng.standard_normal(16000).astype(np.float32),
                     16000)
    cfg = load_config(overrides=["data.name=folder", f"data.root={tmp_path / 'data'}", "data.folder_folds=3",
                                 f"data.cache_dir={tmp_path / 'cache'}"])
    clips = load_clipset(cfg.data)
    ids = [i for i, item in enumerate(clips.items) if Path(item).stem == "rec0"]
    assert len(ids) == 3
    model = load_model(ckpt, "cpu")
    pictures = AttentionPictures(clips, ids, tmp_path / "pics")
    pictures.render(L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False), model, "test")
    names = sorted(p.name for p in (tmp_path / "pics").glob("*.png"))
    assert [n[:12] for n in names] == ["test-rec0-x-", "test-rec0-y-", "test-rec0-z-"]


def test_attention_labels_two_checkpoints_of_one_fold(trained, tmp_path):
    ckpts = trained / "fold-1" / "checkpoints"
    proc = asc("attention", "--checkpoint", str(ckpts / "best.ckpt"), "--checkpoint", str(ckpts / "last.ckpt"),
               "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "attention_scores.json").read_text())
    assert list(res) == ["stap (tiny/fold-1/best)", "stap (tiny/fold-1/last)"]
    assert "stap (tiny/fold-1/best)" in proc.stdout.splitlines()[0] and "stap (tiny/fold-1/last)" in proc.stdout


def test_attention_notebook_refuses_a_checkpoint_of_other_data(tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from helpers.audio_trees import make_folder

    make_folder(tmp_path / "rec", per_class=3)
    proc = asc("train", "data.name=folder", f"data.root={tmp_path / 'rec'}", "data.folder_folds=3",
               f"data.cache_dir={tmp_path / 'cache'}", "experiment.name=rec", f"output_dir={tmp_path / 'runs'}",
               "logger.mode=disabled", *[a for a in TINY if not a.startswith("data.synthetic")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp_path / "runs" / "rec" / "fold-1" / "checkpoints" / "best.ckpt"
    # without event annotations: the spreads only (no event score), on the fold's test clips
    proc = asc("attention", "--checkpoint", str(ckpt), "--out", "att", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (r,) = json.loads((tmp_path / "att" / "attention_scores.json").read_text()).values()
    assert r["overall"] is None and r["n_scored"] == 0 and r["n_clips"] == 3  # 9 clips, 3 folds
    assert 0 < r["time_spread"] <= 1 and 0 < r["feature_spread"] <= 1
    assert "spread in time" in proc.stdout and "overall" not in proc.stdout
    assert (tmp_path / "att" / "attention_scores.png").is_file()
    proc = asc("attention", "--compare", str(ckpt), str(ckpt), cwd=tmp_path)  # pictures need the events
    assert proc.returncode == 2 and "synthetic" in proc.stderr and "Traceback" not in proc.stderr
    os.environ.update(ASC_CHECKPOINT=str(ckpt), ASC_CLIPS="1")
    nb = nbformat.read(REPO / "notebooks" / "attention_maps.ipynb", as_version=4)
    with pytest.raises(CellExecutionError, match="was trained on folder.*synthetic scenes"):
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "accuracy on these clips" not in text  # stopped before scoring the wrong clips


def test_attention_compare_two_runs_on_the_same_clips(trained, tmp_path):
    ckpts = trained / "fold-1" / "checkpoints"
    proc = asc("attention", "--compare", str(ckpts / "best.ckpt"), str(ckpts / "last.ckpt"), "--out", "cmp",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    labels = ["stap (tiny/fold-1/best)", "stap (tiny/fold-1/last)"]
    assert list(report["checkpoints"]) == labels
    assert len(report["clips"]) == 3 and {r["true"] for r in report["clips"]} == {"up_sweep", "down_sweep",
                                                                                  "rising_pair"}
    for row in report["clips"]:
        assert all(row[l]["event_score"] > 0 for l in labels)
        assert (tmp_path / row["picture"]).read_bytes()[:4] == b"\x89PNG"
        assert Path(row["picture"]).name.startswith("compare-") and row["true"] in row["picture"]
    assert proc.stdout.count("(true ") == 3
    proc = asc("attention", cwd=tmp_path)
    assert proc.returncode == 2 and "--compare" in proc.stderr


def test_background_pictures_equal_the_ones_drawn_in_process_and_errors_surface(trained, tmp_path):
    from asc.data import load_synthetic
    from asc.picture_writer import PictureWriter, picture_workers
    from asc.predict import load_model
    from asc.viz import band_frequencies

    model = load_model(trained / "fold-1" / "checkpoints" / "best.ckpt", "cpu")
    clips = load_synthetic(model.cfg.data)
    args = (model.frontend.hop / model.sample_rate, "t", clips.events[0], clips.class_names,
            band_frequencies(model.frontend))
    analysis = model.analyse_clip(clips.audio.get(0))
    for workers in (0, 1):
        with PictureWriter(workers) as pictures:
            pictures.draw(tmp_path / f"w{workers}.png", analysis, *args)
            pictures.draw(tmp_path / f"w{workers}-again.png", analysis, *args)
    drawn = [(tmp_path / name).read_bytes() for name in ("w0.png", "w1.png", "w1-again.png")]
    assert drawn[0][:8] == b"\x89PNG\r\n\x1a\n" and drawn[0] == drawn[1] == drawn[2]
    with pytest.raises(FileNotFoundError):  # a worker's failure is raised when the block is left
        with PictureWriter(1) as pictures:
            pictures.draw(tmp_path / "no-such-folder" / "x.png", analysis, *args)
    with pytest.raises(ValueError, match="the caller's own"):  # not hidden by the pictures, not waiting for them
        with PictureWriter(1) as pictures:
            for k in range(3):
                pictures.draw(tmp_path / f"dropped{k}.png", analysis, *args)
            assert len(pictures.pending) <= 2  # at most two pictures per worker wait
            raise ValueError("the caller's own error")
    assert pictures.pool._shutdown_thread
    assert picture_workers(2) == 0 and 0 <= picture_workers(19) <= 8


def test_the_callers_torch_threads_make_room_for_the_picture_processes(monkeypatch):
    import torch

    import asc.picture_writer as pw

    class Pool:  # stands in for the process pool: only the thread arithmetic is tested here
        def shutdown(self, **_):
            pass

    before = torch.get_num_threads()
    monkeypatch.setattr(pw, "_cores", lambda: 4)
    monkeypatch.setattr(pw, "_start_pool", lambda workers: Pool())
    try:
        torch.set_num_threads(4)
        with pw.PictureWriter(3):
            assert torch.get_num_threads() == 1  # 4 cores, 3 picture processes
        assert torch.get_num_threads() == 4
        with pw.PictureWriter(1):
            assert torch.get_num_threads() == 3
        with pytest.raises(ValueError), pw.PictureWriter(4):  # restored when the block fails, too
            assert torch.get_num_threads() == 1
            raise ValueError
        assert torch.get_num_threads() == 4
        with pw.PictureWriter(0):  # no picture processes: nothing to make room for
            assert torch.get_num_threads() == 4
        monkeypatch.setattr(pw, "_start_pool", lambda workers: None)
        with pw.PictureWriter(3):  # the processes failed to start: the pictures are drawn here
            assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_background_pictures_from_a_script_without_a_main_guard(tmp_path):
    """Spawned workers must not re-run the caller's script (which would start it again)."""
    script = tmp_path / "draw.py"
    script.write_text(
        "import numpy as np\n"
        "from pathlib import Path\n"
        "from asc.picture_writer import PictureWriter\n"
        "print('script ran', flush=True)\n"
        "analysis = {'spec': np.zeros((8, 20), np.float32), 'probs': np.array([0.6, 0.4])}\n"
        "with PictureWriter(2) as pictures:\n"
        "    for k in range(3):\n"
        "        pictures.draw(Path(f'p{k}.png'), analysis, 0.02, 'no guard')\n")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("script ran") == 1
    assert sorted(p.name for p in tmp_path.glob("p*.png")) == ["p0.png", "p1.png", "p2.png"]


def test_picture_processes_draw_with_one_thread_each_and_import_matplotlib_as_they_start():
    """Each picture process limits its BLAS/OpenMP threads before numpy is imported there
    (8 of them with a thread per core each would compete for the cores); the caller's own
    settings are left alone."""
    from asc.picture_writer import WORKER_THREADS, _start_pool, import_seconds, warm_up

    before = {k: os.environ.get(k) for k in WORKER_THREADS}
    pool = _start_pool(1)
    try:
        seen = {k: pool.submit(os.getenv, k).result(timeout=120) for k in WORKER_THREADS}
        # the process imported the drawing code as it started: a second import costs nothing
        first, again = pool.submit(import_seconds).result(timeout=120), pool.submit(warm_up).result(timeout=120)
    finally:
        pool.shutdown()
    assert seen == WORKER_THREADS and {k: os.environ.get(k) for k in WORKER_THREADS} == before
    assert first > 0 and again < first / 10
    # what a picture process imports before its initializer runs does not import numpy
    proc = subprocess.run([sys.executable, "-c", "import sys, asc.picture_writer; print('numpy' in sys.modules)"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip() == "False", proc.stderr[-2000:]


def test_segment_panel_numbers_segments_from_one():
    import matplotlib

    matplotlib.use("Agg")
    from asc.viz import attention_figure

    analysis = {"spec": np.zeros((8, 50)), "probs": np.array([0.7, 0.2, 0.1]),
                "segment_probs": np.array([[0.7, 0.2, 0.1]]), "temporal": np.full(50, 0.02),
                "spatial": np.full(4, 0.25)}
    fig = attention_figure(analysis, 0.02, class_names=["a", "b", "c"])
    panel = next(ax for ax in fig.axes if ax.get_title() == "segment probabilities")
    assert [t.get_text() for t in panel.get_xticklabels()] == ["1"]  # one segment, one tick
