"""Where models live: the bundled demo model and user folders."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_NAME = "demo"


def demo_model_dir() -> Path:
    """The bundled shapes-world model (GRIDAR_DEMO_MODEL overrides, e.g. for a relocated install)."""
    env = os.environ.get("GRIDAR_DEMO_MODEL")
    return Path(env) if env else REPO_ROOT / "resources" / "models" / "shapes-demo"


def resolve_model(spec: str) -> Path:
    """'demo' -> the bundled model; anything else is a local folder path."""
    return demo_model_dir() if spec == DEMO_NAME else Path(spec).expanduser()
