"""An experiment's results: ``results.json`` rewritten as each fold's row arrives
(:class:`FoldCollector`, the one collecting path of sequential and parallel folds), mean
and std over folds, the confusion summed over folds, and the printed table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from asc.config import to_dict
from asc.data.base import ClipSet
from asc.errors import AscError
from asc.io import write_json_atomic, write_text_atomic


def aggregate(rows: list[dict]) -> tuple[dict, dict]:
    keys = [k for k in rows[0] if k.startswith(("test/", "bof/", "val/")) and all(k in r for r in rows)]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    std = {k: float(np.std([r[k] for r in rows])) for k in keys}
    return mean, std


def cross_fold(rows: list[dict], class_names: list[str]) -> dict:
    """The confusion matrix summed over folds (rows: true class, columns: predicted; the
    usual summary over LITIS's 20 splits) and per-class accuracy, mean and std over folds."""
    if not rows or any("confusion_matrix" not in r for r in rows):
        return {}
    total = np.sum([np.array(r["confusion_matrix"]) for r in rows], axis=0)
    per_class = {c: [r["per_class_acc"][c] for r in rows if c in r.get("per_class_acc", {})] for c in class_names}
    return {"confusion_matrix_sum": total.astype(int).tolist(), "class_names": list(class_names),
            "per_class_acc": {"mean": {c: float(np.mean(v)) for c, v in per_class.items() if v},
                              "std": {c: float(np.std(v)) for c, v in per_class.items() if v}}}


def format_table(rows: list[dict], mean: dict, std: dict) -> str:
    cols = [("fold", "fold"), ("n_train", "train"), ("n_val", "val"), ("n_test", "test"),
            ("val/acc", "val acc %"), ("test/acc", "acc %"), ("test/macro_f1", "macro-F1 %")]
    if rows and "bof/acc" in rows[0]:
        cols.append(("bof/acc", "bag-of-frames acc %"))
    cols.append(("seconds", "time s"))
    from asc.tables import RULE
    from asc.tables import format_table as plain_table

    fmt = lambda k, v: "—" if v is None else f"{100 * v:.2f}" if k.startswith(("test/", "bof/", "val/")) else v  # noqa: E731
    summary = [f"{100 * mean[k]:.2f}±{100 * std[k]:.2f}" if k in mean else "" for k, _ in cols]
    summary[0] = "mean±std"
    body = [[fmt(k, r.get(k)) for k, _ in cols] for r in rows] + [RULE, summary]
    return plain_table([h for _, h in cols], body, align="r" * len(cols), widths=[max(len(h), 9) for _, h in cols])


class FoldCollector:
    """results.json of an experiment, rewritten atomically as each fold's row arrives (in
    ``cv.folds`` order, whatever order they finish in, then the experiment's other finished
    folds): the one collecting path of the sequential loop and of parallel folds, so mean,
    std, the bag-of-frames baseline and the cross-fold confusion are the same either way."""

    def __init__(self, cfg: DictConfig, clips: ClipSet, folds: list[int], exp_dir: Path, record: dict,
                 complexity: dict, bof_feats):
        self.cfg, self.clips, self.folds, self.exp_dir = cfg, clips, folds, exp_dir
        self.record, self.complexity, self.bof_feats = record, complexity, bof_feats
        self.by_fold: dict[int, dict] = {}
        # the experiment's other folds (an earlier asc cv over more folds than this command's cv.folds or asc
        # train): results.json keeps their rows, and is complete only when each of them has finished
        others = sorted(int(d.name.split("-")[1]) for d in exp_dir.glob("fold-*") if d.name.split("-")[1].isdigit())
        self.others = [k for k in others if k not in folds]
        earlier = {k: json.loads(self.result_path(k).read_text()) for k in self.others if self.result_path(k).is_file()}
        # finished by the rule of finished(): a fold trained without a test is not, when this run tests
        self.earlier = {k: row for k, row in earlier.items() if not awaits_test(cfg, row)}

    def result_path(self, k: int) -> Path:
        return self.exp_dir / f"fold-{k}" / "result.json"

    def finished(self, k: int) -> dict | None:
        """The row of fold ``k`` when it finished earlier (said so on the terminal), else None
        (also for a fold trained without a test when this run tests: its checkpoint is tested)."""
        done = self.result_path(k)
        if not done.exists():
            return None
        row = json.loads(done.read_text())
        if awaits_test(self.cfg, row):
            print(f"fold {k}: trained earlier without a test (cv.test=false); testing its checkpoint now")
            return None
        score = ", ".join(f"{key} {100 * row[key]:.2f} %" for key in ("val/acc", "test/acc") if key in row)
        print(f"fold {k}: already finished ({score}), skipping")
        return row

    def add(self, k: int, row: dict) -> dict:
        """Take fold ``k``'s row (adding the bag-of-frames baseline) and rewrite results.json."""
        if self.bof_feats is not None and self.cfg.cv.test and "bof/acc" not in row:
            from asc.baselines import bag_of_frames_fold

            row["bof/acc"] = bag_of_frames_fold(self.bof_feats, self.clips, k)
            write_json_atomic(self.result_path(k), row)
        self.by_fold[k] = row
        write_json_atomic(self.exp_dir / "results.json", self.results())
        return row

    @property
    def rows(self) -> list[dict]:
        """The rows of this command's folds (in ``cv.folds`` order), then the experiment's other
        finished folds."""
        return [self.by_fold[k] for k in self.folds if k in self.by_fold] + [self.earlier[k] for k in self.earlier]

    def results(self) -> dict:
        rows = self.rows
        mean, std = aggregate(rows) if rows else ({}, {})
        complete = all(k in self.by_fold for k in self.folds) and len(self.earlier) == len(self.others)
        return {"experiment": self.cfg.experiment.name, "folds": rows, "mean": mean, "std": std,
                "complete": complete, "config": to_dict(self.cfg),
                **cross_fold(rows, self.clips.class_names), "reproducibility": self.record,
                "complexity": self.complexity}

    def model_label(self) -> str:
        """``crnn/stap``, ``cnn``: the network and, for a CRNN, its pooling."""
        model = self.cfg.model
        return f"{model.name}{'/' + model.pooling if model.name == 'crnn' else ''}"

    def describe_model(self) -> None:
        """One line on the network before the folds run (Lightning's per-fold model summary is off)."""
        c = self.complexity
        if c:
            print(f"model {self.model_label()}: {c['params']:,d} parameters, {c['macs_per_second'] / 1e6:.1f} "
                  f"MMAC per second of audio (front-end {c['frontend_macs_per_second'] / 1e6:.1f})", flush=True)

    def summary(self) -> None:
        results, cfg = self.results(), self.cfg
        print()
        print(f"experiment {cfg.experiment.name}: {self.clips.name}, model {self.model_label()}, "
              f"mix {cfg.augment.mix}")
        print(format_table(self.rows, results["mean"], results["std"]))
        print(f"results: {self.exp_dir / 'results.json'}")


def write_test_predictions(path: Path, rows: list, clips: ClipSet) -> None:
    """One line per test clip: clip, true class, predicted class, class probabilities
    (for paired tests between runs and error analysis)."""
    import csv
    import io

    names = clips.class_names
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["clip", "true", "predicted"] + [f"p_{c}" for c in names])
    for i, y, p in rows:
        out.writerow([clips.items[i], names[y], names[int(np.argmax(p))]] + [f"{v:.5f}" for v in p])
    write_text_atomic(path, buf.getvalue())


