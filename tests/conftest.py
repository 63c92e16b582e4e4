"""Shared fixtures: the tiny config, the CLI runner, data set trees, a trained checkpoint.

Helpers that are not fixtures live in tests/helpers/ (importable as ``helpers.*``); test
modules import from there or use these fixtures, never from one another.
"""

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
torch.set_num_threads(2)
sys.path.insert(0, str(Path(__file__).parent))  # makes tests/helpers importable as `helpers`

from helpers import audio_trees  # noqa: E402
from helpers.cli import TINY, asc  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny() -> list[str]:
    """Overrides for a tiny one-epoch experiment (3 classes, 2 folds, a small CRNN)."""
    return list(TINY)


@pytest.fixture(scope="session")
def asc_cli():
    """``asc_cli(*args, cwd=...)`` runs the command line in a subprocess, as a user would."""
    return asc


@pytest.fixture
def data_tree(tmp_path):
    """``data_tree(layout, **kw)`` writes a small data set in one of the official layouts
    (litis, tut2017, tau2020, esc50, folder, bad_files) under a fresh folder and returns it."""
    builders = {"litis": audio_trees.make_litis, "tut2017": audio_trees.make_tut2017,
                "tau2020": audio_trees.make_tau2020, "esc50": audio_trees.make_esc50,
                "folder": audio_trees.make_folder, "bad_files": audio_trees.make_bad_files}

    def make(layout: str, **kw) -> Path:
        root = tmp_path / f"tree-{layout}"
        root.mkdir()
        builders[layout](root, **kw)
        return root

    return make


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """best.ckpt of `asc train` on the tiny config (fold 1), written by this version of asc."""
    root = tmp_path_factory.mktemp("ckpt")
    proc = asc("train", "experiment.name=tiny", f"output_dir={root}", "logger.mode=disabled", *TINY, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "tiny" / "fold-1" / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="session")
def old_checkpoint_dir() -> Path:
    """tests/fixtures/ckpt_b6efd54: a checkpoint written by main at b6efd54, three WAVs and
    what `asc predict` / `asc attention` answered with it then."""
    return FIXTURES / "ckpt_b6efd54"
