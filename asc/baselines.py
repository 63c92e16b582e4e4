"""Bag-of-frames baseline: logistic regression on the clip-mean log spectrum.

It sees only which bands carry energy on average, never how events unfold, so on the
synthetic scenes it shows how much of the task a model without temporal structure can
solve.
"""

from __future__ import annotations

import numpy as np
import torch

from asc.data.base import ClipSet
from asc.features import LogSpectrogram


@torch.no_grad()
def clip_mean_features(clips: ClipSet, features_cfg, batch: int = 64) -> np.ndarray:
    """(n_clips, n_bins) clip-mean log spectrum (Gammatone by default)."""
    fe = LogSpectrogram(features_cfg.name, clips.audio.sample_rate, features_cfg.n_bins, features_cfg.win_ms,
                        features_cfg.hop_ms, features_cfg.fmin, features_cfg.fmax, features_cfg.log_eps)
    out = np.empty((len(clips), features_cfg.n_bins), dtype=np.float64)
    for i in range(0, len(clips), batch):
        ids = range(i, min(i + batch, len(clips)))
        waves = [clips.audio.get(j) for j in ids]
        if len({len(w) for w in waves}) == 1:
            out[i:i + len(waves)] = fe(torch.from_numpy(np.stack(waves))).mean(-1).double().numpy()
        else:
            for j, w in zip(ids, waves):
                out[j] = fe(torch.from_numpy(np.ascontiguousarray(w))[None]).mean(-1)[0].double().numpy()
    return out


def logistic_regression(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 1.0, iters: int = 200):
    """Multinomial logistic regression (L-BFGS) on standardised features.

    Objective: mean cross-entropy + ||W||² / (2 · l2 · n), i.e. scikit-learn's C = l2.
    Returns a predict function.
    """
    mu, sd = x.mean(0), x.std(0) + 1e-8
    xt = torch.tensor((x - mu) / sd)
    yt = torch.tensor(y, dtype=torch.long)
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + (w**2).sum() / (2 * l2 * len(xt))
        loss.backward()
        return loss

    opt.step(closure)

    def predict(x_new: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return (torch.tensor((x_new - mu) / sd) @ w + b).argmax(1).numpy()

    return predict


def bag_of_frames_fold(feats: np.ndarray, clips: ClipSet, fold: int) -> float:
    """Test accuracy of the baseline on one fold (trained on the fold's whole training part)."""
    train, test = clips.folds[fold]
    predict = logistic_regression(feats[train], clips.labels[train], len(clips.class_names))
    return float((predict(feats[test]) == clips.labels[test]).mean())
