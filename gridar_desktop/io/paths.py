"""Platform folders (platformdirs), overridable with GRIDAR_HOME for tests and portable installs."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "gridar-desktop"


def _root(kind: str) -> Path:
    home = os.environ.get("GRIDAR_HOME")
    if home:
        return Path(home) / kind
    return Path({"data": platformdirs.user_data_dir, "config": platformdirs.user_config_dir,
                 "log": platformdirs.user_log_dir, "cache": platformdirs.user_cache_dir}[kind](APP, appauthor=False))


def data_dir() -> Path:
    return _root("data")


def config_dir() -> Path:
    return _root("config")


def log_dir() -> Path:
    return _root("log")
