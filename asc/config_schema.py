"""The configuration schema: one dataclass per section, the one source of truth for every key.

Defaults describe the embedded synthetic data set with STAP-CRNN + BC learning, so
``asc cv`` with no arguments runs the main experiment.  The comment beside (or the comment
lines just above) each field is its documentation, shown by ``asc config show``.  The
values of data.name, features.name, model.name, model.pooling and augment.mix are the keys
of the registries in asc/registry.py (checked in :mod:`asc.config_validation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class ExperimentConfig:
    name: str = "default"  # runs land in <output_dir>/<name>/; also the W&B group
    tags: List[str] = field(default_factory=list)  # W&B tags
    # Set by a sweep file's command (experiment.sweep=<sweep name>): the run belongs to that
    # sweep; under `wandb agent` experiment.name is then <sweep>/<parameters>-<hash>, as with
    # `asc sweep --local`, and the W&B runs are tagged sweep:<name>.
    sweep: Optional[str] = None


@dataclass
class SyntheticConfig:
    """Embedded synthetic scenes (asc.data.synthetic)."""

    preset: str = "default"  # default | hard (longer clips, fewer and quieter events)
    n_classes: int = 8  # 2..8
    clips_per_class: int = 48
    n_folds: int = 4
    seed: int = 0  # data seed, independent of the training seed
    clip_seconds: Optional[float] = None  # None: preset's value
    events_per_clip: Optional[int] = None  # None: preset's value
    event_snr_db: Optional[float] = None  # event level over background; None: preset


@dataclass
class DataConfig:
    name: str = "synthetic"  # synthetic | litis | dcase | esc50 | folder | any registered layout
    root: Optional[str] = None  # data set folder (file-based data sets only)
    sample_rate: int = 16000  # Hz; audio is resampled to this on load
    # Network input: training crops and evaluation windows of at most this length; a shorter
    # clip is fed at its own length (padding is masked out).  null: every clip whole (bag
    # training, for labels carried by a few short events).
    segment_seconds: Optional[float] = 2.0
    eval_hop_seconds: Optional[float] = None  # hop between eval windows; None: segment/2
    batch_size: int = 32  # segments per training step, clips per eval step, per device
    eval_batch_size: Optional[int] = None  # clips per eval step; None: batch_size
    num_workers: int = 0  # DataLoader worker processes reading audio (unused when the audio is on the device)
    # The fold's decoded audio held on the training device (float16, about 2 bytes per sample:
    # LITIS at 22.05 kHz is 4 GB), training crops and evaluation windows cut there by index,
    # no worker processes on the hot path.  auto: on a GPU when the audio fits in
    # on_device_max_fraction of its free memory; on: on any device (CPU included); off: read
    # by the DataLoader.  Crops and BC partners come from the same seeded generators either way.
    on_device: str = "auto"  # auto | on | off
    on_device_max_fraction: float = 0.5  # of the device's free memory, for auto
    val_fraction: float = 0.1  # carved from each fold's training part, stratified
    # folds made for data sets without official ones (the folder layout); the synthetic set
    # has its own, data.synthetic.n_folds.  Formerly data.n_folds (still read, with a notice).
    folder_folds: int = 5
    fold_seed: int = 0  # seed of those folds and of the validation carve-out
    on_bad_file: str = "error"  # error | skip
    cache_dir: Optional[str] = None  # decoded-audio cache; None: $XDG_CACHE_HOME/asc (~/.cache/asc)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class FeaturesConfig:
    name: str = "gammatone"  # gammatone | mel | stft | cqt | any registered front-end
    n_bins: int = 64  # frequency bands
    win_ms: float = 40.0  # analysis window (640 samples at 16 kHz)
    hop_ms: float = 20.0  # frame hop (320 samples at 16 kHz)
    fmin: float = 50.0  # Hz; set explicitly (nnAudio's Gammatone default is 0 Hz)
    fmax: Optional[float] = None  # Hz; None: sample_rate / 2
    log_eps: float = 1e-6  # log(x + eps) compression floor, power units
    # subtract each row's per-band mean log energy over its valid frames before the band
    # standardiser (a row: a training crop, an evaluation segment, or the whole clip when
    # data.segment_seconds is null): removes the level and the steady background colour,
    # so that short events stand out (sparse events in long clips; off for isolated sounds)
    subtract_clip_mean: bool = False


@dataclass
class ModelConfig:
    # Shorthand for sweeps: stap | temporal | spatial | mean | max (CRNN with that pooling)
    # or cnn (any registered pooling or model); when set it decides model.name and model.pooling.
    variant: Optional[str] = None
    name: str = "crnn"  # crnn | cnn
    pooling: str = "stap"  # stap | temporal | spatial | mean | max   (crnn only)
    spatial_attention: str = "summary"  # summary (any T) | track (fixed T)
    conv_channels: List[int] = field(default_factory=lambda: [16, 32, 64])
    freq_pool: List[int] = field(default_factory=lambda: [4, 4, 4])  # per conv block
    time_pool: List[int] = field(default_factory=lambda: [2, 1, 1])  # per conv block
    rnn_hidden: int = 64  # per direction; D = 2 * rnn_hidden
    rnn_layers: int = 1
    attention_dim: int = 64  # hidden size of the attention scorers
    dropout: float = 0.3
    # Beyond the paper (crnn only): weight of an auxiliary loss on a second classifier fed
    # by max pooling over time of the same recurrent output.  Max pooling routes gradient
    # to the frames where each feature peaks, so the features learn to fire on short
    # events, which attention pooling alone (it starts as a plain average) does not find
    # in long clips.  0: off (the paper's network).  Training only; inference unchanged.
    # The default 1.0 was chosen on D's validation folds (docs/method-study.md, 1; re-examined in 2h).
    max_aux_weight: float = 1.0
    # torch.compile of the training step's network and front-end, in this mode: null (off) |
    # default | reduce-overhead (CUDA graphs: the fastest on a GPU, where launching ~350
    # kernels per step sets the pace) | max-autotune | max-autotune-no-cudagraphs.
    # Checkpoints and inference use the plain network (asc/compilation.py).
    compile: Optional[str] = None
    # Validation and test windows through the compiled network too (model.compile's mode),
    # in forward passes padded to 4 x data.batch_size windows: one compiled shape for all.
    # Needs model.compile and fixed-length windows (data.segment_seconds set).
    compile_eval: bool = False


@dataclass
class AugmentConfig:
    """Training-time augmentation, on the training device, in this order: random gain
    (waveform), mix (waveform; bc_spec mixes spectrograms), then on the standardised
    spectrogram circular roll and time/frequency masking.  Only BC is on by default: on D's
    validation folds (30 % of each training part, 2 seeds) the gain, roll and stripes
    lowered STAP-CRNN + BC from 96.55 to 94.91 % and the mean-pooled CRNN from 98.55 to
    96.73 % (docs/method-study.md, 1b); experiments/hard.yaml sets its own stages (roll
    and frequency stripes on)."""

    mix: str = "bc"  # none | bc | bc_spec | mixup | any registered mixer
    gain: str = "a_weighting"  # a_weighting | rms   (bc only)
    mixup_alpha: float = 0.4  # Beta(alpha, alpha)  (mixup only)
    gain_db: float = 0.0  # random gain per example, uniform in ±gain_db dB (0: off)
    roll: bool = False  # circular roll of each example's valid frames by a random offset
    freq_masks: int = 0  # SpecAugment frequency stripes per example (set to the band mean)
    freq_mask_bins: int = 8  # widest frequency stripe, in bands
    time_masks: int = 0  # SpecAugment time stripes per example
    time_mask_seconds: float = 0.2  # widest time stripe, in seconds


@dataclass
class OptimConfig:
    lr: float = 3e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"  # cosine | none
    warmup_epochs: int = 1
    # Exponential moving average of the weights, evaluated, selected and saved for inference
    # in place of the trained weights: its time constant in epochs (null: off)
    ema_epochs: Optional[float] = None


@dataclass
class LoggerConfig:
    mode: str = "auto"  # auto (online if logged in, else offline) | offline | online | disabled
    project: str = "asc"
    entity: Optional[str] = None
    attention_every_n_epochs: int = 0  # 0: attention pictures at test time only
    attention_clips_per_class: int = 1
    log_model: bool = False  # checkpoints as W&B artifacts (online only)
    # auto: a progress bar on a terminal, one line per epoch otherwise (log files, SLURM) | bar | epoch | none
    progress: str = "auto"


@dataclass
class EvalConfig:
    aggregate: str = "mean_prob"  # mean_prob | mean_logprob | vote


@dataclass
class CVConfig:
    folds: Optional[List[int]] = None  # None: every fold of the data set
    # Also score the bag-of-frames baseline per fold (logistic regression, C = 1, on the
    # clip-mean standardised log spectrum; its definition is frozen, asc/baselines.py).
    bag_of_frames: bool = True
    # false: train and select on validation only, never score the test folds (for tuning a
    # recipe that is frozen before its test numbers are seen)
    test: bool = True
    # The checkpoint the test scores: last (the end of training) | best (the epoch of highest
    # val/acc, ties broken by the lower val/loss) | auto (last; best when early stopping is
    # on).  last was chosen on D by a nested check inside outer training parts
    # (benchmarks/nested_checkpoint.py): +1.28 points over the validation choice on 16 inner
    # folds, 90 % interval [-1.31, +3.87] (corrected for the inner folds' overlap); with 11-22
    # validation clips per fold the best epoch is partly a noise peak (docs/method-study.md,
    # 2g).  results.json records both epochs.
    checkpoint: str = "auto"
    # folds trained at once, each in its own process (its own W&B run and fold-<k> folder,
    # resumable as usual; log in fold-<k>/log.txt); 1: one after the other in this process.
    # On a CPU each process uses 1 thread (OMP_NUM_THREADS=1), which changes results slightly
    # against a multi-threaded sequential run (OMP_NUM_THREADS=1 asc cv ... reproduces them).
    parallel_folds: int = 1


@dataclass
class EarlyStoppingConfig:
    monitor: Optional[str] = None  # null: off; a validation metric: val/acc | val/loss | val/macro_f1
    mode: str = "auto"  # auto (val/loss: min, others: max) | min | max
    patience: int = 5  # validation epochs without improvement before a fold stops
    min_delta: float = 0.0  # smallest change that counts as an improvement


@dataclass
class Config:
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    output_dir: str = "runs"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # Passed to lightning.Trainer as keyword arguments (keys checked against its signature).
    trainer: Dict[str, Any] = field(
        # 320 epochs: chosen on D's validation folds over 80 and 160 (STAP-CRNN + BC 96.55 →
        # 98.91 → 99.45 %; docs/method-study.md, 1c, 1d)
        default_factory=lambda: {"max_epochs": 320, "accelerator": "auto", "devices": 1}
    )
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
