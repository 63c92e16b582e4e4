"""Folds and sweep runs in parallel processes (cv.parallel_folds, asc sweep --parallel): the
same results as one after the other, a failing fold that does not stop the others, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from helpers.cli import TINY, asc, ctrl_c_as_in_a_terminal

SEQUENTIAL_1_THREAD = {"OMP_NUM_THREADS": "1"}  # what each parallel fold uses on a CPU


def test_parallel_folds_must_be_a_positive_integer(tmp_path):
    from asc.errors import AscError
    from asc.parallel import check_parallel

    assert check_parallel(3) == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(AscError, match="must be an integer >= 1"):
            check_parallel(bad)
    proc = asc("cv", f"output_dir={tmp_path}", "cv.parallel_folds=0", *TINY, cwd=tmp_path)
    assert proc.returncode == 2 and "cv.parallel_folds=0 must be a positive number" in proc.stderr  # the config check
    assert "Traceback" not in proc.stderr
    proc = asc("cv", f"output_dir={tmp_path}", "cv.parallel_folds=two", *TINY, cwd=tmp_path)
    assert proc.returncode == 2 and "cv.parallel_folds" in proc.stderr and "Traceback" not in proc.stderr


def test_parallel_folds_need_one_device_however_it_is_written(tmp_path):
    from omegaconf import OmegaConf

    from asc.experiment import single_device

    def trainer(**kw):
        return OmegaConf.create({"accelerator": "cpu", **kw})

    for one in ({}, {"devices": 1}, {"devices": "1"}, {"devices": [0]}, {"devices": "auto"}):
        assert single_device(trainer(**one)), one
    for more in ({"devices": 2}, {"devices": [0, 1]}, {"devices": 1, "num_nodes": 2}, {"devices": "0,1"},
                 {"devices": -1}):  # -1: every GPU, which Lightning refuses on the CPU
        assert not single_device(trainer(**more)), more
    for devices in ("trainer.devices=2", "trainer.devices=[0,1]"):
        proc = asc("cv", f"output_dir={tmp_path}", "cv.parallel_folds=2", devices, *TINY, cwd=tmp_path)
        assert proc.returncode == 2 and "runs each fold as its own process on one device" in proc.stderr
        assert "Traceback" not in proc.stderr


def _jobs_script(tmp_path, body: str) -> str:
    return textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from asc.parallel import Job, run_jobs
        tmp = Path({str(tmp_path)!r})
        def child(code):
            return [sys.executable, "-c", code]
    """) + textwrap.dedent(body)


def test_run_jobs_at_most_n_at_once_and_a_failure_does_not_stop_the_others(tmp_path):
    from asc.parallel import Job, last_error, run_jobs

    # each job records when it ran; job 2 fails with an error line
    code = ("import sys, time, pathlib; p = pathlib.Path(sys.argv[1]); p.write_text(str(time.time())); "
            "time.sleep(0.3); print('working'); (sys.argv[2] == 'fail') and sys.exit(print('error: no luck') or 2); "
            "p.with_suffix('.end').write_text(str(time.time()))")
    jobs = [Job(k, f"job {k}", [sys.executable, "-c", code, str(tmp_path / f"{k}.start"), "fail" if k == 2 else ""],
                tmp_path / f"log-{k}.txt", dict(os.environ)) for k in range(1, 5)]
    done = []
    run_jobs(jobs, 2, on_done=lambda j: done.append(j.key), poll_s=0.02)
    assert sorted(done) == [1, 2, 3, 4] and [j.returncode for j in jobs] == [0, 2, 0, 0]
    assert last_error(tmp_path / "log-2.txt") == "no luck" and "working" in (tmp_path / "log-1.txt").read_text()
    starts = sorted(float((tmp_path / f"{k}.start").read_text()) for k in range(1, 5))
    ends = sorted(float((tmp_path / f"{k}.end").read_text()) for k in (1, 3, 4))
    assert starts[2] >= ends[0] - 0.05  # the third started only after one of the first two ended


