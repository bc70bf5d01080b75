"""The edit value head's file in a model folder: a logistic head on the edit question's last hidden state that
reads P(this edit ends right) (trained by `training.edit_value`; how and why in docs/editing.md)."""
from __future__ import annotations

from pathlib import Path

HEAD_FILE = "edit_value_head.safetensors"


def load_head(folder: str | Path):
    """(weight (H,), bias (1,)) float32 tensors of a folder's value head."""
    from safetensors.torch import load_file
    t = load_file(str(Path(folder) / HEAD_FILE))
    return t["weight"], t["bias"]
