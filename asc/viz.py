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


def band_frequencies(frontend) -> np.ndarray | None:
    """Centre frequency in Hz of each band of an :class:`asc.features.LogSpectrogram`
    (peak of each filter for gammatone and mel; the bins' frequencies for STFT and CQT),
    or None when it cannot be told."""
    layer = getattr(frontend, "layer", None)
    for name in ("gammatone_basis", "mel_basis"):
        basis = getattr(layer, name, None)
        if basis is not None:
            basis = basis.detach().cpu().numpy()
            n_fft = 2 * (basis.shape[1] - 1)
            return np.abs(basis).argmax(1) * frontend.sample_rate / n_fft
    for name in ("bins2freq", "frequencies"):
        freqs = getattr(layer, name, None)
        if freqs is not None:
            return np.asarray(freqs, dtype=float)[: frontend.n_bins]
    return None


def _hz_axis(ax, band_hz, n_bands: int) -> None:
    if band_hz is None or len(band_hz) != n_bands:
        ax.set_ylabel("band")
        return
    ticks = np.linspace(0, n_bands - 1, 5).round().astype(int)
    ax.set_yticks(ticks + 0.5, [f"{band_hz[t]:.0f}" if band_hz[t] < 1000 else f"{band_hz[t] / 1000:.1f}k"
                                for t in ticks])
    ax.set_ylabel("frequency (Hz)")


def _draw_events(ax, events) -> None:
    """Class events: an outline with a light tint (the event stays visible under it);
    distractors: a dotted outline.  A legend says which is which."""
    from matplotlib.patches import Patch

    kinds = set()
    for ev in events or []:
        if ev["kind"] == "class":
            ax.axvspan(ev["onset"], ev["offset"], facecolor="cyan", alpha=0.12, edgecolor="none")
            for t in (ev["onset"], ev["offset"]):
                ax.axvline(t, color="cyan", lw=1.0)
        else:
            ax.axvspan(ev["onset"], ev["offset"], fill=False, ec="white", ls=":", lw=1.0)
        kinds.add(ev["kind"] == "class")
    handles = [Patch(facecolor=(0, 1, 1, 0.25), edgecolor="cyan", label="class event")] if True in kinds else []
    handles += [Patch(fill=False, edgecolor="grey", ls=":", label="distractor")] if False in kinds else []
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.7)


def attention_figure(analysis: dict, hop_seconds: float, title: str = "", events: list[dict] | None = None,
                     class_names: list[str] | None = None, band_hz: np.ndarray | None = None):
    """Log spectrogram (frequency axis in Hz with ``band_hz``, see :func:`band_frequencies`;
    a colour bar) with the temporal attention curve aligned under it; beside them the
    segment-by-segment class probabilities and the spatial vector s.  (The mask
    M = a sᵀ is rank one: it shows nothing beyond a and s.)  ``analysis`` is the output of
    :meth:`asc.inference.Predictor.analyse_clip`; ``events`` (synthetic data) are drawn
    as tinted, outlined intervals (class events) and dotted outlines (distractors)."""
    spec = analysis["spec"]
    t_end = spec.shape[1] * hop_seconds
    has_attn = "temporal" in analysis
    probs = analysis["probs"]
    names = class_names or [str(i) for i in range(len(probs))]
    fig = new_figure((12, 4.8))
    grid = fig.add_gridspec(2, 3, width_ratios=[4, 2, 0.6], height_ratios=[3, 1])
    ax_spec = fig.add_subplot(grid[0, 0])
    im = ax_spec.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, t_end, 0, spec.shape[0]))
    fig.colorbar(im, ax=ax_spec, pad=0.01, fraction=0.03, label="standardised log power")
    _hz_axis(ax_spec, band_hz, spec.shape[0])
    ax_spec.set_title(title, fontsize=10, loc="left")
    _draw_events(ax_spec, events)
    ax_t = fig.add_subplot(grid[1, 0], sharex=ax_spec)
    _temporal_panel(ax_t, analysis, (np.arange(spec.shape[1]) + 0.5) * hop_seconds, t_end)
    top = np.argsort(probs)[::-1][:3]
    ax_p = fig.add_subplot(grid[1, 1:])
    ax_p.barh([names[i] for i in top[::-1]], probs[top[::-1]], color="tab:blue")
    ax_p.set_xlim(0, 1)
    ax_p.set_xlabel("clip probability (top 3)")
    seg = analysis.get("segment_probs")
    if seg is not None:
        _segment_panel(fig.add_subplot(grid[0, 1]), seg, names)
    if has_attn:
        _spatial_panel(fig.add_subplot(grid[0, 2]), analysis["spatial"])
    return fig


def _temporal_panel(ax, analysis: dict, times: np.ndarray, t_end: float) -> None:
    """The temporal attention curve under the spectrogram (empty without attention)."""
    if "temporal" in analysis:
        a = analysis["temporal"]
        ax.fill_between(times[: len(a)], a, color="tab:orange", alpha=0.6, step="mid")
        # each segment's attention sums to 1 over its own frames: uniform is 1/(frames in a segment)
        ax.axhline(analysis.get("uniform", 1.0 / len(a)), color="grey", lw=0.8, ls="--", label="uniform")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("temporal\nattention")
    ax.set_xlim(0, t_end)


def _segment_panel(ax, seg, names: list[str]) -> None:
    """Class probabilities segment by segment (segments across, classes up)."""
    ax.imshow(np.asarray(seg).T, origin="lower", aspect="auto", cmap="Blues", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_yticks(range(len(names)), names, fontsize=6 if len(names) > 10 else 7)
    n = len(seg)
    if n <= 12:  # segments numbered from 1 (a one-segment clip otherwise gets ticks at -0.4 ... 0.4)
        ax.set_xticks(range(n), [str(i + 1) for i in range(n)])
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("segment", fontsize=8)
    ax.set_title("segment probabilities", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)


def _spatial_panel(ax, s) -> None:
    """The spatial attention vector s, one bar per feature, with the uniform level dashed."""
    ax.barh(np.arange(len(s)) + 0.5, s, height=1.0, color="tab:green")
    ax.axvline(1.0 / len(s), color="grey", lw=0.8, ls="--")
    ax.set_ylim(0, len(s))
    ax.set_title("spatial s", fontsize=9)
    ax.set_ylabel("feature d", fontsize=8)
    ax.tick_params(labelsize=7)


def compare_figure(analyses: list[tuple[str, dict]], hop_seconds: float, title: str = "",
                   events: list[dict] | None = None, class_names: list[str] | None = None,
                   band_hz: np.ndarray | None = None):
    """One clip seen by several models: the log spectrogram (class events shaded) over one
    temporal-attention panel per model, on the same time axis, each with its uniform level
    and its top class."""
    spec = analyses[0][1]["spec"]
    t_end = spec.shape[1] * hop_seconds
    fig = new_figure((11, 2.2 + 1.4 * len(analyses)))
    grid = fig.add_gridspec(1 + len(analyses), 1, height_ratios=[2.2] + [1.0] * len(analyses))
    ax_spec = fig.add_subplot(grid[0])
    ax_spec.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, t_end, 0, spec.shape[0]))
    _hz_axis(ax_spec, band_hz, spec.shape[0])
    ax_spec.set_title(title, fontsize=10, loc="left")
    _draw_events(ax_spec, events)
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
