"""What the tool commands do: ``asc synth | baseline | data check | config show | predict |
attention | export | compare``, one ``cmd_<name>(args) -> int`` each (the exit status).

Their arguments are defined in :mod:`asc.cli` (one ``_<name>_parser`` function each), with
the experiment commands (``train``, ``cv``, ``sweep``, ``bench``).  Each imports its
module inside the function, so that ``asc --help`` starts fast.
"""

from __future__ import annotations

import sys
from pathlib import Path


def cmd_config_show(args) -> int:
    from asc.config import load_config
    from asc.config_show import show

    print(show(load_config(args.config, args.overrides)))
    return 0


def cmd_synth(args) -> int:
    from asc.config import load_config
    from asc.data.synthetic import write_synthetic

    cfg = load_config(args.config, args.overrides)
    meta = write_synthetic(cfg.data, Path(args.out))
    print(f"wrote {meta['n_clips']} clips ({meta['n_classes']} classes, {meta['n_folds']} folds) to {args.out}")
    return 0


def cmd_baseline(args) -> int:
    import numpy as np

    from asc.baselines import bag_of_frames_fold, clip_mean_features
    from asc.config import load_config
    from asc.data import load_clipset
    from asc.experiment import selected_folds

    cfg = load_config(args.config, args.overrides)
    clips = load_clipset(cfg.data)
    folds = selected_folds(cfg, clips)
    feats = clip_mean_features(clips, cfg.features)
    accs = []
    for k in folds:
        accs.append(bag_of_frames_fold(feats, clips, k))
        print(f"fold {k}: bag-of-frames accuracy {100 * accs[-1]:.2f} %")
    print(f"mean ± std over {len(accs)} folds: {100 * np.mean(accs):.2f} ± {100 * np.std(accs):.2f} %")
    return 0


def cmd_data_check(args) -> int:
    from asc.config import load_config
    from asc.data.check import check_dataset

    cfg = load_config(args.config, args.overrides)
    report, n_problems = check_dataset(cfg.data)
    print(report)
    return 1 if n_problems else 0


def cmd_predict(args) -> int:
    from asc.inference import load
    from asc.predict import collect_audio, predict_files, summary

    model = load(args.checkpoint, args.device)
    files = collect_audio(args.paths)
    rows = predict_files(model, files, Path(args.out), args.top_k, args.attention, args.batch_segments)
    print(summary(rows))
    print(f"predictions: {Path(args.out) / 'predictions.csv'} and predictions.json")
    failed = sum(r["status"] != "ok" for r in rows)
    if failed:
        print(f"error: {failed} of {len(rows)} files could not be classified (reasons in predictions.csv)",
              file=sys.stderr)
    return 1 if failed else 0


def cmd_attention(args) -> int:
    from asc.attention_score import analyse_checkpoints, compare_checkpoints, table
    from asc.errors import AscError

    if args.compare:
        if args.checkpoint:
            raise AscError("give either --checkpoint (scores) or --compare A B (pictures side by side), not both")
        report = compare_checkpoints(args.compare, Path(args.out), args.device)
        for row in report["clips"]:
            cells = [f"{label}: {r['predicted']} ({r['probability']:.2f}), score "
                     f"{'-' if r['event_score'] is None else format(r['event_score'], '.2f')}"
                     for label, r in row.items() if isinstance(r, dict)]
            print(f"{row['clip']} (true {row['true']}): " + "; ".join(cells))
        print(f"pictures and compare.json in {args.out}")
        return 0
    if not args.checkpoint:
        raise AscError("give --checkpoint (repeat to compare scores) or --compare A B")

    results = analyse_checkpoints(args.checkpoint, Path(args.out), args.device)
    print(table(results))
    print(f"scores: {Path(args.out) / 'attention_scores.json'}, figure: {Path(args.out) / 'attention_scores.png'}")
    return 0


def cmd_export(args) -> int:
    from asc.export import export

    report = export(args.checkpoint, args.format, args.out)
    print(f"wrote {report['path']} ({'with' if report['with_frontend'] else 'without'} front-end): {report['note']}")
    print(f"max |exported - checkpoint| on random segments: {report['max_abs_diff']:.2e}; "
          f"details in {report['path']}.json")
    return 0


def cmd_ensemble(args) -> int:
    import json

    from asc.stats import ensemble_runs, format_ensemble

    result = ensemble_runs(args.runs)
    print(format_ensemble(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def cmd_compare(args) -> int:
    import json

    from asc.stats import compare_runs, format_comparison, format_fold_breakdown

    corrected = True if args.corrected else False if args.uncorrected else None
    result = compare_runs(args.a, args.b, args.metric, args.level, corrected)
    print(format_comparison(" + ".join(Path(p).name for p in args.a), " + ".join(Path(p).name for p in args.b), result))
    if by_fold := format_fold_breakdown(result):
        print(by_fold)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
