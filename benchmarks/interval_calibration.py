"""How often `asc compare`'s plain and corrected intervals call a difference that is not
there, for the shape of a seeds x folds study (README, *Method study*, *Intervals*).

Each simulated comparison has no true difference: the paired difference of seed s on fold k
is fold_effect[k] + noise[s, k], with the noise of unit std and a fold effect of std
``fold_sd`` shared by the seeds of a fold (the seeds of one fold see the same clips).
Prints, per fold_sd, the share of comparisons with p < 0.10 (a calibrated test: 0.10).

    python benchmarks/interval_calibration.py [--seeds 5] [--folds 5] [--ratio 0.25] [--trials 2000]
"""

import argparse

import numpy as np

from asc.stats import paired_difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--ratio", type=float, default=0.25, help="n_test / n_train of a fold (5-fold: 0.25)")
    parser.add_argument("--trials", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.seeds} seeds x {args.folds} folds, no true difference, share of p < 0.10 in {args.trials} trials")
    print("fold effect sd / noise sd   plain t   Nadeau-Bengio corrected")
    for fold_sd in (0.0, 0.5, 0.75, 1.0):
        called = np.zeros(2)
        for _ in range(args.trials):
            diff = rng.normal(0, 1, (args.seeds, args.folds)) + rng.normal(0, fold_sd, (1, args.folds))
            zeros = np.zeros(diff.size)
            called += [paired_difference(diff.ravel(), zeros, test_train_ratio=r)["p"] < 0.10
                       for r in (None, args.ratio)]
        plain, corrected = called / args.trials
        print(f"{fold_sd:>25.2f}   {plain:7.3f}   {corrected:7.3f}")


if __name__ == "__main__":
    main()
