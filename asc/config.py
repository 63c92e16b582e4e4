"""Configuration schema, loading, merging and validation.

The schema below *is* the documentation of every key: defaults describe the embedded
synthetic data set with STAP-CRNN + BC learning, so ``asc cv`` with no arguments runs the
main experiment.  A YAML file (``--config``) is merged on top, then ``key=value``
overrides from the command line.  Unknown keys and bad values raise :class:`AscError`
with the offending key named.  The values of data.name, features.name, model.name,
model.pooling and augment.mix are the keys of the registries in asc/registry.py.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from asc.checkpoints import rename_config_keys
from asc.errors import AscError
from asc.registry import FRONTENDS, LAYOUTS, MIXERS, MODELS, POOLINGS


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
    num_workers: int = 0
    val_fraction: float = 0.1  # carved from each fold's training part, stratified
    n_folds: int = 5  # folds made for data sets without official ones (folder)
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
    # The default 1.0 was chosen on D's validation folds (README, "Method study").
    max_aux_weight: float = 1.0


@dataclass
class AugmentConfig:
    """Training-time augmentation, on the training device, in this order: random gain
    (waveform), mix (waveform; bc_spec mixes spectrograms), then on the standardised
    spectrogram circular roll and time/frequency masking."""

    mix: str = "bc"  # none | bc | bc_spec | mixup | any registered mixer
    gain: str = "a_weighting"  # a_weighting | rms   (bc only)
    mixup_alpha: float = 0.4  # Beta(alpha, alpha)  (mixup only)
    gain_db: float = 6.0  # random gain per example, uniform in ±gain_db dB (0: off)
    roll: bool = True  # circular roll of each example's valid frames by a random offset
    freq_masks: int = 2  # SpecAugment frequency stripes per example (set to the band mean)
    freq_mask_bins: int = 8  # widest frequency stripe, in bands
    time_masks: int = 2  # SpecAugment time stripes per example
    time_mask_seconds: float = 0.2  # widest time stripe, in seconds


@dataclass
class OptimConfig:
    lr: float = 3e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"  # cosine | none
    warmup_epochs: int = 1


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
        default_factory=lambda: {"max_epochs": 80, "accelerator": "auto", "devices": 1}
    )
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


# Values decided by a registry (asc/registry.py): their allowed values are its keys.
REGISTERED = {"data.name": LAYOUTS, "features.name": FRONTENDS, "model.name": MODELS,
              "model.pooling": POOLINGS, "augment.mix": MIXERS}

# The order in which validate() checks them (the first bad value is the one reported).
KEY_ORDER = ("data.name", "data.on_bad_file", "data.synthetic.preset", "features.name", "model.variant",
             "model.name", "model.pooling", "model.spatial_attention", "augment.mix")

# Fixed choices of the other keys.
CHOICES = {
    "data.on_bad_file": ("error", "skip"),
    "data.synthetic.preset": ("default", "hard"),
    "model.spatial_attention": ("summary", "track"),
    "augment.gain": ("a_weighting", "rms"),
    "optim.scheduler": ("cosine", "none"),
    "logger.mode": ("auto", "offline", "online", "disabled"),
    "eval.aggregate": ("mean_prob", "mean_logprob", "vote"),
    "logger.progress": ("auto", "bar", "epoch", "none"),
    "early_stopping.monitor": (None, "val/acc", "val/loss", "val/macro_f1"),
    "early_stopping.mode": ("auto", "min", "max"),
}

POSITIVE = (
    "data.sample_rate", "data.batch_size", "augment.freq_mask_bins", "augment.time_mask_seconds", "features.n_bins",
    "features.win_ms", "features.hop_ms", "model.rnn_hidden", "model.rnn_layers",
    "model.attention_dim", "optim.lr", "data.synthetic.clips_per_class",
)


def _trainer_keys() -> set[str]:
    from lightning import Trainer

    return set(inspect.signature(Trainer.__init__).parameters) - {"self"}


# Trainer arguments asc sets itself: a value from the config would clash with them.
TRAINER_RESERVED = {
    "logger": "asc sets the loggers itself (metrics.csv and W&B); use logger.mode=disabled to turn W&B off",
    "callbacks": "asc adds its own checkpoint and attention-picture callbacks",
    "plugins": "asc sets its own checkpoint writer",
    "default_root_dir": "asc writes each fold under <output_dir>/<experiment>/fold-<k>/",
}


def _fits(value, annotation) -> bool:
    """Whether a plain config value (None, bool, int, float, str, list, dict) fits a type
    annotation of lightning.Trainer; object types (a Callback, a Logger) never fit."""
    import typing
    from collections.abc import Iterable

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if origin is typing.Union:
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, Iterable):
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value) if args else isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    return False


def validate_trainer(trainer: dict) -> None:
    """Check ``trainer.*`` values against lightning.Trainer's signature and asc's needs,
    before anything is written (a bad value must not leave a config.yaml behind)."""
    import typing

    from lightning import Trainer

    hints = typing.get_type_hints(Trainer.__init__)
    for key, value in trainer.items():
        if key in TRAINER_RESERVED:
            raise AscError(f"trainer.{key} cannot be set: {TRAINER_RESERVED[key]}")
        if key in hints and not _fits(value, hints[key]):
            wanted = str(hints[key]).replace("typing.", "").replace("NoneType", "None")
            raise AscError(f"trainer.{key}={value!r} does not fit lightning.Trainer's {key}: {wanted}")
    if trainer.get("enable_checkpointing") is False:
        raise AscError("trainer.enable_checkpointing=false cannot work: asc needs last.ckpt to resume a fold and "
                       "best.ckpt to test it; leave the key out")
    if trainer.get("fast_dev_run"):
        raise AscError("trainer.fast_dev_run writes no checkpoints, which asc tests from; for a quick check use "
                       "trainer.max_epochs=1 trainer.limit_train_batches=2")
    for key, low in (("max_epochs", 1), ("min_epochs", 0), ("check_val_every_n_epoch", 1)):
        if trainer.get(key) is not None and trainer[key] < low:
            raise AscError(f"trainer.{key}={trainer[key]} must be at least {low}")


def model_variants() -> dict[Optional[str], tuple[str, Optional[str]]]:
    """``model.variant`` shorthand -> (model.name, model.pooling or None: unchanged): each
    pooling names the first model registered with ``pooled=True`` (crnn) with that pooling,
    each other model names itself."""
    pooled = [m for m in MODELS.keys() if MODELS.meta(m).get("pooled")]
    variants: dict[Optional[str], tuple[str, Optional[str]]] = {}
    if pooled:
        variants.update({p: (pooled[0], p) for p in POOLINGS.keys()})
    variants.update({m: (m, None) for m in MODELS.keys() if m not in pooled})
    return variants


def apply_variant(cfg: DictConfig) -> None:
    """Rewrite model.name (and model.pooling) from the shorthand model.variant, if set."""
    if cfg.model.variant is not None:
        cfg.model.name, pooling = model_variants()[cfg.model.variant]
        cfg.model.pooling = pooling or cfg.model.pooling


def choices() -> dict[str, tuple]:
    """Every key with a closed set of values -> its allowed values (registries included)."""
    every = {"model.variant": (None, *model_variants()), **{k: r.keys() for k, r in REGISTERED.items()}, **CHOICES}
    return {k: every[k] for k in sorted(every, key=lambda k: KEY_ORDER.index(k) if k in KEY_ORDER else len(KEY_ORDER))}


def validate(cfg: DictConfig) -> DictConfig:
    """Check values the type system cannot; raise AscError naming the key."""
    for key, allowed in choices().items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise AscError(f"{key}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")
    apply_variant(cfg)
    for key in POSITIVE:
        value = OmegaConf.select(cfg, key)
        if value is None or value <= 0:
            raise AscError(f"{key}={value!r} must be a positive number")
    if cfg.data.segment_seconds is not None and cfg.data.segment_seconds <= 0:
        raise AscError(f"data.segment_seconds={cfg.data.segment_seconds} must be positive, or null for whole clips")
    if cfg.data.segment_seconds is None and cfg.model.spatial_attention == "track" \
            and MODELS.meta(cfg.model.name).get("pooled") and POOLINGS.meta(cfg.model.pooling).get("spatial"):
        raise AscError("model.spatial_attention=track needs a fixed number of frames, but data.segment_seconds=null "
                       "feeds clips of different lengths; use model.spatial_attention=summary or set "
                       "data.segment_seconds")
    for key in ("augment.gain_db", "augment.freq_masks", "augment.time_masks", "model.max_aux_weight"):
        if OmegaConf.select(cfg, key) < 0:
            raise AscError(f"{key}={OmegaConf.select(cfg, key)} must be >= 0 (0: off)")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise AscError(f"data.val_fraction={cfg.data.val_fraction} must be in [0, 1)")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise AscError(f"model.dropout={cfg.model.dropout} must be in [0, 1)")
    n_blocks = len(cfg.model.conv_channels)
    if n_blocks == 0 or len(cfg.model.freq_pool) != n_blocks or len(cfg.model.time_pool) != n_blocks:
        raise AscError(
            "model.conv_channels, model.freq_pool and model.time_pool must be non-empty lists "
            f"of the same length (got {n_blocks}, {len(cfg.model.freq_pool)}, {len(cfg.model.time_pool)})"
        )
    if LAYOUTS.meta(cfg.data.name).get("on_disk") and not cfg.data.root:
        raise AscError(f"data.name={cfg.data.name} needs data.root=<folder of the unpacked data set>")
    if not 2 <= cfg.data.synthetic.n_classes <= 8:
        raise AscError(f"data.synthetic.n_classes={cfg.data.synthetic.n_classes} must be in 2..8")
    unknown = set(cfg.trainer.keys()) - _trainer_keys()
    if unknown:
        raise AscError(
            f"unknown trainer key(s): {', '.join(sorted('trainer.' + k for k in unknown))}; "
            "trainer.* keys are passed to lightning.Trainer (see its documentation)"
        )
    validate_trainer(OmegaConf.to_container(cfg.trainer, resolve=True))
    if cfg.early_stopping.monitor is not None:
        if cfg.early_stopping.patience < 1:
            raise AscError(f"early_stopping.patience={cfg.early_stopping.patience} must be at least 1")
        if cfg.data.val_fraction == 0:
            raise AscError(f"early_stopping.monitor={cfg.early_stopping.monitor} needs a validation split "
                           "(data.val_fraction > 0): test metrics never steer training")
    folds = cfg.cv.folds
    if folds is not None and (not isinstance(folds, (list, ListConfig)) or len(folds) == 0):
        raise AscError(f"cv.folds={folds!r} must be a non-empty list like [1,2] or null for all folds")
    return cfg


def _parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise AscError(f"override {item!r} is not of the form key=value (e.g. trainer.max_epochs=5)")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as e:
        raise AscError(f"cannot parse overrides {overrides}: {e}") from None


def _friendly(e: OmegaConfBaseException, source: str) -> AscError:
    key = getattr(e, "full_key", None) or ""
    msg = (getattr(e, "msg", None) or str(e)).splitlines()[0]  # OmegaConf appends full_key/object_type lines
    if "Key '" in msg and "not in" in msg:
        return AscError(f"unknown config key {key!r} in {source}; see asc/config.py for the valid keys")
    return AscError(f"bad value for {key!r} in {source}: {msg}")


def _single_fold_as_list(layer: DictConfig) -> None:
    """``cv.folds=1`` means ``cv.folds=[1]`` (OmegaConf would refuse an int for a list)."""
    folds = OmegaConf.select(layer, "cv.folds", default=None)
    if isinstance(folds, int) and not isinstance(folds, bool):
        layer.cv.folds = [folds]


def load_config(config_file: Optional[str | Path] = None, overrides: Optional[list[str]] = None) -> DictConfig:
    """Schema defaults <- YAML file <- ``key=value`` overrides, then validation."""
    cfg = OmegaConf.structured(Config)
    layers: list[tuple[str, DictConfig]] = []
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise AscError(f"config file {str(path)!r} not found; pass a YAML file such as experiments/demo.yaml")
        try:
            layers.append((str(path), OmegaConf.load(path)))
        except Exception as e:  # yaml errors come in several types
            raise AscError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    if overrides:
        layers.append(("the command line", _parse_overrides(overrides)))
    for source, layer in layers:
        layer = OmegaConf.create(rename_config_keys(OmegaConf.to_container(layer), source))
        _single_fold_as_list(layer)
        try:
            # trainer is an open dict: replace it key by key rather than type-checking it
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as e:
            raise _friendly(e, source) from None
    return validate(cfg)


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
