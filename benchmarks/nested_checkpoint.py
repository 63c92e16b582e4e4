"""Which checkpoint should a fold test: the one chosen on validation, or the last?  A nested
check on a folder data set (D), on validation data only.

For each outer fold k (``--outer``) of the data set's usual split (``data.folder_folds=5``,
``data.fold_seed=0``), the outer test fold is set aside and never read: the clips of the
outer training part become a data set of their own (symlinks under ``--out``), and the
default recipe runs its own cross-validation on them (``data.folder_folds=4``, one job
per seed, ``--seeds``).  Each inner fold then has a validation-chosen checkpoint
(``best.ckpt``: val/acc, ties broken by val/loss, as ``asc cv`` tests) and the last one
(``last.ckpt``).  Both are scored, through the same inference code, on the inner test
fold: clips of the outer training part, which is validation data for the outer test.

The rule, fixed before the runs (commit that adds this script): over the inner (outer
fold, seed, inner fold) results, if the last checkpoint's mean accuracy exceeds the chosen
one's by at least 0.5 points, the last checkpoint is the better rule for D; otherwise the
validation choice stays.

    python benchmarks/nested_checkpoint.py --data-root /data/dcase2016_task2_office \\
        --outer 1 2 --seeds 0 1 --jobs 2 --out /tmp/nested

Prints one line per inner fold and the paired difference (last - chosen) with a 90 %
interval; writes ``nested_checkpoint.json`` under ``--out``.  Reruns skip finished jobs.

``--rescore RUN_DIR ...`` scores, instead, the last and the chosen checkpoints of finished
``asc cv`` runs on their own test folds (the clips of each fold's test_predictions.csv,
under ``--data-root``): what those runs would have reported under ``cv.checkpoint=last``,
without training again (the training does not depend on the rule).  Writes
``rescored.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def outer_training_part(data_root: Path, outer: int, dest: Path) -> int:
    """Symlinks ``dest/<class>/<file>`` to the clips of outer fold ``outer``'s training part
    (the outer test fold left out); how many."""
    from asc.data.layouts.folder import list_folder

    listing = list_folder(data_root, n_folds=5, seed=0)
    train, _ = listing.folds[outer]
    for i in train:
        link = dest / listing.labels[i] / listing.paths[i].name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(listing.paths[i])
    return len(train)


def run_inner_cv(data: Path, runs: Path, name: str, seed: int, extra: list[str]) -> Path:
    """The default recipe's 4-fold cross-validation on ``data`` (one thread); its run folder."""
    run_dir = runs / name
    if (run_dir / "results.json").exists():
        return run_dir
    cmd = [sys.executable, "-m", "asc.cli", "cv", "data.name=folder", f"data.root={data}", "data.folder_folds=4",
           f"seed={seed}", f"output_dir={runs}", f"experiment.name={name}", "logger.mode=disabled",
           "logger.progress=epoch", "cv.bag_of_frames=false", "logger.attention_clips_per_class=0", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with open(runs / f"{name}.log", "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=True)
    return run_dir


def score(checkpoint: Path, clips: list[tuple[Path, str]]) -> float:
    """Accuracy of ``checkpoint`` on ``clips`` (path, true class), through the inference code."""
    import torch

    from asc.data.audio import read_audio
    from asc.inference import load

    torch.set_num_threads(1)
    predictor = load(checkpoint, device="cpu")
    right = 0
    for path, true in clips:
        probs = predictor.analyse_clip(read_audio(path, predictor.sample_rate)[0])["probs"]
        right += predictor.class_names[int(np.argmax(probs))] == true
    return right / len(clips)


def score_run(run_dir: Path, data: Path) -> list[dict]:
    """Per inner fold: accuracy of best.ckpt and last.ckpt on the inner test clips."""
    import csv

    rows = []
    for fold_dir in sorted(run_dir.glob("fold-*")):
        with open(fold_dir / "test_predictions.csv") as f:
            clips = [(data / r["clip"], r["true"]) for r in csv.DictReader(f)]
        result = json.loads((fold_dir / "result.json").read_text())
        rows.append({"fold": int(fold_dir.name.split("-")[1]), "best_epoch": result.get("best_epoch"),
                     "chosen": score(fold_dir / "checkpoints" / "best.ckpt", clips),
                     "last": score(fold_dir / "checkpoints" / "last.ckpt", clips), "clips": len(clips)})
    return rows


def rescore(run_dirs: list[Path], data_root: Path, out: Path) -> None:
    """Per run and fold: test accuracy of last.ckpt and best.ckpt (the latter as recorded)."""
    result = {}
    for run_dir in run_dirs:
        rows = score_run(run_dir, data_root)
        result[str(run_dir)] = rows
        last = np.mean([r["last"] for r in rows]) * 100
        chosen = np.mean([r["chosen"] for r in rows]) * 100
        print(f"{run_dir.name:28s} last {last:6.2f} %  chosen {chosen:6.2f} %  per fold (last): "
              + " ".join(f"{100 * r['last']:.2f}" for r in rows), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rescored.json").write_text(json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--outer", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/nested_checkpoint"))
    parser.add_argument("--rescore", type=Path, nargs="+", metavar="RUN_DIR",
                        help="score finished runs' last and chosen checkpoints on their test folds instead")
    parser.add_argument("overrides", nargs="*", help="key=value for every inner run (none: the default recipe)")
    args = parser.parse_args()
    args.out = args.out.resolve()  # the inner runs start in the repository's root
    if args.rescore:
        return rescore(args.rescore, args.data_root.resolve(), args.out)

    from asc.stats import paired_difference

    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    jobs, part_clips = [], 0
    for k in args.outer:
        data = args.out / f"outer{k}"
        part_clips = outer_training_part(args.data_root.resolve(), k, data)
        print(f"outer fold {k}: {part_clips} clips of its training part")
        jobs += [(data, f"outer{k}-s{s}", s) for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda j: (j[0], run_inner_cv(j[0], runs, j[1], j[2], args.overrides)), jobs))
    results = []
    for (data, run_dir), (_, name, seed) in zip(done, jobs):
        for row in score_run(run_dir, data):
            results.append({"run": name, "seed": seed, **row})
            print(f"{name} inner fold {row['fold']}: chosen (epoch {row['best_epoch']}) {100 * row['chosen']:.2f} %, "
                  f"last {100 * row['last']:.2f} %  ({row['clips']} clips)")
    chosen = np.array([r["chosen"] for r in results]) * 100
    last = np.array([r["last"] for r in results]) * 100
    # the inner folds' training sets overlap: Nadeau-Bengio, n_test / n_train of an inner fold (asc/stats.py)
    inner_test = results[0]["clips"]
    diff = paired_difference(last, chosen, test_train_ratio=inner_test / (part_clips - inner_test))
    print(f"\nmean over {len(results)} inner folds: chosen {chosen.mean():.2f} %, last {last.mean():.2f} %")
    print(f"last - chosen: {diff['diff']:+.2f} points, 90 % interval [{diff['low']:+.2f}, {diff['high']:+.2f}] "
          f"(Nadeau-Bengio corrected; {diff['wins']} wins, {diff['ties']} ties, {diff['losses']} losses)")
    verdict = "the last checkpoint" if diff["diff"] >= 0.5 else "the validation choice (unchanged)"
    print(f"rule (fixed in advance: last if >= +0.5 points): {verdict}")
    (args.out / "nested_checkpoint.json").write_text(json.dumps({"folds": results, "difference": diff,
                                                                 "verdict": verdict}, indent=1))


if __name__ == "__main__":
    main()
