"""Sweeps as `wandb agent` runs them: the agent's environment and its `${args_no_hyphens}`
substitution into the sweep file's command, reproduced with W&B's own command builder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from helpers.cli import TINY, asc

REPO = Path(__file__).resolve().parents[1]


def agent_run(sweep_file: Path, sweep_id: str, run_id: str, params: dict, cwd: Path) -> subprocess.CompletedProcess:
    """One run exactly as wandb.wandb_agent.Agent._command_run starts it (no function, not Windows)."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils
    from wandb.sdk.lib import config_util

    sweep = yaml.safe_load(sweep_file.read_text())
    command = {"type": "run", "run_id": run_id, "program": sweep["program"],
               "args": {k: {"value": v} for k, v in params.items()}}
    env = dict(os.environ)
    env["WANDB_SWEEP_ID"] = sweep_id
    env["WANDB_RUN_ID"] = run_id
    param_path = os.path.join(env.get("WANDB_DIR", ""), "wandb", f"sweep-{sweep_id}", f"config-{run_id}.yaml")
    env["WANDB_SWEEP_PARAM_PATH"] = param_path
    config_util.save_config_file_from_dict(str(cwd / param_path), command["args"])
    sweep_vars = sweep_utils.create_sweep_command_args(command)
    sweep_vars["interpreter"] = ["python"]
    sweep_vars["program"] = [command["program"]]
    sweep_vars["env"] = ["/usr/bin/env"]
    command_list = []
    for c in sweep_utils.create_sweep_command(list(sweep["command"])):
        c = str(c)
        if c.startswith("${") and c.endswith("}"):
            command_list += sweep_vars.get(c[2:-1]) or []
        else:
            command_list += [c]
    # `asc` as installed: the venv's console script, importing this checkout
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run(command_list, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_two_agent_runs_train_into_their_own_folders(tmp_path):
    from asc.sweep import run_name
    from helpers.wandb_offline import read_run

    # the shipped sweep file, its command made tiny and pointed at this checkout and tmp_path
    sweep = yaml.safe_load((REPO / "experiments" / "sweeps" / "pooling_ablation.yaml").read_text())
    assert "logger.mode=offline" not in sweep["command"] and sweep["metric"]["name"] == "mean/val/acc"
    cmd = [str(REPO / c) if c == "experiments/demo.yaml" else c for c in sweep["command"]]
    i = cmd.index("${args_no_hyphens}")
    sweep["command"] = cmd[:i] + [f"output_dir={tmp_path / 'runs'}", *TINY] + cmd[i:]
    sweep_file = tmp_path / "pooling_ablation.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep, sort_keys=False))

    runs = {"ab12cd34": {"model.variant": "stap", "augment.mix": "bc"},
            "ef56gh78": {"model.variant": "stap", "augment.mix": "none"}}
    for run_id, params in runs.items():
        proc = agent_run(sweep_file, "swp0001", run_id, params, tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    folders = {run_id: tmp_path / "runs" / run_name("pooling_ablation", p) for run_id, p in runs.items()}
    assert len(set(folders.values())) == 2
    for run_id, exp in folders.items():
        res = json.loads((exp / "results.json").read_text())
        assert res["complete"] and [f["fold"] for f in res["folds"]] == [1, 2]
        assert res["config"]["augment"]["mix"] == runs[run_id]["augment.mix"]
        assert res["config"]["experiment"]["sweep"] == "pooling_ablation"
        # the aggregate run is the agent's run: its id, the sweep metric and test beside it, honest tags
        agg = [read_run(d) for d in (exp / "wandb").glob("offline-run-*")]
        agg = [r for r in agg if r["run"]["job_type"] == "aggregate"]
        assert len(agg) == 1 and agg[0]["run"]["id"] == run_id
        assert "mean/val/acc" in agg[0]["summary"] and "mean/test/acc" in agg[0]["summary"]
        tags = set(agg[0]["run"]["tags"])
        assert {"sweep:pooling_ablation", f"mix:{runs[run_id]['augment.mix']}", "model:stap"} <= tags
        assert ("bc" in tags) == (runs[run_id]["augment.mix"] == "bc") and "demo" in tags
    # names: short and readable
    assert folders["ef56gh78"].name.startswith("pooling_ablation_mix=none,variant=stap-")

    # `asc sweep --local` of the same parameters lands in the same folders: nothing trains again.
    # A value that fails (mix=nope) is recorded as failed and the sweep goes on.
    sweep["parameters"]["augment.mix"]["values"] = ["nope", "bc", "none"]
    sweep_file.write_text(yaml.safe_dump(sweep, sort_keys=False))
    proc = asc("sweep", str(sweep_file), "--local", "model.variant=stap", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stdout.count("already finished") == 4
    assert "run 1 FAILED (augment.mix='nope' is not allowed" in proc.stdout
    out = json.loads((tmp_path / "runs" / "pooling_ablation" / "sweep.json").read_text())
    assert [f["augment.mix"] for f in out["failed"]] == ["nope"] and len(out["rows"]) == 2
    assert {r["experiment"] for r in out["rows"]} == {str(f) for f in folders.values()}
    md = (tmp_path / "runs" / "pooling_ablation" / "sweep.md").read_text().splitlines()
    assert md[0] == "| rank | model.variant | augment.mix | mean/val/acc (%) | test acc (%) | macro-F1 (%) | folds |"

    # another base setting for the same parameters: the error's advice (output_dir=...) works
    sweep["parameters"]["augment.mix"]["values"] = ["none"]
    sweep_file.write_text(yaml.safe_dump(sweep, sort_keys=False))
    proc = asc("sweep", str(sweep_file), "--local", "model.variant=stap", "optim.lr=0.01", cwd=tmp_path)
    assert proc.returncode == 1 and "different config" in proc.stdout and "output_dir=<new folder>" in proc.stdout
    proc = asc("sweep", str(sweep_file), "--local", "model.variant=stap", "optim.lr=0.01",
               f"output_dir={tmp_path / 'runs2'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "runs2" / run_name("pooling_ablation", runs["ef56gh78"]) / "results.json").is_file()


def test_run_names_are_short_and_exact():
    from asc.sweep import run_name

    a = run_name("lr", {"optim.lr": 0.0012345678901234567, "model.dropout": 0.31234567})
    assert a.startswith("lr_dropout=0.312,lr=0.00123-") and len(a.split("-")[-1]) == 6
    assert run_name("lr", {"optim.lr": 0.0012345678901234, "model.dropout": 0.31234567}) != a  # hash of exact values
    # the same values in another order or coming back from JSON (1.0 as 1) name the same run
    assert run_name("s", {"seed": 1.0, "model.variant": "stap"}) == run_name("s", {"model.variant": "stap", "seed": 1})


def test_sweep_count_zero_runs_nothing(tmp_path):
    proc = asc("sweep", str(REPO / "experiments" / "sweeps" / "pooling_ablation.yaml"), "--local", "--count", "0",
               f"output_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2 and "--count 0" in proc.stderr and "=== sweep" not in proc.stdout
    assert not any(tmp_path.iterdir())


def test_tags_follow_the_resolved_config():
    from asc.config import load_config
    from asc.tracking import run_tags

    demo = REPO / "experiments" / "demo.yaml"
    assert run_tags(load_config(demo)) == ["demo", "synthetic", "stap", "bc"]
    tags = run_tags(load_config(demo, ["augment.mix=none", "model.variant=cnn", "experiment.sweep=s"]))
    assert tags == ["demo", "synthetic", "sweep:s", "model:cnn", "mix:none"]
