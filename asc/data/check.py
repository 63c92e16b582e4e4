"""``asc data check``: what a user needs to know about a data set before a long run."""

from __future__ import annotations

from collections import Counter

import numpy as np

from asc.data.audio import display_name
from asc.tables import format_table


def _counts(class_names, labels, folds) -> str:
    fold_ids = sorted(folds)
    header = ["class", "clips"] + [f"test@{k}" for k in fold_ids]
    rows = []
    for c, name in enumerate(class_names):
        row = [name, int((labels == c).sum())]
        row += [int((labels[folds[k][1]] == c).sum()) for k in fold_ids]
        rows.append(row)
    rows.append(["total", len(labels)] + [len(folds[k][1]) for k in fold_ids])
    return format_table(header, rows)


def check_dataset(data_cfg) -> tuple[str, int]:
    """A printable report and the number of problem files."""
    if data_cfg.name == "synthetic":
        from asc.data import load_synthetic

        clips = load_synthetic(data_cfg)
        seconds = clips.info["clip_seconds"]
        report = [f"data set: synthetic scenes ({data_cfg.synthetic.preset} preset), {len(clips)} clips, "
                  f"{len(clips.class_names)} classes, {len(clips.folds)} folds",
                  f"durations: {seconds:.2f} s each ({len(clips) * seconds / 3600:.2f} h in all), "
                  f"{data_cfg.sample_rate} Hz, mono", "",
                  _counts(clips.class_names, clips.labels, clips.folds), "", "problems: none"]
        return "\n".join(report), 0

    from asc.data.files import decode, load_listing

    listing = load_listing(data_cfg, data_cfg.fold_seed)
    _, index = decode(listing, data_cfg)
    labels = np.array([listing.class_names.index(l) if l in listing.class_names else -1 for l in listing.labels])
    folds = {k: (np.array(tr, dtype=int), np.array(te, dtype=int)) for k, (tr, te) in listing.folds.items()}
    infos = [e.get("info") for e in index]
    good = [i for i in infos if i]
    secs = np.array([i["frames"] / i["sample_rate"] for i in good]) if good else np.zeros(1)
    seg_s = data_cfg.segment_seconds
    segment_short = int((secs < seg_s).sum()) if good and seg_s is not None else 0
    problems = [(p, e["problem"]) for p, e in zip(listing.paths, index) if e["problem"]]
    lines = [f"data set: {listing.name} at {display_name(listing.root)} {' '.join(listing.notes)}".rstrip(),
             f"{len(listing.paths)} files, {len(listing.class_names)} classes, {len(listing.folds)} folds", "",
             _counts(listing.class_names, labels, folds), "",
             f"durations: min {secs.min():.2f} s, median {np.median(secs):.2f} s, max {secs.max():.2f} s, "
             f"total {secs.sum() / 3600:.2f} h",
             (f"shorter than a segment ({seg_s} s, fed at their own length, padding masked): {segment_short}"
              if seg_s is not None else "segments: whole clips (data.segment_seconds=null)"),
             "sample rates: " + ", ".join(f"{sr} Hz × {n}"
                                          for sr, n in sorted(Counter(i["sample_rate"] for i in good).items())),
             "channels: " + ", ".join(f"{c} × {n}" for c, n in sorted(Counter(i["channels"] for i in good).items())),
             "formats: " + ", ".join(
                 f"{f} × {n}" for f, n in sorted(Counter(f"{i['format']}/{i['subtype']}" for i in good).items())),
             f"resampled on load to {data_cfg.sample_rate} Hz, mixed to mono", ""]
    for k, (tr, te) in folds.items():
        if np.intersect1d(tr, te).size:
            problems.append((f"fold {k}", f"{np.intersect1d(tr, te).size} clips are in both train and test"))
    if problems:
        lines.append(f"problems ({len(problems)}):")
        lines += [f"  {display_name(p)}: {why}" for p, why in problems]
        lines.append("fix or remove these files, or run with data.on_bad_file=skip to leave them out")
    else:
        lines.append("problems: none")
    return "\n".join(lines), len(problems)
