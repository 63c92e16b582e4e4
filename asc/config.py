"""Configuration: loading and merging (defaults <- YAML file <- ``key=value`` overrides).

The schema, with every key's default and documentation, is in :mod:`asc.config_schema`;
the checks of a merged config in :mod:`asc.config_validation`.  Unknown keys and bad values
raise :class:`AscError` with the offending key named; old key names (RENAMED_KEYS in
:mod:`asc.checkpoints`) are read with a one-line notice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from asc.checkpoints import rename_config_keys
from asc.config_schema import Config
from asc.config_validation import validate
from asc.errors import AscError, did_you_mean

__all__ = ["Config", "load_config", "to_dict", "to_yaml", "validate"]


def _parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise AscError(f"override {item!r} is not of the form key=value (e.g. trainer.max_epochs=5)")
    # a null value written as Python's None: `wandb agent` formats a sweep's null values that way
    # (f"{param}={value}"), and so would any script building overrides from Python values
    overrides = [f"{item.partition('=')[0]}=null" if item.partition("=")[2] == "None" else item for item in overrides]
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as e:
        raise AscError(f"cannot parse overrides {overrides}: {e}") from None


def _friendly(e: OmegaConfBaseException, source: str) -> AscError:
    key = getattr(e, "full_key", None) or ""
    msg = (getattr(e, "msg", None) or str(e)).splitlines()[0]  # OmegaConf appends full_key/object_type lines
    if "Key '" in msg and "not in" in msg:
        from asc.config_show import key_docs
        from asc.config_validation import trainer_keys

        # any key or section but the sections the key is already in ('augment.bc': not 'augment')
        known = [k for k in key_docs() if not key.startswith(k + ".")]
        hint = did_you_mean(key, [*known, *("trainer." + k for k in trainer_keys())]) if key else ""
        return AscError(f"unknown config key {key!r} in {source}{hint}; `asc config show` lists every key")
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
    """The config as a plain dict, in this version's key names: a config.yaml written before
    a key was renamed (an experiment being resumed) compares equal to its loaded form."""
    return rename_config_keys(OmegaConf.to_container(cfg, resolve=True), "config.yaml", notice=None)
