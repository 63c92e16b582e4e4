"""Sweeps: one file format for W&B agents online and ``asc sweep FILE --local`` offline.

A sweep file is a W&B sweep configuration (``program``/``method``/``metric``/
``parameters``/``command``).  Parameter names are ``asc`` config keys (``model.pooling``)
and the command passes them as ``key=value`` overrides (``${args_no_hyphens}``), so
``wandb sweep FILE`` + ``wandb agent ID`` run it online.  ``--local`` expands ``grid``
and ``random`` sweeps itself, runs each configuration as an ``asc cv`` experiment
(finished ones are skipped on a re-run; ``key=value`` arguments naming a sweep parameter
pin it, so disjoint parts of one sweep can run in parallel), and writes one comparison
table ranked by the sweep metric (mean ± std over folds) as CSV and Markdown.  When ``seed`` is a parameter
with several values, a second table pools each configuration's seeds: mean ± std over
all (seed, fold) results, and the spread of the per-seed means.

Reading and expanding the sweep file is :mod:`asc.sweep_file`; the tables are :mod:`asc.sweep_tables`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import yaml

from asc.errors import AscError
from asc.sweep_file import base_arguments, expand, load_sweep, pin_parameters, plain_value, short_value
from asc.sweep_tables import metric_text, pool_seeds, table_row, write_tables

__all__ = ["base_arguments", "expand", "load_sweep", "pin_parameters", "pool_seeds", "run_local", "run_name",
           "write_tables"]


def run_name(sweep_name: str, assignment: dict) -> str:
    """The experiment name of one sweep run: ``<sweep>/<key>=<value>,...-<hash>``, keys in
    sorted order, floats rounded to 3 significant digits for reading, and a 6-digit hash of
    the exact values (so that values rounding alike still get their own folder).  The same
    for ``asc sweep --local`` and for ``asc cv`` under ``wandb agent`` (see
    :func:`agent_assignment`)."""
    keys = sorted(assignment)
    exact = json.dumps([[k, plain_value(assignment[k])] for k in keys], default=str)
    digest = hashlib.sha1(exact.encode()).hexdigest()[:6]
    parts = [f"{k.split('.')[-1]}={short_value(assignment[k])}" for k in keys]
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", f"{sweep_name}/{','.join(parts)}-{digest}")


def agent_assignment() -> dict | None:
    """Under ``wandb agent``: this run's sweep parameters, read from the file the agent
    writes for it (``WANDB_SWEEP_PARAM_PATH``: ``{key: {value: v}}``); None otherwise."""
    path = os.environ.get("WANDB_SWEEP_PARAM_PATH")
    if not path or not os.environ.get("WANDB_SWEEP_ID") or not os.path.isfile(path):
        return None
    with open(path) as f:
        params = yaml.safe_load(f) or {}
    return {k: v["value"] for k, v in params.items() if isinstance(v, dict) and "value" in v}


def agent_overrides(config_file: str | None, overrides: list[str]) -> list[str]:
    """Overrides that give an ``asc cv`` started by ``wandb agent`` the experiment name of
    its parameters (empty when not under an agent).  The sweep's name comes from
    ``experiment.sweep`` in the sweep file's command (else ``sweep-<id>``)."""
    assignment = agent_assignment()
    if assignment is None:
        return []
    from asc.config import load_config

    sweep = load_config(config_file, overrides).experiment.sweep or f"sweep-{os.environ['WANDB_SWEEP_ID']}"
    return [f"experiment.sweep={sweep}", f"experiment.name={run_name(sweep, assignment)}"]


def run_local(path: str | Path, count: int | None = None,
              extra: list[str] | None = None, parallel: int = 1) -> tuple[list[dict], list[dict]]:
    """Run the sweep here; returns the table rows and the failed runs.  A configuration that fails (a bad
    value, an error while training) is reported and recorded in sweep.json under
    ``failed``, and the sweep goes on with the next one.  ``parallel`` > 1 runs that many
    configurations at once, each an ``asc cv`` child process (asc/parallel.py: one CPU
    thread each on a CPU; output in ``<run>/log.txt``); each run's own
    ``cv.parallel_folds`` still applies inside it."""
    from asc.config import load_config
    from asc.parallel import check_parallel

    check_parallel(parallel, "--parallel")
    full = load_sweep(path)
    sweep, extra = pin_parameters(full, list(extra or []))
    config_file, base = base_arguments(sweep)
    base = base + [f"experiment.sweep={sweep['name']}"]
    output_dir = Path(load_config(config_file, base + extra).output_dir)
    assignments = expand(sweep, count)
    metric, goal = sweep["metric"]["name"], sweep["metric"].get("goal", "maximize")
    runs, failed = _load_runs(sweep["name"], assignments, config_file, base, extra, output_dir)
    if parallel > 1 and runs:
        rows, more = _run_parallel(sweep["name"], runs, len(assignments), config_file, output_dir, metric, parallel)
    else:
        rows, more = _run_sequential(sweep["name"], runs, len(assignments), output_dir, metric)
    failed += more
    if sweep["parameters"] != full["parameters"] and full.get("method", "grid") == "grid":
        # a pinned part of the sweep: the table still lists every finished run of the whole grid
        rows += _finished_elsewhere(full, output_dir, metric, rows, failed)
    rows.sort(key=lambda r: r[metric], reverse=goal == "maximize")
    _record(full, sweep, rows, failed, len(assignments), output_dir)
    return rows, failed


