"""asc bench: the steady-state structure, each section written as it finishes (no timing asserted)."""

import json

import numpy as np
import pytest
import torch

from asc import bench

SMALL = ["model.conv_channels=[4,8,8]", "model.rnn_hidden=8", "model.rnn_layers=1", "data.batch_size=4",
         "data.num_workers=0", "data.segment_seconds=1.0", "data.eval_hop_seconds=null"]


def test_steady_rate_excludes_warmup_and_takes_the_median():
    calls = []
    rate = bench.steady_rate(lambda: calls.append(1), 10, bench.Schedule(batches=2, epochs=3, warmup=1),
                             torch.device("cpu"))
    assert len(calls) == 4 and len(rate["epoch_clips_per_s"]) == 3
    assert rate["clips_per_s"] == pytest.approx(float(np.median(rate["epoch_clips_per_s"])), rel=1e-3)
    assert bench.FULL.batches >= 50 and bench.FULL.epochs >= 3 and bench.FULL.warmup >= 1
    assert (bench.QUICK.epochs, bench.QUICK.warmup) == (bench.FULL.epochs, bench.FULL.warmup)


def test_training_and_loader_sections(tmp_path):
    schedule = bench.Schedule(batches=2, epochs=1, warmup=1)
    clips = bench.make_cached_litis(tmp_path, 22050, n_clips=schedule.batches * 4)
    rows = bench.bench_training(torch.device("cpu"), clips, schedule, precisions=("32",), overrides=SMALL)
    assert len(rows) == 8 and {r["pipeline"] for r in rows} == {"with data", "random tensors"}
    assert all(r["clips_per_s"] > 0 and len(r["epoch_clips_per_s"]) == 1 for r in rows)
    loader = bench.bench_loader(torch.device("cpu"), clips, schedule, quick=True, overrides=SMALL)
    assert [r["workers"] for r in loader] == [0, 2, "on device"] and all(r["loader_clips_per_s"] > 0 for r in loader)
    assert all(r["ratio"] == r["train_clips_per_s"] / r["random_clips_per_s"] for r in loader)
    profile = bench.bench_step_profile(torch.device("cpu"), clips, steps=2, overrides=SMALL)
    assert [r["pipeline"] for r in profile] == ["random tensors", "on device"]  # pinned: GPU only
    assert all(r["steps"] == 2 and r["wall_ms_per_step"] > 0 and r["busy_fraction"] is None for r in profile)
    assert all(r["syncs_per_step"] == 0 and r["kernel_launches_per_step"] == 0 for r in profile)  # no CUDA here
    assert "where a training step goes" in bench.format_result(
        {"machine": bench.machine(), "device": "cpu", "step_profile": profile, "peak_rss_mb": 1.0, "seconds": 1.0})


def _run_until_training(tmp_path, monkeypatch, loader, at_training=None) -> dict:
    """bench.run with stub front-end and loader sections (``loader`` is the loader section)
    stopped by Ctrl-C when the training section starts (after ``at_training(out)``); the
    JSON it kept."""
    out = tmp_path / "bench.json"
    monkeypatch.setattr(bench, "bench_frontends", lambda dev, clips: [{"frontend": "gammatone"}])
    monkeypatch.setattr(bench, "make_cached_litis", lambda *a, **k: None)
    monkeypatch.setattr(bench, "bench_loader", loader)

    def killed(*a, **k):
        if at_training:
            at_training(out)
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "bench_training", killed)
    with pytest.raises(KeyboardInterrupt):
        bench.run("cpu", out, quick=True, compile_check=False)
    return json.loads(out.read_text())


def test_each_section_is_written_as_it_finishes(tmp_path, monkeypatch):
    def written_so_far(out):
        assert json.loads(out.read_text())["sections"] == ["complexity", "frontends", "loader"]

    kept = _run_until_training(tmp_path, monkeypatch, lambda *a, **k: [{"workers": 0}], written_so_far)
    assert kept["loader"] == [{"workers": 0}] and "training" not in kept and kept["schedule"]["batches"] == 3


