import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own platform folders (logs, settings, history)."""
    monkeypatch.setenv("GRIDAR_HOME", str(tmp_path / "home"))
