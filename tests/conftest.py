import os
import sys
from pathlib import Path

import pytest
import torch

os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
torch.set_num_threads(2)
sys.path.insert(0, str(Path(__file__).parent))  # test helpers (wandb_offline)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
