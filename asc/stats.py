"""Paired comparisons of two experiments over (seed, fold).

Two runs of the same protocol with the same seeds give one accuracy per (seed, fold) each;
their differences are paired (same training and test clips, same seed), which removes the
fold-to-fold spread that dominates a mean ± std.  The helper reports the mean paired
difference with a two-sided 90 % interval from Student's t, and, for protocols whose
training sets overlap between folds (LITIS Rouen's 20 random splits, repeated k-fold),
the corrected resampled t-test of Nadeau & Bengio (Machine Learning 52, 2003): the
variance of the mean difference is (1/J + n_test/n_train) · s² instead of s²/J, because
the J differences are not independent when training sets share clips.

:func:`compare_runs` applies it whenever the pairs span more than one fold: the training
sets of k-fold cross-validation overlap too (any two share (k-2)/(k-1) of their clips), and
the seeds of one fold share its clips, so J = seeds × folds differences are far from
independent.  Over seeds × folds this is Bouckaert & Frank's corrected repeated k-fold test
(PAKDD 2004): (1/(k·r) + n_test/n_train) · s², k·r − 1 degrees of freedom.  Pairs from one
fold only (the seeds of one split) are compared uncorrected: that interval is about the
seeds on that split, not about other data.  :func:`fold_breakdown` shows whether the
differences do cluster by fold (a one-way analysis of variance), where each fold has
several seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy import stats as sps

from asc.errors import AscError


def paired_difference(a: np.ndarray, b: np.ndarray, level: float = 0.90,
                      test_train_ratio: float | None = None) -> dict:
    """Mean of ``a - b`` with a two-sided ``level`` interval.

    Parameters
    ----------
    a, b : array (J,)
        Paired results (the same (seed, fold) at the same position).
    level : float
        Coverage of the interval (0.90: a 90 % interval).
    test_train_ratio : float, optional
        n_test / n_train of one fold.  When given, the Nadeau-Bengio correction is applied:
        var(mean) = (1/J + ratio) · s² (for overlapping training sets).

    Returns
    -------
    dict
        ``n``, ``mean_a``, ``mean_b``, ``diff`` (mean of a - b), ``sd`` (std of the
        differences, ddof=1), ``se``, ``low``, ``high`` (the interval), ``p`` (two-sided
        p-value of "no difference"), ``wins``/``ties``/``losses`` of a against b,
        ``corrected`` (whether the correction was applied).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two paired 1-D arrays of at least 2 results, got shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired results must be finite numbers (a NaN or inf would make the interval NaN)")
    d = a - b
    n = len(d)
    sd = float(d.std(ddof=1))
    factor = 1.0 / n + (test_train_ratio or 0.0)
    se = math.sqrt(factor) * sd
    t_crit = float(sps.t.ppf(0.5 + level / 2, n - 1))
    mean = float(d.mean())
    p = 1.0 if se == 0 and mean == 0 else 0.0 if se == 0 else float(2 * sps.t.sf(abs(mean) / se, n - 1))
    return {"n": n, "mean_a": float(a.mean()), "mean_b": float(b.mean()), "diff": mean, "sd": sd, "se": se,
            "low": mean - t_crit * se, "high": mean + t_crit * se, "p": p, "level": level,
            "wins": int((d > 0).sum()), "ties": int((d == 0).sum()), "losses": int((d < 0).sum()),
            "corrected": test_train_ratio is not None, "test_train_ratio": test_train_ratio}


def fold_results(run_dirs: list[str | Path], metric: str) -> dict[tuple[int, int], dict]:
    """{(seed, fold): fold row} from the results.json of several experiment folders (one
    per seed).  Raises AscError for a missing file, a missing metric or a repeated pair."""
    out: dict[tuple[int, int], dict] = {}
    for d in run_dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            raise AscError(f"{path} not found: pass experiment folders written by asc cv (runs/<name>)")
        results = json.loads(path.read_text())
        seed = int(results.get("config", {}).get("seed", 0))
        for row in results["folds"]:
            if metric not in row:
                raise AscError(f"{path}: fold {row['fold']} has no {metric!r} (has: "
                               f"{', '.join(k for k in row if '/' in k)})")
            key = (seed, int(row["fold"]))
            if key in out:
                raise AscError(f"(seed {seed}, fold {row['fold']}) appears twice on one side ({path})")
            out[key] = row
    return out


