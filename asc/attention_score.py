"""Where does attention look?  Scored on a checkpoint's test clips.

On any data set, the *spread* of attention: exp(entropy) of the weights divided by their
number, for the temporal vector (over a segment's frames) and the spatial vector (over the
D features), averaged over each clip's segments and then over clips.  1.0 is uniform (the
model pools like a plain mean); 1/n is all weight on one frame or feature.  A spread in
time near 1 says attention pooling has nothing to select on these clips, whatever its
accuracy.  Mean pooling gives 1.0 for both; for max pooling the time spread is that of the
frames holding the features' maxima, and its feature spread is 1.0.

On the synthetic scenes, which know where their events are, also the event score of a clip:
attention mass inside the class-event intervals divided by the fraction of the clip's frames
those intervals cover.  1.0 is chance (attention spread evenly); 1 / coverage is the maximum
(all attention on event frames).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asc.errors import AscError


def event_frames(n_frames: int, hop_seconds: float, intervals: list[tuple[float, float]]) -> np.ndarray:
    """Boolean mask of the frames whose centres (frame i at i * hop, centred front-end)
    fall inside any interval."""
    centres = np.arange(n_frames) * hop_seconds
    inside = np.zeros(n_frames, dtype=bool)
    for onset, offset in intervals:
        inside |= (centres >= onset) & (centres < offset)
    return inside


def attention_in_events(temporal: np.ndarray, hop_seconds: float, intervals) -> float | None:
    """Attention mass in the intervals / fraction of frames they cover (None when the
    intervals cover no frame or every frame)."""
    a = np.asarray(temporal, dtype=np.float64)
    a = a / a.sum()
    inside = event_frames(len(a), hop_seconds, intervals)
    coverage = inside.mean()
    if coverage == 0 or coverage == 1:
        return None
    return float(a[inside].sum() / coverage)


SPREADS = (("spread in time", "time_spread"), ("spread in features", "feature_spread"))  # (row name, key)


def score_model(model, clips, indices) -> dict:
    """Attention of ``model`` over ``clips[indices]``: mean spread in time and in features
    (``time_spread``, ``feature_spread``) and, where the clips know their events, per-class
    and overall mean event score (``per_class``, ``overall``; None without events)."""
    hop_s = model.frontend.hop / model.sample_rate
    per_class: dict[str, list[float]] = {c: [] for c in clips.class_names}
    correct, time_spreads, feature_spreads = 0, [], []
    for i in map(int, indices):
        analysis = model.analyse_clip(clips.audio.get(i), with_spec=False)
        if "temporal" not in analysis:
            raise AscError(f"the {model.cfg.model.name} model has no attention to score")
        correct += int(analysis["probs"].argmax() == clips.labels[i])
        time_spreads.append(analysis["spread_time"])
        feature_spreads.append(analysis["spread_features"])
        if clips.events:
            intervals = [(e["onset"], e["offset"]) for e in clips.events[i] if e["kind"] == "class"]
            score = attention_in_events(analysis["temporal"], hop_s, intervals)
            if score is not None:
                per_class[clips.class_names[clips.labels[i]]].append(score)
    scores = [s for v in per_class.values() for s in v]
    return {"per_class": {c: float(np.mean(v)) if v else None for c, v in per_class.items()},
            "overall": float(np.mean(scores)) if scores else None, "n_clips": len(indices),
            "n_scored": len(scores), "time_spread": float(np.mean(time_spreads)),
            "feature_spread": float(np.mean(feature_spreads)), "accuracy": correct / len(indices)}


def analyse_checkpoints(checkpoints: list[str], out_dir: Path, device: str = "auto") -> dict:
    """Score each checkpoint on the test clips of its fold (all clips if the fold is
    unknown); write ``attention_scores.json`` and ``attention_scores.png``."""
    from asc.inference import load

    results = {}
    labels = checkpoint_labels(checkpoints)
    for ckpt, label in zip(checkpoints, labels):
        model = load(ckpt, device)
        clips, indices = test_clips(model, ckpt)
        fold = model.fold
        label = f"{model.cfg.model.pooling} ({label})"
        results[label] = {"checkpoint": str(ckpt), "pooling": model.cfg.model.pooling, "fold": fold,
                          **score_model(model, clips, indices)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "attention_scores.json").write_text(json.dumps(results, indent=2))
    figure(results, out_dir / "attention_scores.png")
    return results


def test_clips(model, checkpoint="the checkpoint"):
    """The data set a checkpoint was trained on (its config's ``data``) and its fold's test
    clips (all clips when the fold is unknown); refuses data whose classes are not the
    checkpoint's."""
    from asc.data import load_clipset

    data = model.cfg.data
    clips = load_clipset(data)
    if list(clips.class_names) != list(model.class_names):
        where = f" at {data.root}" if data.get("root") else ""
        raise AscError(f"{checkpoint} knows classes {model.class_names}, the {data.name} data of its config{where} "
                       f"has {clips.class_names}: it was not trained on them")
    fold = model.fold
    return clips, (clips.folds[fold][1] if fold in clips.folds else np.arange(len(clips)))


def synthetic_test_clips(model, checkpoint="the checkpoint"):
    """:func:`test_clips` of a checkpoint trained on the synthetic scenes, whose events are
    known; refuses a checkpoint trained on other data."""
    if model.cfg.data.name != "synthetic":
        raise AscError(f"{checkpoint} was trained on {model.cfg.data.name}; attention scores and maps against "
                       "known events need a checkpoint trained on the synthetic scenes (data.name=synthetic)")
    return test_clips(model, checkpoint)


def checkpoint_labels(checkpoints: list[str]) -> list[str]:
    """Column labels: ``<experiment>/<fold>``, with the checkpoint's file name where two
    share a fold, and a number where even that repeats."""
    paths = [Path(c) for c in checkpoints]
    labels = [f"{p.parent.parent.parent.name}/{p.parent.parent.name}" for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{l}/{p.stem}" if labels.count(l) > 1 else l for l, p in zip(labels, paths)]
    seen: dict[str, int] = {}
    out = []
    for l in labels:
        seen[l] = seen.get(l, 0) + 1
        out.append(l if labels.count(l) == 1 else f"{l} #{seen[l]}")
    return out


def compare_checkpoints(checkpoints: list[str], out_dir: Path, device: str = "auto", per_class: int = 1) -> dict:
    """Two (or more) runs' attention on the same clips, side by side: the first
    ``per_class`` test clips of each class of the first checkpoint's fold, one picture per
    clip (``compare-<clip>-<class>-<hash>.png``) and ``compare.json`` with each model's
    prediction and attention score (mass in class events / their coverage) per clip."""
    from asc.data.base import attention_clip_ids
    from asc.inference import load
    from asc.viz import band_frequencies, compare_figure, picture_name, save

    models = [load(c, device) for c in checkpoints]
    labels = [f"{m.cfg.model.pooling if m.cfg.model.name == 'crnn' else m.cfg.model.name} ({l})"
              for m, l in zip(models, checkpoint_labels(checkpoints))]
    clips, test = synthetic_test_clips(models[0], checkpoints[0])
    for model, ckpt in zip(models[1:], checkpoints[1:]):
        other, _ = synthetic_test_clips(model, ckpt)
        if other.items != clips.items or model.sample_rate != models[0].sample_rate:
            raise AscError(f"{ckpt} was trained on other synthetic scenes than {checkpoints[0]} "
                           "(data.synthetic.* or data.sample_rate differ): there is no same clip to compare")
    out_dir.mkdir(parents=True, exist_ok=True)
    hop_s = models[0].frontend.hop / models[0].sample_rate
    report = {"checkpoints": dict(zip(labels, map(str, checkpoints))), "clips": []}
    for i in attention_clip_ids(clips, np.asarray(test), per_class):
        wave = clips.audio.get(i)
        true = clips.class_names[clips.labels[i]]
        intervals = [(e["onset"], e["offset"]) for e in clips.events[i] if e["kind"] == "class"]
        analyses, row = [], {"clip": clips.items[i], "true": true}
        for label, model in zip(labels, models):
            analysis = model.analyse_clip(wave)
            analyses.append((label, analysis))
            row[label] = {"predicted": clips.class_names[int(analysis["probs"].argmax())],
                          "probability": float(analysis["probs"].max()),
                          "event_score": attention_in_events(analysis["temporal"], hop_s, intervals)
                          if "temporal" in analysis else None}
        fig = compare_figure(analyses, hop_s, f"{clips.items[i]}: true {true}", clips.events[i], clips.class_names,
                             band_frequencies(models[0].frontend))
        row["picture"] = str(out_dir / picture_name(clips.items[i], true, "compare-"))
        save(fig, row["picture"])
        report["clips"].append(row)
    (out_dir / "compare.json").write_text(json.dumps(report, indent=2))
    return report


def has_event_scores(results: dict) -> bool:
    return any(r["overall"] is not None for r in results.values())


def event_classes(results: dict) -> list[str]:
    """The classes of the checkpoints with event scores, in order of first appearance."""
    scored = [r for r in results.values() if r["overall"] is not None]
    return list(dict.fromkeys(c for r in scored for c in r["per_class"]))


def table(results: dict) -> str:
    from asc.tables import format_table

    labels = list(results)
    events = has_event_scores(results)
    classes = event_classes(results) + ["overall"] if events else []
    rows = [[c, *("-" if v is None else f"{v:.2f}" for v in
                  (results[l]["overall"] if c == "overall" else results[l]["per_class"].get(c) for l in labels))]
            for c in classes]
    rows += [[name, *(f"{results[l][key]:.2f}" for l in labels)] for name, key in SPREADS]
    widths = [max(len(r[0]) for r in rows), *(max(10, len(l)) for l in labels)]
    notes = ["spread = exp(entropy) / count of the attention weights (1.00 = uniform, as mean pooling)"]
    if events:
        notes.insert(0, "score = attention mass inside class events / fraction of time they cover (1.0 = chance)")
    header = ["class" if events else "attention", *labels]
    return "\n".join([format_table(header, rows, widths=widths, rule=False), *notes])


def figure(results: dict, path: Path) -> None:
    """Bars per checkpoint: the event score per class (synthetic scenes), else the spreads."""
    from asc.viz import new_figure, save

    labels = list(results)
    if has_event_scores(results):
        groups = event_classes(results) + ["overall"]
        value = lambda r, c: r["per_class"].get(c) if c != "overall" else r["overall"]  # noqa: E731
        reference, ylabel = ("chance", 1.0), "attention in events / coverage"
    else:
        groups = [name for name, _ in SPREADS]
        value = lambda r, c: r[dict(SPREADS)[c]]  # noqa: E731
        reference, ylabel = ("uniform (mean pooling)", 1.0), "exp(entropy) / count"
    fig = new_figure((max(6, 1.1 * len(groups)), 3.6))
    ax = fig.add_subplot()
    width = 0.8 / len(labels)
    for k, label in enumerate(labels):
        ax.bar(np.arange(len(groups)) + k * width, [value(results[label], c) or 0 for c in groups], width, label=label)
    ax.axhline(reference[1], color="grey", ls="--", lw=1, label=reference[0])
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    save(fig, path)