def test_each_section_reports_its_own_peak_memory(tmp_path, monkeypatch):
    def big(*a, **k):  # a section that holds 300 MB while it runs
        block = np.ones(300 * 2**20 // 8)
        return [{"workers": 0, "first": float(block[0])}]

    kept = _run_until_training(tmp_path, monkeypatch, big)
    memory = kept["section_memory_mb"]
    if not memory["frontends"].get("peak_reset"):
        pytest.skip("no /proc/self/status or clear_refs here")
    assert memory["loader"]["peak"] - memory["frontends"]["peak"] > 250  # the peak restarts with each section
    assert memory["loader"]["anon"] < memory["loader"]["peak"] - 250  # the block is freed by the section's end
    assert kept["peak_rss_mb"] >= memory["loader"]["peak"]  # the whole run's peak survives the resets


def test_protocol_estimate_from_the_measured_fold():
    fold = {"epoch_train_s": [3.0, 1.0, 1.0], "epoch_val_s": [0.5, 0.5, 0.5], "steady_epoch_s": 1.0, "val_s": 0.5,
            "fold_wall_s": 10.5}
    e = bench.protocol_estimate(fold, epochs=100, splits=20)
    # the first epoch's 2 s beyond a steady one (start-up, compiling) stay in the fixed cost
    assert e["fold_fixed_s"] == pytest.approx(10.5 - 3 * 1.0 - 1.5) and e["fold_s"] == pytest.approx(6 + 100 * 1.5)
    assert e["protocol_min"] == pytest.approx(20 * 156 / 60, abs=0.05)


def test_profile_summary_counts_kernels_not_annotated_ranges():
    from types import SimpleNamespace as Event

    from asc.bench.training import profile_summary

    events = [Event(key="aten::conv1d", count=20, self_device_time_total=0, device_type="DeviceType.CPU"),
              Event(key="void conv_kernel", count=20, self_device_time_total=3000, device_type="DeviceType.CUDA"),
              Event(key="Optimizer.step#AdamW.step", count=10, self_device_time_total=5000,
                    device_type="DeviceType.CUDA", is_user_annotation=True),
              Event(key="cudaLaunchKernel", count=300, self_device_time_total=0, device_type="DeviceType.CPU"),
              Event(key="cuLaunchKernelEx", count=40, self_device_time_total=0, device_type="DeviceType.CPU"),
              Event(key="cudaMemcpyAsync", count=30, self_device_time_total=0, device_type="DeviceType.CPU"),
              Event(key="cudaStreamSynchronize", count=1, self_device_time_total=0, device_type="DeviceType.CPU")]
    s = profile_summary(events, steps=10, wall_s=0.1, cuda=True, own_syncs=1)
    assert s["device_busy_ms_per_step"] == pytest.approx(0.3) and s["busy_fraction"] == pytest.approx(0.03)
    assert (s["kernel_launches_per_step"], s["copies_per_step"], s["syncs_per_step"]) == (34, 3, 0)
    assert s["wall_ms_per_step"] == pytest.approx(10.0)
    assert profile_summary(events, 10, 0.1, cuda=False)["busy_fraction"] is None


def test_parallel_speedups_separate_the_fold_processes_start_up():
    from asc.bench.folds import parallel_speedups

    # the quiet 2-core run of docs/benchmarks.md: 4 folds, one process, then 2 processes at a time
    rows = [{"parallel_folds": 1, "wall_s": 35.5, "fold_s": [7.2, 6.6, 6.8, 6.3]},
            {"parallel_folds": 2, "wall_s": 42.3, "fold_s": [11.9, 11.9, 11.4, 11.4]},
            {"parallel_folds": 3, "wall_s": 40.0, "fold_s": [9.0, 9.0, 9.0, 9.0]}]
    one, two, three = parallel_speedups(rows, n_folds=4)
    assert one["speedup"] == 1.0 and two["speedup"] == pytest.approx(35.5 / 42.3)
    assert two["overlap_speedup"] == pytest.approx(2 * 6.725 / 11.65)
    assert one["outside_folds_s"] == pytest.approx(35.5 - 26.9) and "startup_per_wave_s" not in one
    assert two["startup_per_wave_s"] == pytest.approx(((42.3 - 2 * 11.65) - 8.6) / 2)  # 5.2 s per wave
    assert "overlap_speedup" not in three and "startup_per_wave_s" not in three  # 4 folds are no full waves of 3
    result = {"machine": bench.machine(), "device": "cpu", "peak_rss_mb": 1, "seconds": 1,
              "parallel_folds": [{**r, "folds": 4, "epochs": 10, "folds_per_min": 1.0} for r in (one, two)]}
    text = bench.format_result(result)
    assert "start-up s per wave" in text and "5.20" in text


def test_protocol_estimate_with_folds_side_by_side():
    fold = {"epoch_train_s": [2.0, 2.0], "epoch_val_s": [1.0, 1.0], "steady_epoch_s": 2.0, "val_s": 1.0,
            "fold_wall_s": 16.0}
    e = bench.protocol_estimate(fold, epochs=100, splits=20, parallel=8)
    assert e["fold_s"] == pytest.approx(10 + 300) and e["parallel_folds"] == 8
    assert e["protocol_min"] == pytest.approx(3 * 310 / 60, abs=0.05)  # 20 folds in 3 waves of at most 8


def test_litis_folds_side_by_side_in_their_own_processes(tmp_path):
    rows = bench.bench_litis_parallel(torch.device("cpu"), tmp_path, levels=[1, 2], n_clips=57, epochs=2,
                                      clip_seconds=2.0, overrides=[*SMALL, "data.eval_hop_seconds=1.0",
                                                                   "logger.attention_clips_per_class=0"])
    assert [r["parallel_folds"] for r in rows] == [1, 2] and not any("error" in r for r in rows)
    assert all(len(r["epoch_train_s"]) == 2 and r["steady_epoch_s"] > 0 and r["threads_per_process"] == 1
               for r in rows)
    assert rows[0]["epoch_speedup"] == pytest.approx(1.0)
    assert rows[1]["estimate"]["how"].startswith("2 folds side by side") and rows[1]["estimate"]["protocol_min"] > 0
    # each process trained its own split of the one shared cache
    written = sorted(p.name for p in tmp_path.glob("p2-*.json"))
    assert written == ["p2-0.json", "p2-1.json"] and len(list(tmp_path.glob("*.f16"))) == 1
    folds = [json.loads((tmp_path / name).read_text()) for name in written]
    assert [f["split_seed"] for f in folds] == [0, 1] and [len(f["test_clips"]) for f in folds] == [19, 19]
    assert folds[0]["test_clips"] != folds[1]["test_clips"]
    if folds[0]["process_memory_mb"]:  # Linux: each fold process's own peak, the largest reported
        assert rows[1]["process_peak_rss_mb"] == max(f["process_memory_mb"]["peak"] for f in folds) > 0
    text = bench.format_result({"machine": bench.machine(), "device": "cpu", "litis_parallel": rows,
                                "peak_rss_mb": 1.0, "seconds": 1.0})
    assert "folds side by side" in text and "waves of N folds" in text


def test_litis_fold_through_run_fold_then_pictures(tmp_path):
    """The end-to-end fold (official-like split, timed by a callback inside run_fold) and
    predict's files per second from its checkpoint, at toy sizes."""
    fold = bench.bench_litis_fold(torch.device("cpu"), tmp_path, n_clips=57, epochs=2, clip_seconds=2.0,
                                  overrides=[*SMALL, "data.eval_hop_seconds=1.0", "logger.attention_clips_per_class=0"])
    assert (fold["n_train"] + fold["n_val"], fold["n_test"], fold["classes"]) == (38, 19, 19)
    assert len(fold["epoch_train_s"]) == 2 and len(fold["epoch_val_s"]) == 2
    assert fold["steady_epoch_s"] == pytest.approx(fold["epoch_train_s"][1], abs=1e-3)
    assert fold["test_s"] > 0 and fold["final_val_s"] > 0
    assert fold["estimate"]["epochs"] == 100 and fold["estimate"]["protocol_min"] > 0
    pictures = bench.bench_pictures(torch.device("cpu"), fold["tested_checkpoint"], tmp_path, n_files=2, seconds=2.0)
    assert pictures["files"] == 2 and pictures["with_pictures"]["files_per_s"] > 0
    assert len(list((tmp_path / "predict" / "with" / "attention").glob("*.png"))) == 2
    assert pictures["one_picture_s"] > 0 and pictures["picture_workers"] == 0  # 2 files: drawn in this process
    text = bench.format_result({"machine": bench.machine(), "device": "cpu", "litis_fold": fold, "pictures": pictures,
                                "peak_rss_mb": 1.0, "seconds": 1.0, "sections": ["litis_fold", "pictures"]})
    assert "estimate, not measured" in text and "--attention" in text
    if fold["fold_memory_mb"]:  # Linux: the fold's own memory, after the cache was written
        assert fold["fold_memory_mb"]["peak"] >= fold["fold_memory_mb"]["anon"] > 0
        assert "host memory of the fold's main process" in text
        # memory as fit starts, after the first epoch and after the test; the peak never falls
        stages = fold["memory_mb_at"]
        assert list(stages) == ["fit_start", "first_epoch", "test_end"]
        assert stages["fit_start"]["peak"] <= stages["first_epoch"]["peak"] <= stages["test_end"]["peak"]
        assert "first epoch" in text


def test_bench_names_an_unknown_section(tmp_path, capsys):
    from asc.cli import main

    assert main(["bench", "--sections", "loader", "speed", "--out", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert "no section named speed" in err and "litis_parallel" in err and not (tmp_path / "b.json").exists()
