"""The printed tables of ``asc cv`` and ``asc baseline`` are an interface (scripts and
notebooks parse them): their exact text is pinned here, and the shared formatter
(:mod:`asc.tables`) is checked on its own."""

from __future__ import annotations

import numpy as np

CV_ROWS = [
    {"fold": 1, "n_train": 120, "n_val": 30, "n_test": 50, "val/acc": 0.8, "test/acc": 0.75,
     "test/macro_f1": 0.7123, "bof/acc": 0.4, "seconds": 12.3},
    {"fold": 2, "n_train": 121, "n_val": 29, "n_test": 50, "val/acc": None, "test/acc": 0.8125,
     "test/macro_f1": 0.8, "bof/acc": 0.38, "seconds": 9.0},
]

CV_TABLE = """\
     fold      train        val       test  val acc %      acc %  macro-F1 %  bag-of-frames acc %     time s
---------  ---------  ---------  ---------  ---------  ---------  ----------  -------------------  ---------
        1        120         30         50      80.00      75.00       71.23                40.00       12.3
        2        121         29         50          —      81.25       80.00                38.00        9.0
---------  ---------  ---------  ---------  ---------  ---------  ----------  -------------------  ---------
 mean±std                                              78.12±3.12  75.61±4.38           39.00±1.00           """

CV_TABLE_NO_BOF = """\
     fold      train        val       test  val acc %      acc %  macro-F1 %     time s
---------  ---------  ---------  ---------  ---------  ---------  ----------  ---------
        1        120         30         50      80.00      75.00       71.23       12.3
---------  ---------  ---------  ---------  ---------  ---------  ----------  ---------
 mean±std                                   80.00±0.00  75.00±0.00  71.23±0.00           """


def test_cv_table_is_pinned():
    from asc.experiment import aggregate, format_table

    mean = {"test/acc": 0.78125, "test/macro_f1": 0.75615, "bof/acc": 0.39}
    std = {"test/acc": 0.03125, "test/macro_f1": 0.04385, "bof/acc": 0.01}
    assert format_table(CV_ROWS, mean, std) == CV_TABLE
    one = [{k: v for k, v in CV_ROWS[0].items() if k != "bof/acc"}]
    assert format_table(one, *aggregate(one)) == CV_TABLE_NO_BOF


def test_baseline_output_is_pinned(monkeypatch, capsys, tiny):
    """``asc baseline``: one line per fold and the mean ± std (the accuracies stubbed)."""
    import asc.baselines
    from asc.cli import main

    accs = iter([0.5, 0.625])
    monkeypatch.setattr(asc.baselines, "clip_mean_features", lambda clips, cfg: np.zeros((len(clips), 2)))
    monkeypatch.setattr(asc.baselines, "bag_of_frames_fold", lambda feats, clips, k: next(accs))
    assert main(["baseline", *tiny]) == 0
    assert capsys.readouterr().out == (
        "fold 1: bag-of-frames accuracy 50.00 %\n"
        "fold 2: bag-of-frames accuracy 62.50 %\n"
        "mean ± std over 2 folds: 56.25 ± 6.25 %\n")


def test_formatter_aligns_widens_and_draws_rules():
    from asc.tables import RULE, format_markdown, format_table

    assert format_table(["name", "n"], [["a", 10], RULE, ["total", 3]]).splitlines() == [
        "name    n", "-----  --", "a      10", "-----  --", "total   3"]
    # fixed widths: a longer cell overflows instead of being cut; no rule under the head
    assert format_table(["x", "y"], [["long", "1"]], align="lr", widths=[2, 3], sep="|", rule=False) == \
        "x |  y\nlong|  1"
    assert format_markdown(["rank", "acc"], [[1, "90.00 ± 1.00"]]) == [
        "| rank | acc |", "|---|---|", "| 1 | 90.00 ± 1.00 |"]
