"""Checkpoint schema versions and the migrations that upgrade older checkpoints on load.

Every checkpoint the package writes carries ``checkpoint["asc_schema_version"]``
(:data:`SCHEMA_VERSION`), set by :func:`stamp` from the LightningModule's
``on_save_checkpoint``.  Checkpoints written before versions existed (main up to b6efd54)
have no such key and count as version 0.

On load, :func:`migrate` upgrades a checkpoint dict step by step to the current version
(:data:`MIGRATIONS`) and renames config keys that have moved (:data:`RENAMED_KEYS`) in the
config stored under ``hyper_parameters["cfg"]``.  The same table makes old key names work
as aliases in YAML files and on the command line (:func:`rename_config_keys`, with a
one-line notice).

To rename a config key: add ``"old.dotted.key": "new.dotted.key"`` to
:data:`RENAMED_KEYS`.  To change what a checkpoint holds (new or moved state): bump
:data:`SCHEMA_VERSION` and add a function ``MIGRATIONS[old_version]`` that turns a
checkpoint of ``old_version`` into one of ``old_version + 1``; the fixture checkpoint in
tests/fixtures/ckpt_b6efd54/ must keep loading and predicting as before.

Finding a checkpoint for inference is here too: :func:`resolve_checkpoint` (a path, or the
W&B run id of a fold) and :func:`checkpoint_file_problem` (is the file one at all).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from asc.errors import AscError

SCHEMA_VERSION = 4
# Where Lightning stores the DataModule's state (the band statistics) in a checkpoint: the
# class name of asc.data.datamodule.SceneDataModule.  Keep that class name stable.
DATAMODULE_KEY = "SceneDataModule"
VERSION_KEY = "asc_schema_version"

# Config keys renamed since checkpoints were first written: old dotted key -> new dotted key.
# Old names keep working in checkpoints, YAML files and command-line overrides.
RENAMED_KEYS: dict[str, str] = {
    "data.n_folds": "data.folder_folds",  # folds of the folder layout, not data.synthetic.n_folds
}


def _v0_to_v1(checkpoint: dict) -> dict:
    """Unversioned (main up to b6efd54) -> 1: same contents, the version key is new."""
    return checkpoint


# Keys added in schema 2 (frame masks, augmentation stages, auxiliary max-pooling loss) and
# the value that reproduces what a checkpoint of schema 1 or earlier was trained and built
# with: the new defaults (e.g. max_aux_weight=1.0, which adds a classifier) must not apply.
ADDED_IN_V2 = {"model.max_aux_weight": 0.0, "augment.gain_db": 0.0, "augment.roll": False,
               "augment.freq_masks": 0, "augment.time_masks": 0}


def _v1_to_v2(checkpoint: dict) -> dict:
    """1 -> 2: the stored config gets the keys added in 2, at their pre-2 behaviour."""
    hp = checkpoint.get("hyper_parameters")
    if isinstance(hp, dict) and isinstance(hp.get("cfg"), dict):
        for key, value in ADDED_IN_V2.items():
            path = key.split(".")
            if not _has(hp["cfg"], path):
                _put(hp["cfg"], path, value)
    return checkpoint


def _v2_to_v3(checkpoint: dict) -> dict:
    """2 -> 3: the feature pipeline moved from the LightningModule to the DataModule.  The
    band statistics (``norm.*`` of the module's state_dict) move to the DataModule's state
    (``checkpoint[DATAMODULE_KEY]["band_stats"]``); the filterbank (``frontend.*``) is
    dropped: it is rebuilt from the stored config, identically."""
    state = checkpoint.get("state_dict")
    if isinstance(state, dict):
        stats = {k[len("norm."):]: state.pop(k) for k in [k for k in state if k.startswith("norm.")]}
        for k in [k for k in state if k.startswith("frontend.")]:
            del state[k]
        if stats:
            checkpoint.setdefault(DATAMODULE_KEY, {})["band_stats"] = stats
    return checkpoint


def _v3_to_v4(checkpoint: dict) -> dict:
    """3 -> 4: a checkpoint may also hold a weight average of the network (``ema.module.*``,
    with ``optim.ema_epochs``), which inference then uses; a version-3 checkpoint has none
    and its config's default (``ema_epochs: null``) says so: nothing to change.  (An asc
    of version 3 would refuse a version-4 checkpoint instead of misreading its weights.)"""
    return checkpoint


# MIGRATIONS[v] upgrades a checkpoint of schema version v to v + 1.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _v0_to_v1, 1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}


def stamp(checkpoint: dict) -> None:
    """Mark a checkpoint being saved with the current schema version (call from the
    LightningModule's ``on_save_checkpoint``)."""
    checkpoint[VERSION_KEY] = SCHEMA_VERSION


def schema_version(checkpoint: Mapping) -> int:
    """The schema version of a loaded checkpoint dict (0: written before versions existed)."""
    version = checkpoint.get(VERSION_KEY, 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise AscError(f"checkpoint has an invalid {VERSION_KEY}: {version!r}")
    return version


def migrate(checkpoint: dict, renames: Optional[Mapping[str, str]] = None) -> dict:
    """Upgrade a loaded checkpoint dict to :data:`SCHEMA_VERSION` (in place; also returned).

    Applies :data:`MIGRATIONS` from the checkpoint's version on, then renames moved config
    keys in ``hyper_parameters["cfg"]`` (``renames``: default :data:`RENAMED_KEYS`).
    Raises :class:`AscError` for a checkpoint written by a newer version of asc.
    """
    version = schema_version(checkpoint)
    if version > SCHEMA_VERSION:
        raise AscError(f"checkpoint schema version {version} is newer than this asc reads ({SCHEMA_VERSION}); "
                       "upgrade asc to load it")
    while version < SCHEMA_VERSION:
        checkpoint = MIGRATIONS[version](checkpoint)
        version += 1
        checkpoint[VERSION_KEY] = version
    hp = checkpoint.get("hyper_parameters")
    if isinstance(hp, dict) and isinstance(hp.get("cfg"), dict):
        hp["cfg"] = rename_config_keys(hp["cfg"], "the checkpoint", renames, notice=None)
    return checkpoint


def _pop(tree: dict, path: list[str]) -> tuple[bool, Any]:
    node = tree
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            return False, None
    if isinstance(node, dict) and path[-1] in node:
        return True, node.pop(path[-1])
    return False, None


def _has(tree: Mapping, path: list[str]) -> bool:
    node: Any = tree
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _put(tree: dict, path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _print_notice(line: str) -> None:
    print(f"notice: {line}", file=sys.stderr)


def rename_config_keys(cfg: dict, source: str, renames: Optional[Mapping[str, str]] = None,
                       notice: Optional[Callable[[str], None]] = _print_notice) -> dict:
    """Move every old key of ``renames`` (default :data:`RENAMED_KEYS`) found in the nested
    dict ``cfg`` to its new place (in place; also returned).  ``source`` names where the
    dict came from (a YAML file, "the command line") for the one-line ``notice`` printed per
    renamed key; ``notice=None`` renames silently.  A dict holding both names is an error.

    For a YAML or command-line layer (an OmegaConf DictConfig) before merging::

        layer = OmegaConf.create(rename_config_keys(OmegaConf.to_container(layer), source))
    """
    table = RENAMED_KEYS if renames is None else renames
    for old, new in table.items():
        old_path, new_path = old.split("."), new.split(".")
        if not _has(cfg, old_path):
            continue
        if _has(cfg, new_path):
            raise AscError(f"{source} sets both {old!r} and its new name {new!r}; keep only {new!r}")
        _, value = _pop(cfg, old_path)
        _put(cfg, new_path, value)
        if notice is not None:
            notice(f"config key {old!r} in {source} is now called {new!r}; the old name still works for now")
    return cfg


def checkpoint_file_problem(path: Path) -> str | None:
    """Why a file cannot be a PyTorch checkpoint, judged by its first bytes (a zip archive,
    or an old-style pickle), or None when it may be one."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "its first bytes are neither a zip archive nor a pickle"
    first = text.strip().splitlines()[0][:60] if text.strip() else ""
    return f"it is a text file (starting {first!r})"


def resolve_checkpoint(ref: str | Path, search_root: str | Path = "runs") -> Path:
    """A checkpoint path, or a W&B run id of a fold (the checkpoint its test scored, as its
    result.json names it (``cv.checkpoint``), is found under ``search_root``, the default
    ``output_dir``; best.ckpt, then last.ckpt, for a fold without a result)."""
    from asc.data.audio import display_name

    path = Path(ref)
    if path.is_file():
        return path
    if not path.suffix and "/" not in str(ref) and Path(search_root).is_dir():
        for id_file in Path(search_root).glob("**/fold-*/wandb_run_id"):
            if id_file.read_text().strip() == str(ref):
                return _tested_checkpoint(id_file.parent)
    raise AscError(f"checkpoint {display_name(path)!r} not found (neither a file nor the W&B run id of a fold "
                   f"under {search_root}/); checkpoints live in <output_dir>/<experiment>/fold-<k>/checkpoints/")


def _tested_checkpoint(fold_dir: Path) -> Path:
    """The checkpoint a fold's test scored (``tested_checkpoint`` of its result.json, looked
    up by name in its checkpoints folder, which may have moved), else best.ckpt, else last.ckpt."""
    import json

    checkpoints = fold_dir / "checkpoints"
    try:
        names = [Path(json.loads((fold_dir / "result.json").read_text())["tested_checkpoint"]).name]
    except (OSError, ValueError, KeyError, TypeError):
        names = []
    for name in [*names, "best.ckpt", "last.ckpt"]:
        if (checkpoints / name).is_file():
            return checkpoints / name
    return checkpoints / "last.ckpt"
