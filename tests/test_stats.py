"""The paired-difference helper against scipy and a hand computation."""

import json

import numpy as np
import pytest
from scipy import stats as sps

from asc.errors import AscError
from asc.stats import compare_runs, format_comparison, paired_difference

A = np.array([0.95, 0.90, 0.97, 0.93, 0.96, 0.91])
B = np.array([0.93, 0.91, 0.94, 0.90, 0.95, 0.90])


def test_uncorrected_matches_scipy_paired_t_test():
    r = paired_difference(A, B, level=0.90)
    t, p = sps.ttest_rel(A, B)
    assert r["p"] == pytest.approx(p)
    d = A - B
    half = sps.t.ppf(0.95, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert (r["low"], r["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert (r["wins"], r["ties"], r["losses"]) == (5, 0, 1)


def test_nadeau_bengio_correction_widens_the_interval():
    """var = (1/J + n_test/n_train) s^2: with J = 6 and ratio 0.25 the standard error grows
    by sqrt((1/6 + 0.25) / (1/6))."""
    plain = paired_difference(A, B)
    corrected = paired_difference(A, B, test_train_ratio=0.25)
    assert corrected["se"] / plain["se"] == pytest.approx(np.sqrt((1 / 6 + 0.25) * 6))
    assert corrected["p"] > plain["p"] and corrected["corrected"]


def _run(tmp_path, name, seed, accs, data="folder"):
    d = tmp_path / name
    d.mkdir()
    folds = [{"fold": k + 1, "test/acc": a, "n_train": 160, "n_val": 20, "n_test": 45} for k, a in enumerate(accs)]
    (d / "results.json").write_text(json.dumps({"folds": folds, "config": {"seed": seed, "data": {"name": data}}}))
    return str(d)


def test_compare_runs_pairs_by_seed_and_fold(tmp_path):
    a = [_run(tmp_path, "a0", 0, A[:3]), _run(tmp_path, "a1", 1, A[3:])]
    b = [_run(tmp_path, "b1", 1, B[3:]), _run(tmp_path, "b0", 0, B[:3])]  # order does not matter
    r = compare_runs(a, b, corrected=False)
    assert r["n"] == 6 and r["diff"] == pytest.approx((A - B).mean()) and not r["corrected"]
    line = format_comparison("a", "b", r)
    assert "+1.50 points" in line and "(uncorrected)" in line  # (2 - 1 + 3 + 3 + 1 + 1) / 6 points


def test_compare_runs_corrects_over_several_folds_not_over_the_seeds_of_one(tmp_path):
    """3 folds x 2 seeds of k-fold data: the training sets overlap, so the interval is
    Nadeau-Bengio's with n_test / (n_train + n_val) = 45 / 180; two seeds of one fold: plain."""
    a = [_run(tmp_path, "a0", 0, A[:3]), _run(tmp_path, "a1", 1, A[3:])]
    b = [_run(tmp_path, "b0", 0, B[:3]), _run(tmp_path, "b1", 1, B[3:])]
    r = compare_runs(a, b)
    assert r["corrected"] and r["test_train_ratio"] == pytest.approx(0.25)
    assert r["se"] == pytest.approx(paired_difference(A, B, test_train_ratio=0.25)["se"])
    assert "(Nadeau-Bengio corrected, n_test/(n_train+n_val) 0.250)" in format_comparison("a", "b", r)
    one_fold = compare_runs([_run(tmp_path, "c0", 0, A[:1]), _run(tmp_path, "c1", 1, A[1:2])],
                            [_run(tmp_path, "d0", 0, B[:1]), _run(tmp_path, "d1", 1, B[1:2])])
    assert one_fold["n"] == 2 and not one_fold["corrected"]
    assert compare_runs(a, b, corrected=False)["se"] < r["se"]


def test_fold_breakdown_matches_scipy_one_way_anova_and_a_hand_computation():
    """Differences of 3 folds with 3, 3 and 2 seeds: F and p are scipy's f_oneway; the
    variance components are (MS_between - MS_within) / n0 and MS_within, n0 = (N - sum n_i^2 / N) / (k - 1)."""
    from asc.stats import fold_breakdown

    pairs = [(s, 1) for s in range(3)] + [(s, 2) for s in range(3)] + [(s, 3) for s in range(2)]
    d = np.array([0.00, 0.02, 0.01, -0.05, -0.03, -0.04, 0.03, 0.01])
    b = np.full(8, 0.9)
    r = fold_breakdown(pairs, list(b + d), list(b))
    groups = [d[:3], d[3:6], d[6:]]
    f_stat, p = sps.f_oneway(*groups)
    assert (r["F"], r["p"]) == pytest.approx((f_stat, p))
    assert r["fold_diffs"] == pytest.approx([g.mean() for g in groups])
    ms_within = sum(((g - g.mean()) ** 2).sum() for g in groups) / (8 - 3)
    ms_between = sum(len(g) * (g.mean() - d.mean()) ** 2 for g in groups) / 2
    assert r["var_seed"] == pytest.approx(ms_within)
    assert r["var_fold"] == pytest.approx((ms_between - ms_within) / ((8 - (9 + 9 + 4) / 8) / 2))
    fold_means = r["fold_means"]
    assert fold_means["n"] == 3 and fold_means["diff"] == pytest.approx(np.mean([g.mean() for g in groups]))
    assert not fold_means["corrected"]


def test_fold_breakdown_needs_two_seeds_in_each_of_two_folds():
    from asc.stats import fold_breakdown

    assert fold_breakdown([(0, 1), (0, 2), (0, 3)], [0.9, 0.8, 0.7], [0.8, 0.8, 0.8]) is None
    assert fold_breakdown([(0, 1), (1, 1)], [0.9, 0.8], [0.8, 0.8]) is None
    assert fold_breakdown([(0, 1), (1, 1), (0, 2)], [0.9, 0.8, 0.7], [0.8, 0.8, 0.8]) is None
    exact = fold_breakdown([(0, 1), (1, 1), (0, 2), (1, 2)], [0.9, 0.9, 0.7, 0.7], [0.8] * 4)
    assert exact["F"] == np.inf and exact["p"] == 0.0 and exact["var_seed"] == 0.0
    none = fold_breakdown([(0, 1), (1, 1), (0, 2), (1, 2)], [0.8] * 4, [0.8] * 4)
    assert np.isnan(none["F"]) and none["p"] == 1.0 and none["var_fold"] == 0.0


def test_compare_command_correction_flags(tmp_path):
    from helpers.cli import asc

    a = [_run(tmp_path, "a0", 0, A[:3]), _run(tmp_path, "a1", 1, A[3:])]
    b = [_run(tmp_path, "b0", 0, B[:3]), _run(tmp_path, "b1", 1, B[3:])]
    default = asc("compare", "--a", *a, "--b", *b, cwd=tmp_path)
    plain = asc("compare", "--a", *a, "--b", *b, "--uncorrected", cwd=tmp_path)
    assert default.returncode == plain.returncode == 0
    assert "Nadeau-Bengio corrected" in default.stdout and "(uncorrected)" in plain.stdout
    # 2 seeds in each of 3 folds: the differences by fold (A - B: +2.5 / 0 / +2.0 points) and the fold effect
    assert "by fold 1, 2, 3: mean difference +2.50 / +0.00 / +2.00 points; fold effect F = " in default.stdout
    both = asc("compare", "--a", *a, "--b", *b, "--corrected", "--uncorrected", cwd=tmp_path)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_compare_runs_refuses_unpaired_input(tmp_path):
    with pytest.raises(AscError, match="in common"):
        compare_runs([_run(tmp_path, "a", 0, A[:3])], [_run(tmp_path, "b", 1, B[:3])])
    with pytest.raises(AscError, match="not found"):
        compare_runs([str(tmp_path / "missing")], [_run(tmp_path, "c", 0, B[:3])])
    with pytest.raises(AscError, match=r"test/acc is not a finite number for \(seed, fold\) \(0, 2\)"):
        compare_runs([_run(tmp_path, "n", 0, [0.9, float("nan"), 0.8])], [_run(tmp_path, "m", 0, B[:3])])
    with pytest.raises(ValueError, match="finite"):
        paired_difference([0.9, np.nan], [0.8, 0.7])


def _predictions(root, name: str, fold: int, rows: list[tuple[str, str, list[float]]]) -> str:
    """An experiment folder whose fold ``fold`` has test_predictions.csv with ``rows``
    (clip, true class, probabilities of classes x, y)."""
    d = root / name / f"fold-{fold}"
    d.mkdir(parents=True, exist_ok=True)
    lines = ["clip,true,predicted,p_x,p_y"] + [
        f"{c},{t},{'xy'[int(np.argmax(p))]},{p[0]},{p[1]}" for c, t, p in rows]
    (d / "test_predictions.csv").write_text("\n".join(lines) + "\n")
    return str(root / name)


def test_ensemble_averages_probabilities_clip_by_clip(tmp_path, capsys):
    from asc.cli import main
    from asc.stats import ensemble_runs

    # three clips, all of class x; member a is right on c1 and c2 (confidently wrong on c3),
    # member b (its rows in another order) right only on c3, very confidently: the average is
    # right on c1 and c3 only
    a = _predictions(tmp_path, "a", 1, [("c1", "x", [0.6, 0.4]), ("c2", "x", [0.55, 0.45]), ("c3", "x", [0.1, 0.9])])
    b = _predictions(tmp_path, "b", 1, [("c3", "x", [0.99, 0.01]), ("c2", "x", [0.3, 0.7]), ("c1", "x", [0.45, 0.55])])
    r = ensemble_runs([a, b])
    assert r["folds"][0]["members"] == pytest.approx([2 / 3, 1 / 3])
    assert r["folds"][0]["ensemble"] == pytest.approx(2 / 3)  # c1: 0.525, c2: 0.425, c3: 0.545 for x
    assert main(["ensemble", a, b]) == 0 and "66.67" in capsys.readouterr().out
    other = _predictions(tmp_path, "other", 1, [("d1", "x", [0.5, 0.5])])
    with pytest.raises(AscError, match="other clips"):
        ensemble_runs([a, other])
