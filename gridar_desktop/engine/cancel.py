"""Cooperative cancellation: the GUI sets a token, the decoding loop checks it every step."""
from __future__ import annotations

import threading

from .errors import Cancelled


class CancelToken:
    """`abort()` stops at the next token; `stop_after_band()` lets the current band finish first."""

    def __init__(self) -> None:
        self._abort = threading.Event()
        self._stop_after_band = threading.Event()

    def abort(self) -> None:
        self._abort.set()

    def stop_after_band(self) -> None:
        self._stop_after_band.set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    @property
    def stopping_after_band(self) -> bool:
        return self._stop_after_band.is_set()

    def check(self) -> None:
        """Raise `Cancelled` when an abort was requested (called once per decoding step)."""
        if self._abort.is_set():
            raise Cancelled("generation aborted")
