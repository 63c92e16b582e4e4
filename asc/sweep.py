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

Reading and expanding the sweep file is :mod:`asc.sweep_file`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import yaml

from asc.errors import AscError
from asc.sweep_file import base_arguments, expand, load_sweep, pin_parameters
from asc.tables import format_markdown

__all__ = ["base_arguments", "expand", "load_sweep", "pin_parameters", "run_local", "run_name"]


def _plain(value):
    """A parameter value as JSON would carry it (1.0 -> 1), so that values coming back from
    the W&B server name the same run as the values of the sweep file."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _short(value) -> str:
    value = _plain(value)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def run_name(sweep_name: str, assignment: dict) -> str:
    """The experiment name of one sweep run: ``<sweep>/<key>=<value>,...-<hash>``, keys in
    sorted order, floats rounded to 3 significant digits for reading, and a 6-digit hash of
    the exact values (so that values rounding alike still get their own folder).  The same
    for ``asc sweep --local`` and for ``asc cv`` under ``wandb agent`` (see
    :func:`agent_assignment`)."""
    keys = sorted(assignment)
    exact = json.dumps([[k, _plain(assignment[k])] for k in keys], default=str)
    digest = hashlib.sha1(exact.encode()).hexdigest()[:6]
    parts = [f"{k.split('.')[-1]}={_short(assignment[k])}" for k in keys]
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


def chosen_epoch_val_metrics(fold_dir: Path) -> dict:
    """``val/acc`` and ``val/loss`` at the epoch the fold's test used (the first epoch of
    highest val/acc: best.ckpt), read from ``fold-<k>/metrics.csv``; {} without a
    validation split."""
    path = Path(fold_dir) / "metrics.csv"
    if not path.is_file():
        return {}
    best: dict = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("val/acc") and (not best or float(row["val/acc"]) > best["val/acc"]):
                best = {"val/acc": float(row["val/acc"])}
                if row.get("val/loss"):
                    best["val/loss"] = float(row["val/loss"])
    return best


def with_val_metrics(results: dict, exp_dir: Path) -> dict:
    """results.json content with ``val/acc`` and ``val/loss`` (at the chosen epoch) in each
    fold row and in ``mean``/``std``: taken as they are when results.json holds them, else
    read from each fold's metrics.csv."""
    if "val/acc" in results.get("mean", {}):
        return results
    folds = [{**chosen_epoch_val_metrics(Path(exp_dir) / f"fold-{r['fold']}"), **r} for r in results["folds"]]
    mean, std = dict(results["mean"]), dict(results["std"])
    for key in ("val/acc", "val/loss"):
        values = [r[key] for r in folds if key in r]
        if values and len(values) == len(folds):
            mean[key], std[key] = float(np.mean(values)), float(np.std(values))
    return {**results, "folds": folds, "mean": mean, "std": std}


def metric_value(results: dict, metric: str) -> tuple[float, float, list[float]]:
    """(mean, std, per-fold values) of the sweep metric from a results.json (see
    :func:`with_val_metrics` for val/* metrics); ``mean/test/acc`` and ``test/acc`` both
    name the fold mean."""
    key = metric.split("/", 1)[1] if metric.startswith(("mean/", "std/")) else metric
    if key not in results["mean"]:
        raise AscError(f"sweep metric {metric!r} is not in results.json (has: {', '.join(results['mean'])})")
    return results["mean"][key], results["std"][key], [f[key] for f in results["folds"]]


