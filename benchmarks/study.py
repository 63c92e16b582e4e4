"""Run a named grid of ``asc cv`` experiments, several at once, and summarise them.

The README's method study is reproduced with this script.  Each job is one ``asc cv`` in
its own process (``OMP_NUM_THREADS`` threads each); ``--jobs N`` run side by side, on the
CPU or sharing one GPU.  Jobs whose results.json is complete are skipped on a re-run.

    python benchmarks/study.py tune-d --data-root /data/dcase2016_task2_office --jobs 2
    python benchmarks/study.py d --data-root /data/dcase2016_task2_office --jobs 12   # on a GPU

``tune-d`` trains and selects on validation only (``cv.test=false``): D's test folds are
never scored, so the default recipe it chooses is frozen before its test numbers exist.
``tune-d2`` (augmentation stages), ``tune-d-epochs`` (80 vs 160) and ``tune-d-long`` (320
epochs, or a weight average) re-select it the same way on a validation share of 30 % (10 %
saturates on D), for the flagship and its strongest baseline alike; ``tune-d-aux`` re-examines
the auxiliary max-pooling loss that way, under the last-checkpoint rule.
``d`` and ``demo`` score the frozen recipe and its baselines over 3 seeds; ``hard`` scores
every variant on fold 1 and docs/method-study.md (3, 3b) reports the one chosen by validation accuracy.
Writes ``<out>/summary.md`` and ``summary.json`` (mean validation and test accuracy per
experiment); compare two experiments with ``asc compare``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SEEDS = (0, 1, 2)
D = ["data.name=folder", "data.folder_folds=5"]  # + data.root: the folder data set of real office sounds
HARD = ["--config", "experiments/hard.yaml", "cv.folds=[1]"]
# hard.yaml before commit 454dbf6: no BC, 100 epochs; the `hard` grid measured that recipe
HARD_100 = HARD + ["augment.mix=none", "trainer.max_epochs=100"]
DEMO = ["--config", "experiments/demo.yaml"]
GRIDS = ("tune-d", "tune-d2", "tune-d-epochs", "tune-d-long", "tune-ema", "hard", "hard-epochs", "hard-pool-e200",
         "hard-e200", "d", "d-last", "d-last-seeds", "tune-d-aux", "demo")
AUG = ["augment.roll=true", "augment.freq_masks=2", "augment.time_masks=2", "augment.gain_db=6"]
NO_AUG = ["augment.roll=false", "augment.freq_masks=0", "augment.time_masks=0", "augment.gain_db=0"]
# Each selection grid pins the recipe it measured (augmentation stages, epochs), so that it reruns
# as docs/method-study.md reports it after the defaults it chose have moved on.
PREVIOUS_DEFAULT = AUG + ["trainer.max_epochs=80"]  # the default before commit 2a9e007
VALIDATION_ONLY = ["cv.test=false", "cv.bag_of_frames=false"]  # selection grids never score test folds
VALIDATION_30 = VALIDATION_ONLY + ["data.val_fraction=0.3"]  # 10 % of D's training part (22 clips) saturates
# The flagship and its strongest baseline on D, given the same candidates in every selection grid
FLAGSHIP_AND_BASELINE = [("stap-bc", []), ("mean-nobc", ["model.pooling=mean", "augment.mix=none"])]


# Every grid above was measured with the test scoring the validation-chosen checkpoint,
# the default until cv.checkpoint moved to last (docs/method-study.md, 2g); `d-last` is `d`
# under the current default.
BEST_RULE = ["cv.checkpoint=best"]


def grid(name: str) -> list[tuple[str, list[str]]]:
    """(experiment name, asc cv arguments) of every job of a grid."""
    if name == "d-last":
        return [(f"{n}-last", [a for a in args if a not in BEST_RULE] + ["cv.checkpoint=last"])
                for n, args in grid("d")]
    if name == "d-last-seeds":
        return d_last_seeds()
    if name == "tune-d-aux":
        return tune_d_aux()
    return [(n, args + BEST_RULE) for n, args in measured_grid(name)]


def d_last_seeds() -> list[tuple[str, list[str]]]:
    """Seeds 3 and 4 of ``d-last``'s STAP + BC (the default) and mean pooling + BC: a
    precision check of the one D comparison whose plain t interval excluded zero (STAP − mean
    with BC, −1.21 [−2.08, −0.35] over 15 pairs, docs/method-study.md 2g; corrected for the folds since,
    [−3.09, +0.67]).  Nothing is selected with it:
    the recipe is the frozen default.  Decided in this commit before any run: docs/method-study.md (2i)
    reports the 5-seed (25-pair) numbers beside the 3-seed ones, whichever way they go, and
    the targets stay judged on seeds 0-2 as the issue defines them ("3 seeds x 5 folds").
    """
    models = [("stap-bc", []), ("mean-bc", ["model.pooling=mean"])]
    return [(f"d-{n}-s{s}-last", D + o + [f"seed={s}", "cv.checkpoint=last"]) for s in (3, 4) for n, o in models]


def tune_d_aux() -> list[tuple[str, list[str]]]:
    """The auxiliary max-pooling loss re-examined on D under the current default (320 epochs,
    no augmentation stages, the last checkpoint tested), validation only, as tune-d-long.

    It was chosen in ``tune-d`` on 22 validation clips per fold (100.00 against 99.09 %, a
    saturated set) together with augmentation stages that 1b later removed.  Candidates: weight
    1.0 (the default) and 0, for STAP + BC and for mean pooling + BC, its strongest baseline
    on D's test folds, given the same two candidates.  Rule, fixed in this commit before any run:
    per model, the last checkpoint's validation accuracy (results.json ``val/acc``) averaged
    over seeds 0 and 1; switch to weight 0 only if it beats 1.0 by >= 0.5 points (3 of 550
    clips), otherwise keep 1.0.  ``stap-bc-aux1`` is tune-d-long's ``stap-bc-e320`` (the same
    training; its last-epoch validation accuracy is 96.73 % in both seeds, docs/method-study.md 2g).
    """
    recipe = D + VALIDATION_30 + NO_AUG + ["trainer.max_epochs=320"]
    models = [("stap-bc", []), ("mean-bc", ["model.pooling=mean"])]
    return [(f"tune-d-aux-{m}-aux{w}-s{s}", recipe + mo + [f"model.max_aux_weight={w}", f"seed={s}"])
            for m, mo in models for w in (1, 0) for s in (0, 1)]


def measured_grid(name: str) -> list[tuple[str, list[str]]]:
    """The grids as docs/method-study.md measured them (before :data:`BEST_RULE` is added)."""
    if name == "tune-d":  # recipe search on D, validation only, from the paper's recipe
        tune = ["--config", "experiments/phan2019.yaml", *VALIDATION_ONLY]
        return [(f"tune-d-{n}", D + tune + o) for n, o in [
            ("paper", ["augment.mix=bc"]),
            ("aug", AUG),
            ("aug-e80", AUG + ["trainer.max_epochs=80"]),
            ("aug-whole", AUG + ["data.segment_seconds=null"]),
            ("aug-lr1e-3", AUG + ["optim.lr=1e-3", "trainer.max_epochs=80"]),
            ("aug-nobc", AUG + ["augment.mix=none"]),
            ("aug-nobc-e80", AUG + ["augment.mix=none", "trainer.max_epochs=80"]),
            ("aug-mean", AUG + ["model.pooling=mean"]),
            ("aug-mean-nobc", AUG + ["model.pooling=mean", "augment.mix=none"]),
            ("aug-maxaux", AUG + ["model.max_aux_weight=1.0"]),
            ("aug-e80-maxaux", AUG + ["trainer.max_epochs=80", "model.max_aux_weight=1.0"]),
            ("aug-rnn2", AUG + ["model.rnn_layers=2"]),
        ]]
    if name == "tune-d2":  # the default's augmentation re-examined: 30 % of each training part validates, 2 seeds
        recipes = [("default", PREVIOUS_DEFAULT), ("noaug", NO_AUG + ["trainer.max_epochs=80"]),
                   ("paper", ["--config", "experiments/phan2019.yaml"])]
        return [(f"tune-d2-{m}-{r}-s{s}", D + VALIDATION_30 + ro + mo + [f"seed={s}"])
                for s in (0, 1) for m, mo in FLAGSHIP_AND_BASELINE for r, ro in recipes]
    if name == "tune-d-epochs":  # does STAP + BC need more epochs on D? as tune-d2 (its 80-epoch "noaug" jobs), 160
        e160 = NO_AUG + ["trainer.max_epochs=160"]
        return [(f"tune-d-epochs-{m}-e160-s{s}", D + VALIDATION_30 + e160 + mo + [f"seed={s}"])
                for s in (0, 1) for m, mo in FLAGSHIP_AND_BASELINE]
    if name == "tune-d-long":  # beyond the 160-epoch default: twice the epochs, or a weight average, as tune-d-epochs
        recipes = [("e320", NO_AUG + ["trainer.max_epochs=320"]),
                   ("e160-ema8", NO_AUG + ["trainer.max_epochs=160", "optim.ema_epochs=8"])]
        return [(f"tune-d-long-{m}-{r}-s{s}", D + VALIDATION_30 + ro + mo + [f"seed={s}"])
                for r, ro in recipes for m, mo in FLAGSHIP_AND_BASELINE for s in (0, 1)]
    if name == "tune-ema":  # the weight average's time constant on D, validation only, the default of its time
        return [(f"tune-ema-{n}-{e}", D + VALIDATION_ONLY + PREVIOUS_DEFAULT + [f"optim.ema_epochs={e}"] + o)
                for n, o in FLAGSHIP_AND_BASELINE for e in ("null", "2", "8")]
    if name == "hard":  # sparse events, fold 1: poolings (experiments/hard.yaml), the clip-mean ablation, BC, CNN
        jobs = []
        for pooling in ("stap", "temporal", "mean", "max"):
            jobs += [(f"hard-{pooling}-s{s}", HARD_100 + [f"model.pooling={pooling}", f"seed={s}"]) for s in SEEDS]
        jobs += [(f"hard-stap-nocm-s{s}", HARD_100 + ["features.subtract_clip_mean=false", f"seed={s}"]) for s in SEEDS]
        jobs.append(("hard-max-aux0-s0", HARD_100 + ["model.pooling=max", "model.max_aux_weight=0"]))
        jobs += [(f"hard-stap-bc-s{s}", HARD_100 + ["augment.mix=bc", f"seed={s}"]) for s in SEEDS]
        jobs += [(f"hard-cnn-s{s}", HARD_100 + ["model.name=cnn", f"seed={s}"]) for s in SEEDS]
        return jobs
    if name == "hard-epochs":  # does BC need more epochs on sparse events? both at 200 (the budget allows 45 min)
        return [(f"hard-{n}-e200-s{s}", HARD + o + ["trainer.max_epochs=200", f"seed={s}"])
                for s in SEEDS for n, o in [("stap-bc", ["augment.mix=bc"]), ("stap", ["augment.mix=none"])]]
    if name == "hard-pool-e200":  # the baselines at hard-epochs' 200 epochs: may hard.yaml move to 200 + BC?
        e200 = ["trainer.max_epochs=200"]
        return [(f"hard-{p}-{m}-e200-s{s}", HARD + e200 + [f"model.pooling={p}", f"augment.mix={mix}", f"seed={s}"])
                for s in SEEDS for p in ("mean", "max") for m, mix in (("bc", "bc"), ("nobc", "none"))]
    if name == "hard-e200":  # hard.yaml as it is (STAP + BC, 200 epochs) and hard-pool-e200, on one machine
        return [(f"hard-stap-bc-e200-s{s}", HARD + [f"seed={s}"]) for s in SEEDS] + measured_grid("hard-pool-e200")
    if name == "d":  # the frozen default recipe and its baselines on D, 5 folds
        three = [("stap-bc", []), ("stap-nobc", ["augment.mix=none"]), ("mean-bc", ["model.pooling=mean"]),
                 ("mean-nobc", ["model.pooling=mean", "augment.mix=none"])]
        one = [("stap-bc-noaux", ["model.max_aux_weight=0"]), ("temporal-bc", ["model.pooling=temporal"]),
               ("max-bc", ["model.pooling=max"]), ("cnn-bc", ["model.name=cnn"]),
               ("paper", ["--config", "experiments/phan2019.yaml"])]
        return ([(f"d-{n}-s{s}", D + o + [f"seed={s}"]) for n, o in three for s in SEEDS] +
                [(f"d-{n}-s0", D + o) for n, o in one])
    if name == "demo":  # the embedded scenes with the default recipe (experiments/demo.yaml), 4 folds
        variants = [("stap-bc", []), ("stap-nobc", ["augment.mix=none"])]
        return [(f"demo-{n}-s{s}", DEMO + o + [f"seed={s}"]) for n, o in variants for s in SEEDS]
    raise SystemExit(f"unknown grid {name!r}; choose one of: {', '.join(GRIDS)}")


def needs_root(args: list[str]) -> bool:
    return "data.name=folder" in args


def run_job(name: str, args: list[str], out: Path, data_root: str | None, threads: int) -> dict:
    exp_dir = out / "runs" / name
    results = exp_dir / "results.json"
    if results.exists() and json.loads(results.read_text()).get("complete"):
        return summarise(name, results, 0.0, 0)
    cmd = [sys.executable, "-m", "asc.cli", "cv", *args, f"experiment.name={name}", f"output_dir={out / 'runs'}",
           "logger.mode=disabled", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    if needs_root(args):
        cmd += [f"data.root={data_root}", f"data.cache_dir={out / 'cache'}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    (out / "logs").mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(out / "logs" / f"{name}.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    took = time.time() - started
    if rc != 0 or not results.exists():
        return {"name": name, "error": f"exit {rc}, see logs/{name}.log", "wall_s": round(took, 1)}
    return summarise(name, results, took, rc)


def summarise(name: str, results: Path, took: float, rc: int) -> dict:
    r = json.loads(results.read_text())
    row = {"name": name, "folds": len(r["folds"]), "wall_s": round(took, 1),
           "fold_s": round(sum(f["seconds"] for f in r["folds"]) / len(r["folds"]), 1),
           "best_epochs": [f.get("best_epoch") for f in r["folds"]]}
    for k in ("val/acc", "val/loss", "test/acc", "test/macro_f1", "bof/acc"):
        if k in r["mean"]:
            row[k] = r["mean"][k]
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("grids", nargs="+", help=", ".join(GRIDS))
    p.add_argument("--out", default="runs/study", help="output folder (default runs/study)")
    p.add_argument("--data-root", help="folder of the real office sounds (grids on D)")
    p.add_argument("--jobs", type=int, default=1, help="experiments run side by side")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per experiment")
    p.add_argument("--only", help="run only the jobs whose name contains this text")
    p.add_argument("--extra", nargs="*", default=[], metavar="key=value",
                   help="overrides added to every job (e.g. trainer.max_epochs=1 for a smoke test)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(n, args + a.extra) for g in a.grids for n, args in grid(g) if not a.only or a.only in n]
    if any(needs_root(args) for _, args in jobs) and not a.data_root:
        raise SystemExit("these grids run on the folder data set: pass --data-root")
    if a.data_root:  # decode the audio once, before the jobs share the cache
        subprocess.run([sys.executable, "-m", "asc.cli", "data", "check", "data.name=folder",
                        f"data.root={a.data_root}", f"data.cache_dir={out / 'cache'}"], stdout=subprocess.DEVNULL)
    rows = []
    with ThreadPoolExecutor(a.jobs) as pool:
        for row in pool.map(lambda j: run_job(j[0], j[1], out, a.data_root, a.threads), jobs):
            rows.append(row)
            print(json.dumps(row), flush=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    lines = ["| experiment | folds | val acc % | test acc % | bag-of-frames % | s per fold | best epochs |",
             "|---|---:|---:|---:|---:|---:|---|"]
    pct = lambda r, k: f"{100 * r[k]:.2f}" if k in r else "—"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['name']} | {r.get('folds', r.get('error'))} | {pct(r, 'val/acc')} | {pct(r, 'test/acc')} | "
                     f"{pct(r, 'bof/acc')} | {r.get('fold_s', '—')} | {r.get('best_epochs', '')} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
