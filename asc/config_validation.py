"""Checks of a merged config that the type system cannot make: allowed values (fixed or from
the registries), positive sizes, consistent model lists, trainer arguments.  Each problem
raises :class:`AscError` naming the key."""

from __future__ import annotations

import inspect
from typing import Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from asc.compilation import CUDA_GRAPH_MODES
from asc.compilation import MODES as COMPILE_MODES
from asc.errors import AscError, did_you_mean
from asc.registry import FRONTENDS, LAYOUTS, MIXERS, MODELS, POOLINGS

# Values decided by a registry (asc/registry.py): their allowed values are its keys.
REGISTERED = {"data.name": LAYOUTS, "features.name": FRONTENDS, "model.name": MODELS,
              "model.pooling": POOLINGS, "augment.mix": MIXERS}

# The order in which validate() checks them (the first bad value is the one reported).
KEY_ORDER = ("data.name", "data.on_bad_file", "data.synthetic.preset", "features.name", "model.variant",
             "model.name", "model.pooling", "model.spatial_attention", "augment.mix")

# Fixed choices of the other keys.
CHOICES = {
    "data.on_bad_file": ("error", "skip"),
    "data.on_device": ("auto", "on", "off"),
    "data.synthetic.preset": ("default", "hard"),
    "model.spatial_attention": ("summary", "track"),
    "model.compile": COMPILE_MODES,
    "augment.gain": ("a_weighting", "rms"),
    "optim.scheduler": ("cosine", "none"),
    "logger.mode": ("auto", "offline", "online", "disabled"),
    "eval.aggregate": ("mean_prob", "mean_logprob", "vote"),
    "logger.progress": ("auto", "bar", "epoch", "none"),
    "early_stopping.monitor": (None, "val/acc", "val/loss", "val/macro_f1"),
    "early_stopping.mode": ("auto", "min", "max"),
    "cv.checkpoint": ("auto", "last", "best"),
}

POSITIVE = (
    "data.sample_rate", "data.batch_size", "data.on_device_max_fraction", "cv.parallel_folds",
    "augment.freq_mask_bins", "augment.time_mask_seconds", "features.n_bins",
    "features.win_ms", "features.hop_ms", "model.rnn_hidden", "model.rnn_layers",
    "model.attention_dim", "optim.lr", "data.synthetic.clips_per_class",
)


def trainer_keys() -> set[str]:
    from lightning import Trainer

    return set(inspect.signature(Trainer.__init__).parameters) - {"self"}


# Trainer arguments asc sets itself: a value from the config would clash with them.
TRAINER_RESERVED = {
    "logger": "asc sets the loggers itself (metrics.csv and W&B); use logger.mode=disabled to turn W&B off",
    "callbacks": "asc adds its own checkpoint and attention-picture callbacks",
    "plugins": "asc sets its own checkpoint writer",
    "default_root_dir": "asc writes each fold under <output_dir>/<experiment>/fold-<k>/",
    "use_distributed_sampler": "the DataModule shards its own loaders across processes (seeded crops, every "
                               "evaluation clip once)",
    "overfit_batches": "validation needs whole clips cut into segments, not training crops; for a quick check use "
                       "trainer.limit_train_batches=2",
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
                       "to test it, and best.ckpt for the validation choice; leave the key out")
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
    """Check values the type system cannot; raise AscError naming the key (the first
    problem found, in the order of the checks below).  Applies ``model.variant``."""
    _check_values(cfg)
    _check_shapes(cfg)
    _check_training(cfg)
    return cfg


def _check_values(cfg: DictConfig) -> None:
    """Allowed values, positive sizes and ranges of single keys."""
    # YAML reads a bare on/off as a boolean, which a string field stores as "True"/"False"
    cfg.data.on_device = {"True": "on", "False": "off"}.get(cfg.data.on_device, cfg.data.on_device)
    for key, allowed in choices().items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise AscError(f"{key}={value!r} is not allowed; choose one of: "
                           f"{', '.join('null' if a is None else str(a) for a in allowed)}")
    apply_variant(cfg)
    for key in POSITIVE:
        value = OmegaConf.select(cfg, key)
        if value is None or value <= 0:
            raise AscError(f"{key}={value!r} must be a positive number")
    if cfg.optim.ema_epochs is not None and not 0 < cfg.optim.ema_epochs < float("inf"):  # nan too
        raise AscError(f"optim.ema_epochs={cfg.optim.ema_epochs} must be positive, or null for no weight average")
    _check_segments(cfg)
    for key in ("augment.gain_db", "augment.freq_masks", "augment.time_masks", "model.max_aux_weight"):
        if OmegaConf.select(cfg, key) < 0:
            raise AscError(f"{key}={OmegaConf.select(cfg, key)} must be >= 0 (0: off)")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise AscError(f"data.val_fraction={cfg.data.val_fraction} must be in [0, 1)")
    if cfg.data.on_device_max_fraction > 1.0:
        raise AscError(f"data.on_device_max_fraction={cfg.data.on_device_max_fraction} must be in (0, 1]: a share of "
                       "the free device memory")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise AscError(f"model.dropout={cfg.model.dropout} must be in [0, 1)")


