"""Logging to stderr and to a rotating file in the platform log folder."""
from __future__ import annotations

import logging
import logging.handlers
import sys

from .io.paths import log_dir

_configured = False


def setup_logging(level: int = logging.INFO, to_stderr: bool = True) -> None:
    """Idempotent. The file keeps 5 x 2 MB; a read-only home still gets stderr logging."""
    global _configured
    if _configured:
        return
    root = logging.getLogger("gridar")
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        d = log_dir()
        d.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(d / "gridar.log", maxBytes=2_000_000, backupCount=5,
                                                  encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    except OSError as e:  # no writable log folder: keep going, say so on stderr
        print(f"gridar: cannot write logs to {log_dir()}: {e}", file=sys.stderr)
    if to_stderr:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        sh.setLevel(logging.WARNING)
        root.addHandler(sh)
    _configured = True