def compare_runs(runs_a: list[str], runs_b: list[str], metric: str = "test/acc", level: float = 0.90,
                 corrected: bool | None = None) -> dict:
    """Paired difference of ``metric`` between two sets of experiments over their common
    (seed, fold) pairs.  ``corrected=None`` applies the Nadeau-Bengio correction when the
    pairs span more than one fold (overlapping training sets: LITIS's random splits and
    k-fold alike; see the module docstring), with n_test / (n_train + n_val) of the first
    pair's fold; ``True`` / ``False`` force it on or off."""
    a, b = fold_results(runs_a, metric), fold_results(runs_b, metric)
    pairs = sorted(set(a) & set(b))
    if len(pairs) < 2:
        raise AscError(f"only {len(pairs)} (seed, fold) pair(s) in common; run both sides on the same folds and seeds")
    if corrected is None:
        corrected = len({fold for _, fold in pairs}) > 1
    ratio = None
    if corrected:
        row = a[pairs[0]]
        ratio = row["n_test"] / max(1, row["n_train"] + row.get("n_val", 0))
    values = [[side[p][metric] for p in pairs] for side in (a, b)]
    bad = [p for p, x, y in zip(pairs, *values) if not (math.isfinite(x) and math.isfinite(y))]
    if bad:
        raise AscError(f"{metric} is not a finite number for (seed, fold) {bad[0]}: rerun that fold")
    result = paired_difference(*values, level, ratio)
    result["pairs"] = [list(p) for p in pairs]
    result["a"], result["b"] = values
    result["metric"] = metric
    result["by_fold"] = fold_breakdown(pairs, *values, level)
    return result


def fold_breakdown(pairs: list[tuple[int, int]], a: list[float], b: list[float], level: float = 0.90) -> dict | None:
    """How the paired differences ``a - b`` cluster by fold, when each of several folds
    holds at least two seeds (otherwise None).

    Returns
    -------
    dict
        ``folds`` and ``fold_diffs`` (each fold's mean difference over its seeds); ``F`` and
        ``p`` of a one-way analysis of variance of the differences by fold (a fold effect: the
        seeds of one fold share its clips); ``var_fold`` and ``var_seed``, the variance
        components (MS_between - MS_within) / n0 (0 when negative) and MS_within; and
        ``fold_means``, the plain paired t interval over the folds' mean accuracies (seeds
        averaged first, :func:`paired_difference` without correction).
    """
    folds = sorted({fold for _, fold in pairs})
    groups = [np.array([x - y for (_, f), x, y in zip(pairs, a, b) if f == fold]) for fold in folds]
    sizes = np.array([len(g) for g in groups])
    if len(folds) < 2 or sizes.min() < 2:
        return None
    n, k = sizes.sum(), len(folds)
    grand = np.concatenate(groups).mean()
    ms_between = float(sum(m * (g.mean() - grand) ** 2 for m, g in zip(sizes, groups)) / (k - 1))
    ms_within = float(sum(((g - g.mean()) ** 2).sum() for g in groups) / (n - k))
    if ms_within > 0:
        f_stat = ms_between / ms_within
        p = float(sps.f.sf(f_stat, k - 1, n - k))
    else:  # every fold's seeds agree exactly: any spread is between folds
        f_stat, p = (math.inf, 0.0) if ms_between > 0 else (math.nan, 1.0)
    n0 = (n - (sizes ** 2).sum() / n) / (k - 1)  # the mean group size, for unequal groups (Searle)
    means = [[float(np.mean([v for (_, f), v in zip(pairs, side) if f == fold])) for fold in folds] for side in (a, b)]
    return {"folds": folds, "fold_diffs": [float(g.mean()) for g in groups], "F": f_stat, "p": p,
            "var_fold": max(0.0, (ms_between - ms_within) / n0), "var_seed": ms_within,
            "fold_means": paired_difference(*means, level)}


def format_comparison(name_a: str, name_b: str, r: dict) -> str:
    """One readable line, in percentage points for accuracy-like metrics."""
    pct = 100 if not r["metric"].endswith("loss") else 1
    unit = " points" if pct == 100 else ""
    return (f"{r['metric']}: {name_a} {pct * r['mean_a']:.2f} vs {name_b} {pct * r['mean_b']:.2f}; "
            f"paired difference {pct * r['diff']:+.2f}{unit}, {int(100 * r['level'])} % interval "
            f"[{pct * r['low']:+.2f}, {pct * r['high']:+.2f}]{_correction(r)}, "
            f"p = {r['p']:.3f}, {r['wins']} wins / {r['ties']} ties / {r['losses']} losses "
            f"over {r['n']} (seed, fold) pairs")


