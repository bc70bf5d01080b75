"""Logging to stderr and to a rotating file in the platform log folder."""
from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import stat
import sys
from pathlib import Path

from .io.paths import log_dir

_configured = False


class _QuietOnError:
    """A logging handler that, when it cannot write (a full disk, an unwritable or odd log file), says so in one
    line on stderr and then stays silent: a failing log must never bury the command's real output under logging's
    own 20-line traceback, nor repeat that for every record."""

    _failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self._failed:
            super().emit(record)  # type: ignore[misc]

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        if self._failed:
            return
        self._failed = True
        err = sys.exc_info()[1]
        why = getattr(err, "strerror", None) or str(err) or type(err).__name__
        try:
            sys.stderr.write(f"gridar: cannot write logs to {self.describe()} ({why}); logging there is off "
                                 "for this run\n")
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass

    def close(self) -> None:
        # closing flushes what is buffered: on a full disk that fails again, and it must not fail the program's exit
        try:
            super().close()  # type: ignore[misc]
        except (OSError, ValueError):
            pass

    def describe(self) -> str:
        return "stderr"


class _FileHandler(_QuietOnError, logging.handlers.RotatingFileHandler):
    def describe(self) -> str:
        return self.baseFilename


class _StreamHandler(_QuietOnError, logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes, not the stream it was created with: a replaced or
    redirected stderr (a test's capture, an embedding host) must not be written after it closed."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _check_log_file(path: Path) -> None:
    """Opening a FIFO for appending blocks until a reader comes, which would hang every command; a socket cannot be
    opened at all. (A device such as /dev/null is fine: that is how one turns the log off.)"""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise OSError(errno.EINVAL, f"{path} is a named pipe or socket, not a file")


def setup_logging(level: int = logging.INFO, to_stderr: bool = True) -> None:
    """Idempotent. The file keeps 5 x 2 MB; a read-only home still gets stderr logging, and a log that cannot be
    written costs one line on stderr, never a traceback."""
    global _configured
    if _configured:
        return
    root = logging.getLogger("gridar")
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        d = log_dir()
        d.mkdir(parents=True, exist_ok=True)
        _check_log_file(d / "gridar.log")
        fh = _FileHandler(d / "gridar.log", maxBytes=2_000_000, backupCount=5, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    except OSError as e:  # no writable log folder: keep going, say so on stderr
        print(f"gridar: cannot write logs to {log_dir()}: {e.strerror or e}", file=sys.stderr)
    if to_stderr:
        sh = _StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        sh.setLevel(logging.WARNING)
        root.addHandler(sh)
    _configured = True
