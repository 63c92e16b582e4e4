"""Figures: attention over the spectrogram, confusion matrices.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: no window opens
and no backend is changed, so the same code saves PNGs during training and displays
inline in a notebook (``display(fig)``).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def new_figure(figsize) -> Figure:
    return Figure(figsize=figsize, constrained_layout=True)


def attention_figure(analysis: dict, hop_seconds: float, title: str = "", events: list[dict] | None = None,
                     class_names: list[str] | None = None):
    """Log spectrogram with the temporal attention curve aligned under it; the T×D mask
    and the spatial vector beside them.  ``analysis`` is the output of
    :meth:`asc.module.SceneClassifier.analyse_clip`; ``events`` (synthetic data) are drawn
    as shaded time intervals (class events) and dotted outlines (distractors)."""
    spec = analysis["spec"]
    t_end = spec.shape[1] * hop_seconds
    has_attn = "temporal" in analysis
    fig = new_figure((12, 4.8))
    grid = fig.add_gridspec(2, 3, width_ratios=[4, 2, 0.6], height_ratios=[3, 1])
    ax_spec = fig.add_subplot(grid[0, 0])
    ax_spec.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, t_end, 0, spec.shape[0]))
    ax_spec.set_ylabel("band")
    ax_spec.set_title(title, fontsize=10, loc="left")
    for ev in events or []:
        style = dict(color="cyan", alpha=0.25) if ev["kind"] == "class" else dict(fill=False, ec="white", ls=":")
        ax_spec.axvspan(ev["onset"], ev["offset"], **style)
    ax_t = fig.add_subplot(grid[1, 0], sharex=ax_spec)
    times = (np.arange(spec.shape[1]) + 0.5) * hop_seconds
    if has_attn:
        a = analysis["temporal"]
        ax_t.fill_between(times[: len(a)], a, color="tab:orange", alpha=0.6, step="mid")
        # each segment's attention sums to 1 over its own frames: uniform is 1/(frames in a segment)
        ax_t.axhline(analysis.get("uniform", 1.0 / len(a)), color="grey", lw=0.8, ls="--", label="uniform")
        ax_t.legend(loc="upper right", fontsize=7)
    ax_t.set_xlabel("time (s)")
    ax_t.set_ylabel("temporal\nattention")
    ax_t.set_xlim(0, t_end)
    probs = analysis["probs"]
    top = np.argsort(probs)[::-1][:3]
    names = class_names or [str(i) for i in range(len(probs))]
    ax_p = fig.add_subplot(grid[1, 1:])
    ax_p.barh([names[i] for i in top[::-1]], probs[top[::-1]], color="tab:blue")
    ax_p.set_xlim(0, 1)
    ax_p.set_xlabel("clip probability (top 3)")
    if has_attn:
        ax_m = fig.add_subplot(grid[0, 1])
        ax_m.imshow(analysis["mask"].T, origin="lower", aspect="auto", cmap="viridis",
                    extent=(0, t_end, 0, analysis["mask"].shape[1]))
        ax_m.set_title("mask M = a sᵀ (time × feature)", fontsize=9)
        ax_m.set_ylabel("feature d")
        ax_s = fig.add_subplot(grid[0, 2], sharey=ax_m)
        s = analysis["spatial"]
        ax_s.barh(np.arange(len(s)) + 0.5, s, height=1.0, color="tab:green")
        ax_s.axvline(1.0 / len(s), color="grey", lw=0.8, ls="--")
        ax_s.set_title("spatial s", fontsize=9)
        ax_s.tick_params(labelleft=False, labelsize=7)
    return fig


def compare_figure(analyses: list[tuple[str, dict]], hop_seconds: float, title: str = "",
                   events: list[dict] | None = None, class_names: list[str] | None = None):
    """One clip seen by several models: the log spectrogram (class events shaded) over one
    temporal-attention panel per model, on the same time axis, each with its uniform level
    and its top class."""
    spec = analyses[0][1]["spec"]
    t_end = spec.shape[1] * hop_seconds
    fig = new_figure((11, 2.2 + 1.4 * len(analyses)))
    grid = fig.add_gridspec(1 + len(analyses), 1, height_ratios=[2.2] + [1.0] * len(analyses))
    ax_spec = fig.add_subplot(grid[0])
    ax_spec.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, t_end, 0, spec.shape[0]))
    ax_spec.set_ylabel("band")
    ax_spec.set_title(title, fontsize=10, loc="left")
    for ev in events or []:
        style = dict(color="cyan", alpha=0.25) if ev["kind"] == "class" else dict(fill=False, ec="white", ls=":")
        ax_spec.axvspan(ev["onset"], ev["offset"], **style)
    names = class_names or []
    times = (np.arange(spec.shape[1]) + 0.5) * hop_seconds
    for k, (label, analysis) in enumerate(analyses, 1):
        ax = fig.add_subplot(grid[k], sharex=ax_spec)
        top = int(np.argmax(analysis["probs"]))
        verdict = f"{names[top] if names else top} ({analysis['probs'][top]:.2f})"
        if "temporal" in analysis:
            a = analysis["temporal"]
            ax.fill_between(times[: len(a)], a, color=f"C{k}", alpha=0.6, step="mid")
            ax.axhline(analysis.get("uniform", 1.0 / len(a)), color="grey", lw=0.8, ls="--", label="uniform")
            for ev in events or []:
                if ev["kind"] == "class":
                    ax.axvspan(ev["onset"], ev["offset"], color="cyan", alpha=0.15)
            ax.legend(loc="upper right", fontsize=7)
        else:
            ax.text(0.5, 0.5, "no attention (plain pooling)", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylabel("attention", fontsize=8)
        ax.set_title(f"{label}: predicts {verdict}", fontsize=9, loc="left")
        ax.set_xlim(0, t_end)
    ax.set_xlabel("time (s)")
    return fig


def confusion_figure(cm: np.ndarray, class_names: list[str], title: str = ""):
    """Row-normalised confusion matrix with counts in the cells."""
    cm = np.asarray(cm)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2)
    fig = new_figure((size + 1, size))
    ax = fig.add_subplot()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    if n <= 25:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def picture_name(item, class_name: str, prefix: str = "") -> str:
    """A PNG name unique per clip: ``<prefix><stem>-<class>-<hash>.png``, the hash (6 hex
    digits) of the clip's path as given, so that ``a/rec001.wav`` and ``b/rec001.wav``
    (or a folder data set's repeated names) do not overwrite each other."""
    import hashlib
    import os
    import re
    from pathlib import PurePath

    path = os.fsdecode(item)
    digest = hashlib.sha1(path.encode("utf-8", "backslashreplace")).hexdigest()[:6]
    safe = lambda text: re.sub(r"[^\w.+-]", "_", text)  # noqa: E731
    return f"{prefix}{safe(PurePath(path).stem)}-{safe(class_name)}-{digest}.png"


def save(fig, path) -> None:
    fig.savefig(path, dpi=90)
