"""A sweep file (W&B's sweep configuration format): reading and checking it, expanding its
``grid`` or ``random`` parameters into assignments, and pinning parameters from the command
line; its parameter values as JSON carries them and for reading.  Running the assignments and naming
their runs is :mod:`asc.sweep`, their tables :mod:`asc.sweep_tables`."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import yaml

from asc.errors import AscError

DISTRIBUTIONS = ("uniform", "log_uniform_values", "int_uniform", "q_uniform", "categorical")


def load_sweep(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AscError(f"sweep file {str(path)!r} not found (see experiments/sweeps/ for examples)")
    try:
        sweep = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise AscError(f"sweep file {str(path)!r} is not valid YAML: {e}") from None
    if not isinstance(sweep, dict) or "parameters" not in sweep:
        raise AscError(f"sweep file {str(path)!r} has no 'parameters' section")
    method = sweep.get("method", "grid")
    if method not in ("grid", "random"):
        raise AscError(f"{path}: method {method!r} cannot run locally; use grid or random (bayes needs W&B online)")
    metric = sweep.get("metric") or {}
    if not metric.get("name"):
        raise AscError(f"{path}: the sweep needs metric: {{name: mean/val/acc, goal: maximize}}")
    if metric.get("goal", "maximize") not in ("maximize", "minimize"):
        raise AscError(f"{path}: metric goal {metric['goal']!r} is neither maximize nor minimize")
    if "test" in str(metric["name"]).split("/"):  # mean/test/acc, test/macro_f1, ...
        # allowed (e.g. to rank finished runs for a report), but a choice made on the test
        # folds leaves no untouched test number: say so once, where the user will see it
        print(f"notice: {path}: the sweep ranks its runs by the test metric {metric['name']!r}, so what it "
              "picks is chosen on test folds; rank by a validation metric (mean/val/acc) to keep the test "
              "honest: test accuracy is reported beside it", file=sys.stderr)
    sweep.setdefault("name", path.stem)
    named = [c for c in map(str, sweep.get("command", [])) if c.startswith("experiment.sweep=")]
    if named and named[-1].partition("=")[2] != str(sweep["name"]):
        raise AscError(f"{path}: the command sets {named[-1]} but the sweep is named {sweep['name']!r}; "
                       "make them the same (run folders are named after experiment.sweep)")
    return sweep


def base_arguments(sweep: dict) -> tuple[str | None, list[str]]:
    """The ``--config FILE`` and literal ``key=value`` items of the sweep's command."""
    command = [str(c) for c in sweep.get("command", [])]
    config = None
    if "--config" in command and command.index("--config") + 1 < len(command):
        config = command[command.index("--config") + 1]
    overrides = [c for c in command if "=" in c and not c.startswith("$") and not c.startswith("-")]
    return config, overrides


def _value_list(name: str, spec: dict) -> list:
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    raise AscError(f"parameter {name!r}: a grid sweep needs 'values' or 'value'")


def _sample(name: str, spec: dict, rng: np.random.Generator):
    if "values" in spec or "value" in spec:
        values = _value_list(name, spec)
        return values[rng.integers(len(values))]
    dist = spec.get("distribution", "uniform")
    lo, hi = spec.get("min"), spec.get("max")
    if lo is None or hi is None:
        raise AscError(f"parameter {name!r}: distribution {dist!r} needs min and max")
    if dist == "uniform":
        return float(rng.uniform(lo, hi))
    if dist == "log_uniform_values":
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if dist == "int_uniform":
        return int(rng.integers(lo, hi + 1))
    if dist == "q_uniform":
        q = spec.get("q", 1.0)
        return float(round(rng.uniform(lo, hi) / q) * q)
    raise AscError(f"parameter {name!r}: distribution {dist!r} is not supported locally ({', '.join(DISTRIBUTIONS)})")


def expand(sweep: dict, count: int | None = None, seed: int = 0) -> list[dict]:
    """Parameter assignments: the full grid (first ``count`` if given) or ``count``
    random draws (default 10)."""
    if count is not None and count < 1:
        raise AscError(f"--count {count}: give at least 1 run (or leave --count out for the whole grid)")
    params = sweep["parameters"]
    names = list(params)
    if sweep.get("method", "grid") == "grid":
        grid = [dict(zip(names, combo)) for combo in itertools.product(*(_value_list(n, params[n]) for n in names))]
        return grid[:count] if count is not None else grid
    rng = np.random.default_rng(seed)
    return [{n: _sample(n, params[n], rng) for n in names} for _ in range(10 if count is None else count)]


def pin_parameters(sweep: dict, extra: list[str]) -> tuple[dict, list[str]]:
    """Split command-line overrides: one naming a sweep parameter pins it to that value
    (``seed=1`` runs only seed 1's part of the grid, under the names the full sweep uses,
    so several processes can share a sweep); the others apply to every run."""
    params, rest = dict(sweep["parameters"]), []
    for item in extra:
        key, _, value = item.partition("=")
        if key in params:
            # None as null, as the config reads it (asc.config), so the pinned run has the full sweep's name
            params[key] = {"value": None if value == "None" else yaml.safe_load(value)}
        else:
            rest.append(item)
    return {**sweep, "parameters": params}, rest


def plain_value(value):
    """A parameter value as JSON would carry it (1.0 -> 1), so that values coming back from
    the W&B server name the same run as the values of the sweep file."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def short_value(value) -> str:
    """A parameter value for reading: floats to 3 significant digits, None as YAML's null."""
    value = plain_value(value)
    if value is None:
        return "null"
    return f"{value:.3g}" if isinstance(value, float) else str(value)