def needs_fixed_frames(model_cfg) -> bool:
    """Whether the network is built for one number of frames (``track`` spatial attention)."""
    return model_cfg.spatial_attention == "track" and bool(MODELS.meta(model_cfg.name).get("pooled")) \
        and bool(POOLINGS.meta(model_cfg.pooling).get("spatial"))


def _check_segments(cfg: DictConfig) -> None:
    """The network's input length and the evaluation windows' hop."""
    segment, hop = cfg.data.segment_seconds, cfg.data.eval_hop_seconds
    if segment is not None and segment <= 0:
        raise AscError(f"data.segment_seconds={segment} must be positive, or null for whole clips")
    # a hop longer than the window would leave parts of a clip unevaluated
    if hop is not None and not 0 < hop <= (segment if segment is not None else float("inf")):
        raise AscError(f"data.eval_hop_seconds={hop} must be positive and at most data.segment_seconds={segment} "
                       "(windows must cover the clip), or null for half a segment")
    if segment is None and needs_fixed_frames(cfg.model):
        raise AscError("model.spatial_attention=track needs a fixed number of frames, but data.segment_seconds=null "
                       "feeds clips of different lengths; use model.spatial_attention=summary or set "
                       "data.segment_seconds")


def _check_shapes(cfg: DictConfig) -> None:
    """Keys that must agree: the network's per-block lists, a data set and its folder."""
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


def _check_training(cfg: DictConfig) -> None:
    """Trainer arguments, early stopping and the folds to run."""
    accepted = trainer_keys()
    unknown = sorted(set(cfg.trainer.keys()) - accepted)
    if unknown:
        known = ["trainer." + k for k in accepted]
        named = ", ".join(f"trainer.{k}{did_you_mean('trainer.' + k, known)}" for k in unknown)
        raise AscError(
            f"unknown trainer key(s): {named}; "
            "trainer.* keys are passed to lightning.Trainer (see its documentation)"
        )
    validate_trainer(OmegaConf.to_container(cfg.trainer, resolve=True))
    if cfg.early_stopping.monitor is not None:
        if cfg.early_stopping.patience < 1:
            raise AscError(f"early_stopping.patience={cfg.early_stopping.patience} must be at least 1")
        if cfg.data.val_fraction == 0:
            raise AscError(f"early_stopping.monitor={cfg.early_stopping.monitor} needs a validation split "
                           "(data.val_fraction > 0): test metrics never steer training")
        if cfg.cv.checkpoint == "last":
            raise AscError(f"early_stopping.monitor={cfg.early_stopping.monitor} stops training "
                           f"{cfg.early_stopping.patience} epochs past its best; test that epoch with "
                           "cv.checkpoint=best (cv.checkpoint=last would test where training stopped)")
    if cfg.model.compile in CUDA_GRAPH_MODES and int(cfg.trainer.get("accumulate_grad_batches", 1) or 1) > 1:
        # CUDA graphs keep the gradients in their own memory, which the next step's replay reuses
        raise AscError(f"model.compile={cfg.model.compile} replays CUDA graphs, which cannot accumulate gradients "
                       f"(trainer.accumulate_grad_batches={cfg.trainer.accumulate_grad_batches}); use "
                       "model.compile=default or max-autotune-no-cudagraphs, or accumulate_grad_batches=1")
    if cfg.model.get("compile_eval"):
        if not cfg.model.compile:
            raise AscError("model.compile_eval=true compiles evaluation in model.compile's mode, which is null; "
                           "set model.compile too (e.g. model.compile=reduce-overhead on a GPU)")
        if cfg.trainer.get("inference_mode") is True:
            raise AscError("model.compile_eval=true evaluates under no_grad: graphs compiled in inference mode can "
                           "break the compiled training graphs; drop trainer.inference_mode=true")
        if cfg.data.segment_seconds is None:
            raise AscError("model.compile_eval=true needs evaluation windows of one length, but "
                           "data.segment_seconds is null (whole clips: every clip length would compile again); "
                           "set data.segment_seconds or model.compile_eval=false")
    folds = cfg.cv.folds
    if folds is not None and (not isinstance(folds, (list, ListConfig)) or len(folds) == 0):
        raise AscError(f"cv.folds={folds!r} must be a non-empty list like [1,2] or null for all folds")
