"""A sweep's comparison tables: one row per experiment from its results.json (validation
metrics at the chosen epoch read from metrics.csv where results.json lacks them), rows
pooled over seeds, written as CSV and Markdown and printed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from asc.errors import AscError
from asc.sweep_file import short_value
from asc.tables import format_markdown


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


def pool_seeds(rows: list[dict], params: list[str], metric: str, goal: str = "maximize") -> list[dict]:
    """One row per configuration of the parameters other than ``seed``, pooling its seeds:
    mean and std over all (seed, fold) results and the std of the per-seed fold means
    (how much the training seed alone moves the result).  Empty unless ``seed`` is a
    parameter taking several values.  Ranked by the pooled mean, best first under ``goal``
    (``maximize``: higher first; ``minimize``: lower first)."""
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
    return sorted(pooled, key=lambda r: r[metric], reverse=goal == "maximize")


def write_tables(rows: list[dict], params: list[str], metric: str, out_dir: Path,
                 pooled: list[dict] | None = None) -> None:
    """sweep.csv and sweep.md (every run, ranked), and with ``pooled`` (from
    :func:`pool_seeds`) sweep_over_seeds.csv and a second table in sweep.md."""
    stats = (metric, f"{metric} std", "macro_f1", "macro_f1 std")
    # a validation metric ranks the runs; the test accuracy is reported beside it
    beside = metric not in ("mean/test/acc", "test/acc") and all("test_acc" in r for r in rows)
    test_head, test_md = (["test_acc mean", "test_acc std"], ["test acc (%)"]) if beside else ([], [])
    scale, unit = metric_scale(metric)  # a loss is not a percentage
    _write_csv(out_dir / "sweep.csv",
               ["rank", *params, f"{metric} mean", f"{metric} std", *test_head, "macro_f1 mean", "macro_f1 std",
                "folds", "experiment"],
               [[i, *(r[p] for p in params), *(f"{r[k]:.4f}" for k in stats[:2]),
                 *((f"{r['test_acc']:.4f}", f"{r['test_acc std']:.4f}") if beside else ()),
                 *(f"{r[k]:.4f}" for k in stats[2:]), r["folds"], r["experiment"]]
                for i, r in enumerate(rows, 1)])
    lines = format_markdown(["rank", *params, f"{metric}{unit}", *test_md, "macro-F1 (%)", "folds"],
                      [[i, *(short_value(r[p]) for p in params), percent(r, metric, scale),
                        *([percent(r, "test_acc")] if beside else []), percent(r, "macro_f1"), r["folds"]]
                       for i, r in enumerate(rows, 1)])
    if pooled:
        others = [p for p in params if p != "seed"]
        seed_std = lambda r: f"{scale * r[metric + ' seed std']:.{2 if scale == 100 else 4}f}"  # noqa: E731
        _write_csv(out_dir / "sweep_over_seeds.csv",
                   ["rank", *others, "seeds", f"{metric} mean", f"{metric} std", f"{metric} seed std",
                    "macro_f1 mean", "macro_f1 std", "results"],
                   [[i, *(r[p] for p in others), " ".join(map(str, r["seeds"])),
                     *(f"{r[k]:.4f}" for k in (*stats[:2], f"{metric} seed std", *stats[2:])), r["results"]]
                    for i, r in enumerate(pooled, 1)])
        lines += ["", "Pooled over seeds: mean ± std over every (seed, fold) result; seed std = std of the "
                  "per-seed means.", ""]
        beside = beside and all("test_acc" in r for r in pooled)
        lines += format_markdown(["rank", *others, "seeds", f"{metric}{unit}", f"seed std{unit}", *test_md,
                                  "macro-F1 (%)", "results"],
                           [[i, *(short_value(r[p]) for p in others), ",".join(map(str, r["seeds"])),
                             percent(r, metric, scale), seed_std(r),
                             *([percent(r, "test_acc")] if beside else []), percent(r, "macro_f1"), r["results"]]
                            for i, r in enumerate(pooled, 1)])
    (out_dir / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    print(f"\nsweep table: {out_dir / 'sweep.md'} and {out_dir / 'sweep.csv'}"
          + (f" (pooled over seeds: {out_dir / 'sweep_over_seeds.csv'})" if pooled else ""))


def percent(row: dict, key: str, scale: float = 100) -> str:
    """``row[key]`` ± ``row[key + ' std']`` in percent, 2 decimals (``scale`` 1: as they are,
    4 decimals, for a loss)."""
    digits = 2 if scale == 100 else 4
    return f"{scale * row[key]:.{digits}f} ± {scale * row[key + ' std']:.{digits}f}"


def metric_scale(metric: str) -> tuple[int, str]:
    """(scale, unit) of a sweep metric in tables: accuracies in percent, a loss as it is."""
    return (1, "") if metric.endswith("loss") else (100, " (%)")


def metric_text(row: dict, metric: str) -> str:
    """The sweep metric of a table row for a progress line: ``96.88 ± 1.20 %``, or a loss's ``0.4120 ± 0.0100``."""
    scale, _ = metric_scale(metric)
    return percent(row, metric, scale) + (" %" if scale == 100 else "")


def _write_csv(path: Path, head: list[str], body: list[list]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(body)