def run_local(path: str | Path, count: int | None = None,
              extra: list[str] | None = None, parallel: int = 1) -> tuple[list[dict], list[dict]]:
    """Run the sweep here; returns the table rows and the failed runs.  A configuration that fails (a bad
    value, an error while training) is reported and recorded in sweep.json under
    ``failed``, and the sweep goes on with the next one.  ``parallel`` > 1 runs that many
    configurations at once, each an ``asc cv`` child process (asc/parallel.py: one CPU
    thread each on a CPU; output in ``<run>/log.txt``); each run's own
    ``cv.parallel_folds`` still applies inside it."""
    from asc.config import load_config
    from asc.io import write_json_atomic
    from asc.parallel import check_parallel

    check_parallel(parallel, "--parallel")
    full = load_sweep(path)
    sweep, extra = pin_parameters(full, list(extra or []))
    config_file, base = base_arguments(sweep)
    base = base + [f"experiment.sweep={sweep['name']}"]
    output_dir = Path(load_config(config_file, base + extra).output_dir)
    assignments = expand(sweep, count)
    metric, goal = sweep["metric"]["name"], sweep["metric"].get("goal", "maximize")
    rows, failed = [], []
    runs = []  # (number, assignment, name, overrides, cfg) of the configurations that load
    for n, assignment in enumerate(assignments, 1):
        name = run_name(sweep["name"], assignment)
        overrides = (base + [f"{k}={v}" for k, v in assignment.items()] + extra + [f"experiment.name={name}"])
        try:
            runs.append((n, assignment, name, overrides, load_config(config_file, overrides)))
        except Exception as e:  # noqa: BLE001 - one bad configuration must not stop the sweep
            print(f"sweep {sweep['name']}: run {n} FAILED ({_reason(e)}); going on with the next run")
            failed.append({**assignment, "experiment": str(output_dir / name), "error": _reason(e)})
    if parallel > 1 and runs:
        rows, more = _run_parallel(sweep["name"], runs, len(assignments), config_file, output_dir, metric, parallel)
        failed += more
    for n, assignment, name, _, cfg in runs if parallel == 1 else []:
        print(f"\n=== sweep {sweep['name']}: run {n}/{len(assignments)}: "
              f"{', '.join(f'{k}={_short(v)}' for k, v in assignment.items())}")
        try:
            from asc.experiment import run_cv

            rows.append(table_row(assignment, run_cv(cfg), metric, output_dir / name))
        except Exception as e:  # noqa: BLE001 - one bad configuration must not stop the sweep
            print(f"sweep {sweep['name']}: run {n} FAILED ({_reason(e)}); going on with the next run")
            failed.append({**assignment, "experiment": str(output_dir / name), "error": _reason(e)})
    if sweep["parameters"] != full["parameters"] and full.get("method", "grid") == "grid":
        # a pinned part of the sweep: the table still lists every finished run of the whole grid
        ran = {r["experiment"] for r in rows} | {r["experiment"] for r in failed}
        for assignment in expand(full):
            exp_dir = output_dir / run_name(full["name"], assignment)
            if str(exp_dir) not in ran and (exp_dir / "results.json").is_file():
                results = json.loads((exp_dir / "results.json").read_text())
                if results.get("complete"):
                    rows.append(table_row(assignment, results, metric, exp_dir))
    rows.sort(key=lambda r: r[metric], reverse=goal == "maximize")
    out_dir = output_dir / sweep["name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    params = list(sweep["parameters"])
    pooled = pool_seeds(rows, params, metric)
    if rows:
        write_tables(rows, params, metric, out_dir, pooled)
    write_json_atomic(out_dir / "sweep.json", {"sweep": full, "rows": rows, "over_seeds": pooled,
                                               "failed": failed})
    if failed:
        print(f"\n{len(failed)} of {len(assignments)} runs failed (listed in {out_dir / 'sweep.json'}):")
        for r in failed:
            print(f"  {r['experiment']}: {r['error']}")
    return rows, failed


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
              f"{', '.join(f'{k}={_short(v)}' for k, v in assignment.items())}", flush=True)

    def finished(job):
        number, assignment, name = job.key
        results = output_dir / name / "results.json"
        try:
            if job.returncode != 0 or not results.is_file():
                raise AscError(last_error(job.log) or f"exit status {job.returncode}")
            rows.append(table_row(assignment, json.loads(results.read_text()), metric, output_dir / name))
            print(f"sweep {sweep_name}: run {number}/{total} finished in {job.seconds:.0f} s: {metric} "
                  f"{_percent(rows[-1], metric)} %", flush=True)
        except Exception as e:  # noqa: BLE001 - one bad configuration must not stop the sweep
            print(f"sweep {sweep_name}: run {number}/{total} FAILED ({_reason(e)}); log: {job.log}", flush=True)
            failed.append({**assignment, "experiment": str(output_dir / name), "error": _reason(e),
                           "log": str(job.log)})

    run_jobs(jobs, n, started, finished)
    return rows, failed


def table_row(assignment: dict, results: dict, metric: str, exp_dir: Path) -> dict:
    """One experiment's line in the sweep table, from its results.json content."""
    results = with_val_metrics(results, exp_dir)
    mean, std, folds = metric_value(results, metric)
    f1 = [f.get("test/macro_f1", float("nan")) for f in results["folds"]]
    test = [f.get("test/acc", float("nan")) for f in results["folds"]]
    return {**assignment, metric: mean, f"{metric} std": std, "macro_f1": float(np.mean(f1)),
            "macro_f1 std": float(np.std(f1)), "test_acc": float(np.mean(test)), "test_acc std": float(np.std(test)),
            "folds": len(folds), "fold_values": folds, "fold_macro_f1": f1, "fold_test_acc": test,
            "experiment": str(exp_dir)}