def untested_result(cfg: DictConfig, fold_dir: Path) -> dict | None:
    """The result.json of a fold trained earlier with ``cv.test=false`` when this run tests
    (``cv.test=true``), else None."""
    path = fold_dir / "result.json"
    if not cfg.cv.test or not path.is_file():
        return None
    row = json.loads(path.read_text())
    return row if awaits_test(cfg, row) else None


def awaits_test(cfg: DictConfig, row: dict) -> bool:
    """Whether a finished fold's row still needs its test: it was trained with cv.test=false
    and this run tests (the one rule of :class:`FoldCollector` and :func:`untested_result`)."""
    return bool(cfg.cv.test) and "test/acc" not in row


def earlier_checkpoints(row: dict, fold_dir: Path) -> tuple[str | None, str, str]:
    """:func:`fold_checkpoints` of a fold trained earlier, from its result.json: the test
    scores the checkpoint that run chose, under the rule it recorded (looked up in the fold's
    own folder, which may have moved since)."""
    def here(path: str) -> str:
        return str(fold_dir / "checkpoints" / Path(path).name)

    # a result.json from before cv.checkpoint existed names only best_checkpoint, which its test would score
    tested = here(row.get("tested_checkpoint") or row["best_checkpoint"])
    if not Path(tested).is_file():
        raise AscError(f"fold {row['fold']} was trained without a test and its checkpoint {tested} is gone; delete "
                       f"{fold_dir} to train that fold again")
    best = here(row["best_checkpoint"]) if row.get("best_epoch") is not None else None
    return best, tested, row.get("checkpoint", "best")