def _load_runs(sweep_name: str, assignments: list[dict], config_file: str | None, base: list[str],
               extra: list[str], output_dir: Path) -> tuple[list, list[dict]]:
    """The configurations of ``assignments`` that load, as (number, assignment, name,
    overrides, cfg), and the failed runs of those that do not."""
    from asc.config import load_config

    runs, failed = [], []
    for n, assignment in enumerate(assignments, 1):
        name = run_name(sweep_name, assignment)
        overrides = (base + [f"{k}={'null' if v is None else v}" for k, v in assignment.items()] + extra
                     + [f"experiment.name={name}"])
        try:
            runs.append((n, assignment, name, overrides, load_config(config_file, overrides)))
        except Exception as e:  # noqa: BLE001 - one bad configuration must not stop the sweep
            print(f"sweep {sweep_name}: run {n} FAILED ({_reason(e)}); going on with the next run")
            failed.append({**assignment, "experiment": str(output_dir / name), "error": _reason(e)})
    return runs, failed


def _run_sequential(sweep_name: str, runs: list, total: int, output_dir: Path,
                    metric: str) -> tuple[list[dict], list[dict]]:
    """The sweep's runs one after the other in this process: their table rows and failed runs."""
    from asc.experiment import run_cv

    rows, failed = [], []
    for n, assignment, name, _, cfg in runs:
        print(f"\n=== sweep {sweep_name}: run {n}/{total}: "
              f"{', '.join(f'{k}={short_value(v)}' for k, v in assignment.items())}")
        try:
            rows.append(table_row(assignment, run_cv(cfg), metric, output_dir / name))
        except Exception as e:  # noqa: BLE001 - one bad configuration must not stop the sweep
            print(f"sweep {sweep_name}: run {n} FAILED ({_reason(e)}); going on with the next run")
            failed.append({**assignment, "experiment": str(output_dir / name), "error": _reason(e)})
    return rows, failed


def _finished_elsewhere(full: dict, output_dir: Path, metric: str, rows: list[dict], failed: list[dict]) -> list[dict]:
    """Table rows of the finished runs of the whole grid ``full`` that this command did not
    run (the other pinned parts of the sweep)."""
    ran = {r["experiment"] for r in rows} | {r["experiment"] for r in failed}
    more = []
    for assignment in expand(full):
        exp_dir = output_dir / run_name(full["name"], assignment)
        if str(exp_dir) not in ran and (exp_dir / "results.json").is_file():
            results = json.loads((exp_dir / "results.json").read_text())
            if results.get("complete"):
                more.append(table_row(assignment, results, metric, exp_dir))
    return more


def _record(full: dict, sweep: dict, rows: list[dict], failed: list[dict], total: int, output_dir: Path) -> None:
    """The sweep's bookkeeping in ``<output_dir>/<sweep>/``: the tables (ranked ``rows``, and
    pooled over seeds), sweep.json (the sweep file, rows, pooled rows, failed runs) and the
    list of failed runs on the terminal."""
    from asc.io import write_json_atomic

    metric = sweep["metric"]["name"]
    out_dir = output_dir / sweep["name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    params = list(sweep["parameters"])
    pooled = pool_seeds(rows, params, metric, sweep["metric"].get("goal", "maximize"))
    if rows:
        write_tables(rows, params, metric, out_dir, pooled)
    write_json_atomic(out_dir / "sweep.json", {"sweep": full, "rows": rows, "over_seeds": pooled,
                                               "failed": failed})
    if failed:
        print(f"\n{len(failed)} of {total} runs failed (listed in {out_dir / 'sweep.json'}):")
        for r in failed:
            print(f"  {r['experiment']}: {r['error']}")


def _reason(e: Exception) -> str:
    """One line saying why a run failed."""
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return reason if isinstance(e, AscError) else f"{type(e).__name__}: {reason}"


def _run_parallel(sweep_name: str, runs: list, total: int, config_file: str | None, output_dir: Path,
                  metric: str, n: int) -> tuple[list[dict], list[dict]]:
    """The sweep's runs as ``asc cv`` child processes, ``n`` at a time (asc/parallel.py)."""
    import sys

    from asc.parallel import Job, child_env, last_error, run_jobs, threads_per_child, uses_cpu

    n = min(n, len(runs))
    threads = threads_per_child(n, uses_cpu(runs[0][4]))
    env = child_env(threads)
    config = ["--config", str(config_file)] if config_file else []
    jobs = [Job((number, assignment, name), f"run {number}/{total}",
                [sys.executable, "-m", "asc.cli", "cv", *config, *overrides], output_dir / name / "log.txt", env)
            for number, assignment, name, overrides, _ in runs]
    print(f"sweep {sweep_name}: {len(runs)} run(s), {n} at a time ({threads} CPU thread(s) each); "
          "output of each in <run>/log.txt", flush=True)
    rows, failed = [], []

    def started(job):
        number, assignment, _ = job.key
        print(f"=== sweep {sweep_name}: run {number}/{total} started: "
              f"{', '.join(f'{k}={short_value(v)}' for k, v in assignment.items())}", flush=True)

    def finished(job):
        number, assignment, name = job.key
        results = output_dir / name / "results.json"
        try:
            if job.returncode != 0 or not results.is_file():
                raise AscError(last_error(job.log) or f"exit status {job.returncode}")
            rows.append(table_row(assignment, json.loads(results.read_text()), metric, output_dir / name))
            print(f"sweep {sweep_name}: run {number}/{total} finished in {job.seconds:.0f} s: {metric} "
                  f"{metric_text(rows[-1], metric)}", flush=True)
        except Exception as e:  # noqa: BLE001 - one bad configuration must not stop the sweep
            print(f"sweep {sweep_name}: run {number}/{total} FAILED ({_reason(e)}); log: {job.log}", flush=True)
            failed.append({**assignment, "experiment": str(output_dir / name), "error": _reason(e),
                           "log": str(job.log)})

    run_jobs(jobs, n, started, finished)
    return rows, failed