def format_fold_breakdown(r: dict) -> str | None:
    """A second line for :func:`format_comparison`'s result: the differences by fold, the
    fold effect and the interval over the folds' means (None without a breakdown)."""
    by_fold = r.get("by_fold")
    if not by_fold:
        return None
    pct = 100 if not r["metric"].endswith("loss") else 1
    unit = " points" if pct == 100 else ""
    diffs = " / ".join(f"{pct * d:+.2f}" for d in by_fold["fold_diffs"])
    variances = f"fold {pct ** 2 * by_fold['var_fold']:.2f}, seed {pct ** 2 * by_fold['var_seed']:.2f}"
    means = by_fold["fold_means"]
    return (f"by fold {', '.join(map(str, by_fold['folds']))}: mean difference {diffs}{unit}; fold effect "
            f"F = {by_fold['F']:.2f}, p = {by_fold['p']:.3f} (variance components: {variances}"
            f"{unit.replace('points', 'points²')}); over the {len(by_fold['folds'])} folds' means "
            f"(seeds averaged, uncorrected): {pct * means['diff']:+.2f} "
            f"[{pct * means['low']:+.2f}, {pct * means['high']:+.2f}], p = {means['p']:.3f}")


def _correction(r: dict) -> str:
    """How the interval was made, for :func:`format_comparison`."""
    if r["corrected"]:
        return f" (Nadeau-Bengio corrected, n_test/(n_train+n_val) {r['test_train_ratio']:.3f})"
    return " (uncorrected)"


def _test_predictions(path: Path) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """(clips, true classes, class names, probabilities (N, C)) of a fold's test_predictions.csv."""
    import csv

    if not path.is_file():
        raise AscError(f"{path} not found: the experiment's folds must have been tested by asc cv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    names = [h[2:] for h in head[3:]]
    return [r[0] for r in body], [r[1] for r in body], names, np.array([[float(v) for v in r[3:]] for r in body])


def ensemble_runs(run_dirs: list[str | Path]) -> dict:
    """Test accuracy of averaging the class probabilities of several experiments (seeds or
    models of the same protocol) clip by clip, fold by fold, beside each member's own.
    Read from each fold's ``test_predictions.csv``; the experiments must have tested the
    same clips with the same classes in each fold."""
    if len(run_dirs) < 2:
        raise AscError("an ensemble needs at least two experiment folders")
    first = Path(run_dirs[0])
    folds = sorted(int(p.name.split("-")[1]) for p in first.glob("fold-*") if (p / "test_predictions.csv").is_file())
    if not folds:
        raise AscError(f"{first} has no fold-*/test_predictions.csv: pass experiment folders tested by asc cv")
    rows = []
    for fold in folds:
        members = [_test_predictions(Path(d) / f"fold-{fold}" / "test_predictions.csv") for d in run_dirs]
        clips, true, names, _ = members[0]
        for d, (c, _, n, _) in zip(run_dirs[1:], members[1:]):
            if n != names or sorted(c) != sorted(clips):
                raise AscError(f"{d} fold {fold} tested other clips or classes than {first}: an ensemble needs the "
                               "same protocol (data set, folds, fold_seed)")
        order = [{clip: i for i, clip in enumerate(c)} for c, *_ in members]
        probs = [p[[o[clip] for clip in clips]] for o, (_, _, _, p) in zip(order, members)]
        labels = np.array([names.index(t) for t in true])
        rows.append({"fold": fold, "clips": len(clips),
                     "members": [float((p.argmax(1) == labels).mean()) for p in probs],
                     "ensemble": float((np.mean(probs, axis=0).argmax(1) == labels).mean())})
    return {"runs": [str(d) for d in run_dirs], "folds": rows,
            "mean": {"members": np.mean([r["members"] for r in rows], axis=0).tolist(),
                     "ensemble": float(np.mean([r["ensemble"] for r in rows]))}}


def format_ensemble(result: dict) -> str:
    """A table: per fold, each member's test accuracy and the ensemble's; then the means."""
    from asc.tables import RULE, format_table

    names = [Path(r).name for r in result["runs"]]
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    rows = [[r["fold"], r["clips"], *map(pct, r["members"]), pct(r["ensemble"])] for r in result["folds"]]
    rows += [RULE, ["mean", "", *map(pct, result["mean"]["members"]), pct(result["mean"]["ensemble"])]]
    return format_table(["fold", "clips", *names, "ensemble"], rows)
