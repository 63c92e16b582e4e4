import numpy as np
import pytest

from asc.baselines import bag_of_frames_fold, clip_mean_features
from asc.config import load_config
from asc.data import load_clipset
from asc.data.synthetic import CLASS_NAMES, EVENT_SECONDS, SyntheticScenes, _class_event


def test_deterministic_for_seed_and_index():
    a, b = SyntheticScenes(clips_per_class=2), SyntheticScenes(clips_per_class=2)
    np.testing.assert_array_equal(a[5].wave, b[5].wave)
    assert not np.array_equal(a[5].wave, SyntheticScenes(clips_per_class=2, seed=1)[5].wave)
    assert not np.array_equal(a[5].wave, a[6].wave)


def test_labels_folds_and_event_boxes():
    ds = SyntheticScenes(clips_per_class=8, n_folds=4)
    assert len(ds) == 64 and len(ds.class_names) >= 8
    folds = np.array([ds.fold(i) for i in range(len(ds))])
    labels = np.array([ds.label(i) for i in range(len(ds))])
    for k in range(1, 5):  # stratified: every class twice in every fold
        assert np.bincount(labels[folds == k], minlength=8).tolist() == [2] * 8
    clip = ds[3]
    assert clip.label == 3 and clip.wave.dtype == np.float32 and len(clip.wave) == 4 * 16000
    assert np.isfinite(clip.wave).all() and np.abs(clip.wave).max() < 1
    class_events = [e for e in clip.events if e.kind == "class"]
    assert len(class_events) == 3 and all(e.name == CLASS_NAMES[3] for e in class_events)
    for e in clip.events:
        assert 0 <= e.onset < e.offset <= ds.clip_seconds and e.fmin <= e.fmax
    for e in class_events:
        assert e.offset - e.onset == pytest.approx(EVENT_SECONDS)


def test_pairs_are_time_reversals():
    for label in (1, 3, 5, 7):
        rng1, rng2 = np.random.default_rng(0), np.random.default_rng(0)
        np.testing.assert_allclose(_class_event(label, 600.0, 16000, rng1),
                                   _class_event(label - 1, 600.0, 16000, rng2)[::-1])


def test_hard_preset_is_longer_and_sparser():
    easy, hard = SyntheticScenes(clips_per_class=1), SyntheticScenes(clips_per_class=1, preset="hard")
    assert hard.clip_seconds > easy.clip_seconds and hard.events_per_clip < easy.events_per_clip
    assert hard.event_snr_db < easy.event_snr_db


@pytest.mark.slow
def test_bag_of_frames_baseline_is_near_chance_on_the_default_set():
    """The default difficulty makes the task about finding events: a bag-of-frames
    classifier (logistic regression on the clip-mean log-Gammatone spectrum) must stay at
    or below 50 % mean accuracy over the folds."""
    cfg = load_config()
    clips = load_clipset(cfg.data)
    feats = clip_mean_features(clips, cfg.features)
    accs = [bag_of_frames_fold(feats, clips, k) for k in sorted(clips.folds)]
    assert np.mean(accs) <= 0.50
    # ... while the same classifier does learn when classes differ by *which* bands are loud
    shifted = feats + np.eye(feats.shape[1])[clips.labels * 6] * 3.0
    assert np.mean([bag_of_frames_fold(shifted, clips, k) for k in sorted(clips.folds)]) > 0.9