def test_an_error_in_the_parent_stops_the_children_still_running(tmp_path):
    from asc.parallel import Job, run_jobs

    quick = [sys.executable, "-c", "pass"]
    slow = [sys.executable, "-c", "import time; time.sleep(60)"]
    jobs = [Job(0, "quick", quick, tmp_path / "quick.txt", dict(os.environ)),
            Job(1, "slow", slow, tmp_path / "slow.txt", dict(os.environ))]

    def fail(job):
        raise OSError("disk full")

    started = time.time()
    with pytest.raises(OSError, match="disk full"):
        run_jobs(jobs, 2, on_done=fail, poll_s=0.02)
    assert jobs[1].proc.poll() is not None and time.time() - started < 30  # stopped, not left to sleep


def test_ctrl_c_reaches_every_child_and_the_parent_stops(tmp_path):
    script = _jobs_script(tmp_path, """
        code = ("import signal, sys, time, pathlib; p = pathlib.Path(sys.argv[1]); "
                "signal.signal(signal.SIGINT, lambda *a: (p.write_text('stopped'), sys.exit(130))); "
                "p.with_suffix('.up').write_text('up'); time.sleep(60)")
        jobs = [Job(k, f"job {k}", child(code) + [str(tmp / f"{k}.sig")], tmp / f"log-{k}.txt", None)
                for k in range(3)]
        try:
            run_jobs(jobs, 2, poll_s=0.02)
        except KeyboardInterrupt:
            print("interrupted", [j.returncode for j in jobs])
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=ctrl_c_as_in_a_terminal)
    deadline = time.time() + 60
    while not ((tmp_path / "0.up").exists() and (tmp_path / "1.up").exists()):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)  # the parent only: it passes Ctrl-C on
    out, err = proc.communicate(timeout=60)
    assert "interrupted [130, 130, None]" in out, err
    assert (tmp_path / "0.sig").read_text() == "stopped" and (tmp_path / "1.sig").read_text() == "stopped"
    assert not (tmp_path / "2.up").exists()  # never started


@pytest.mark.slow
def test_parallel_folds_give_the_sequential_results(tmp_path):
    """Two folds at once (1 thread each) = the same folds one after the other at 1 thread."""
    common = ["experiment.name=tiny", "logger.mode=offline", *TINY, "trainer.max_epochs=2"]
    seq = asc("cv", f"output_dir={tmp_path / 'seq'}", *common, cwd=tmp_path, env=SEQUENTIAL_1_THREAD)
    assert seq.returncode == 0, seq.stderr[-3000:]
    par = asc("cv", f"output_dir={tmp_path / 'par'}", "cv.parallel_folds=2", *common, cwd=tmp_path)
    assert par.returncode == 0, par.stderr[-3000:]
    a = json.loads((tmp_path / "seq" / "tiny" / "results.json").read_text())
    b = json.loads((tmp_path / "par" / "tiny" / "results.json").read_text())
    assert b["complete"] and [f["fold"] for f in b["folds"]] == [1, 2] == [f["fold"] for f in a["folds"]]
    assert set(a) == set(b) and [set(f) for f in a["folds"]] == [set(f) for f in b["folds"]]
    same = ("test/acc", "test/macro_f1", "val/acc", "val/loss", "bof/acc", "confusion_matrix", "best_epoch")
    for fa, fb in zip(a["folds"], b["folds"]):
        assert {k: fa[k] for k in same} == {k: fb[k] for k in same}
    assert a["mean"] == b["mean"] and a["std"] == b["std"] and a["confusion_matrix_sum"] == b["confusion_matrix_sum"]
    # progress: one line per fold finishing; the same summary table; each fold's own log and W&B run
    assert par.stdout.count(" finished in ") == 2 and "mean±std" in par.stdout
    table = lambda out: [l.split()[:8] for l in out.splitlines() if l.split()[:2] in (["1", "6"], ["2", "6"])]  # noqa: E731
    assert table(seq.stdout) == table(par.stdout)
    for k in (1, 2):
        log = (tmp_path / "par" / "tiny" / f"fold-{k}" / "log.txt").read_text()
        assert f"fold {k}: process" in log and "1 CPU thread(s)" in log and f"fold {k} epoch 2/2" in log
    from helpers.wandb_offline import read_run

    runs = [read_run(d)["run"] for d in (tmp_path / "par" / "tiny" / "wandb").glob("offline-run-*")]
    assert sorted(r["job_type"] for r in runs) == ["aggregate", "fold-1", "fold-2"]
    assert {r["id"] for r in runs if r["job_type"] != "aggregate"} == {f["wandb_run_id"] for f in b["folds"]}


@pytest.mark.slow
def test_a_failing_fold_leaves_the_other_and_a_rerun_completes_it(tmp_path):
    """A real failure in fold 2 only (its checkpoint folder cannot be made): fold 1 finishes,
    the command exits non-zero naming fold 2 and its log; once fixed, a re-run trains fold 2 only."""
    exp = tmp_path / "tiny"
    (exp / "fold-2").mkdir(parents=True)
    (exp / "fold-2" / "checkpoints").write_text("a file where the checkpoint folder goes")
    args = ["cv", "experiment.name=tiny", f"output_dir={tmp_path}", "logger.mode=disabled", "cv.parallel_folds=2",
            *TINY]
    proc = asc(*args, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    log = exp / "fold-2" / "log.txt"
    assert f"fold(s) 2 failed (fold 2: {log})" in proc.stderr
    assert "fold 2: FAILED" in proc.stdout and "FileExistsError" in proc.stdout
    assert "Traceback" in log.read_text()
    res = json.loads((exp / "results.json").read_text())
    assert [f["fold"] for f in res["folds"]] == [1] and res["complete"] is False
    assert (exp / "fold-1" / "result.json").is_file() and not (exp / "fold-2" / "result.json").exists()

    (exp / "fold-2" / "checkpoints").unlink()
    again = asc(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "fold 1: already finished" in again.stdout and "1 fold(s) to run" in again.stdout
    res = json.loads((exp / "results.json").read_text())
    assert [f["fold"] for f in res["folds"]] == [1, 2] and res["complete"] is True


@pytest.mark.slow
def test_sweep_runs_in_parallel(tmp_path):
    import yaml

    from asc.sweep import run_name

    sweep = {"name": "par", "method": "grid", "metric": {"name": "mean/test/acc", "goal": "maximize"},
             "parameters": {"augment.mix": {"values": ["bc", "none", "nope"]}},
             "command": ["asc", "cv", f"output_dir={tmp_path / 'runs'}", "logger.mode=disabled", "cv.folds=[1]",
                         *TINY, "${args_no_hyphens}"]}
    (tmp_path / "par.yaml").write_text(yaml.safe_dump(sweep))
    proc = asc("sweep", str(tmp_path / "par.yaml"), "--local", "--parallel", "2", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "2 run(s), 2 at a time (1 CPU thread(s) each)" in proc.stdout and proc.stdout.count("finished in") == 2
    out = json.loads((tmp_path / "runs" / "par" / "sweep.json").read_text())
    assert sorted(r["augment.mix"] for r in out["rows"]) == ["bc", "none"]
    assert [f["augment.mix"] for f in out["failed"]] == ["nope"]
    for mix in ("bc", "none"):
        exp = tmp_path / "runs" / run_name("par", {"augment.mix": mix})
        assert json.loads((exp / "results.json").read_text())["complete"] and (exp / "log.txt").is_file()
    proc = asc("sweep", str(tmp_path / "par.yaml"), "--local", "--parallel", "0", cwd=tmp_path)
    assert proc.returncode == 2 and "--parallel=0 must be an integer >= 1" in proc.stderr