def pool_seeds(rows: list[dict], params: list[str], metric: str) -> list[dict]:
    """One row per configuration of the parameters other than ``seed``, pooling its seeds:
    mean and std over all (seed, fold) results and the std of the per-seed fold means
    (how much the training seed alone moves the result).  Empty unless ``seed`` is a
    parameter taking several values.  Ranked by the pooled mean (higher first)."""
    if "seed" not in params or len({r["seed"] for r in rows}) < 2:
        return []
    others = [p for p in params if p != "seed"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[p] for p in others), []).append(r)
    pooled = []
    for key, runs in groups.items():
        values = [v for r in runs for v in r["fold_values"]]
        f1 = [v for r in runs for v in r["fold_macro_f1"]]
        test = [v for r in runs for v in r.get("fold_test_acc", [])]
        test_cols = {"test_acc": float(np.mean(test)), "test_acc std": float(np.std(test))} if test else {}
        pooled.append({**test_cols, **dict(zip(others, key)), "seeds": sorted(r["seed"] for r in runs),
                       metric: float(np.mean(values)), f"{metric} std": float(np.std(values)),
                       f"{metric} seed std": float(np.std([r[metric] for r in runs])),
                       "macro_f1": float(np.mean(f1)), "macro_f1 std": float(np.std(f1)), "results": len(values)})
    return sorted(pooled, key=lambda r: r[metric], reverse=True)


def write_tables(rows: list[dict], params: list[str], metric: str, out_dir: Path,
                 pooled: list[dict] | None = None) -> None:
    """sweep.csv and sweep.md (every run, ranked), and with ``pooled`` (from
    :func:`pool_seeds`) sweep_over_seeds.csv and a second table in sweep.md."""
    stats = (metric, f"{metric} std", "macro_f1", "macro_f1 std")
    # a validation metric ranks the runs; the test accuracy is reported beside it
    beside = metric not in ("mean/test/acc", "test/acc") and all("test_acc" in r for r in rows)
    test_head, test_md = (["test_acc mean", "test_acc std"], ["test acc (%)"]) if beside else ([], [])
    _write_csv(out_dir / "sweep.csv",
               ["rank", *params, f"{metric} mean", f"{metric} std", *test_head, "macro_f1 mean", "macro_f1 std",
                "folds", "experiment"],
               [[i, *(r[p] for p in params), *(f"{r[k]:.4f}" for k in stats[:2]),
                 *((f"{r['test_acc']:.4f}", f"{r['test_acc std']:.4f}") if beside else ()),
                 *(f"{r[k]:.4f}" for k in stats[2:]), r["folds"], r["experiment"]]
                for i, r in enumerate(rows, 1)])
    lines = format_markdown(["rank", *params, f"{metric} (%)", *test_md, "macro-F1 (%)", "folds"],
                      [[i, *(_short(r[p]) for p in params), _percent(r, metric),
                        *([_percent(r, "test_acc")] if beside else []), _percent(r, "macro_f1"), r["folds"]]
                       for i, r in enumerate(rows, 1)])
    if pooled:
        others = [p for p in params if p != "seed"]
        _write_csv(out_dir / "sweep_over_seeds.csv",
                   ["rank", *others, "seeds", f"{metric} mean", f"{metric} std", f"{metric} seed std",
                    "macro_f1 mean", "macro_f1 std", "results"],
                   [[i, *(r[p] for p in others), " ".join(map(str, r["seeds"])),
                     *(f"{r[k]:.4f}" for k in (*stats[:2], f"{metric} seed std", *stats[2:])), r["results"]]
                    for i, r in enumerate(pooled, 1)])
        lines += ["", "Pooled over seeds: mean ± std over every (seed, fold) result; seed std = std of the "
                  "per-seed means.", ""]
        beside = beside and all("test_acc" in r for r in pooled)
        lines += format_markdown(["rank", *others, "seeds", f"{metric} (%)", "seed std (%)", *test_md, "macro-F1 (%)",
                            "results"],
                           [[i, *(r[p] for p in others), ",".join(map(str, r["seeds"])), _percent(r, metric),
                             f"{100 * r[metric + ' seed std']:.2f}", *([_percent(r, "test_acc")] if beside else []),
                             _percent(r, "macro_f1"), r["results"]]
                            for i, r in enumerate(pooled, 1)])
    (out_dir / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    print(f"\nsweep table: {out_dir / 'sweep.md'} and {out_dir / 'sweep.csv'}"
          + (f" (pooled over seeds: {out_dir / 'sweep_over_seeds.csv'})" if pooled else ""))


def _percent(row: dict, key: str) -> str:
    """``row[key]`` ± ``row[key + ' std']`` in percent."""
    return f"{100 * row[key]:.2f} ± {100 * row[key + ' std']:.2f}"


def _write_csv(path: Path, head: list[str], body: list[list]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(body)
