"""Cooperative cancellation: the GUI sets a token; the work checks it between tokens, between role calls and, through
checkpoints, between the layers of any forward pass.

Why layers: a cancel can only take effect where the work looks at the token. A whole role call (the verifier's,
the scorer's, a reformulation), a preview decode or a prefill is one stretch of torch work; on a loaded machine one
such stretch takes seconds, and an abort waited for all of it. The model's layer blocks check the token of the job
running on this thread (`active`) before they run, so an abort waits at most for one layer.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from .errors import Cancelled


class CancelToken:
    """`abort()` stops at the next token (or layer); `stop_after_band()` lets the current band finish first."""

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
        """Raise `Cancelled` when an abort was requested (called once per decoding step and at every checkpoint)."""
        if self._abort.is_set():
            raise Cancelled("generation aborted")


# The token of the job running in this context (the GPU thread's current job); None outside a job, so a model
# used by something else (a benchmark, a test) is never interrupted by a checkpoint.
_current: ContextVar[CancelToken | None] = ContextVar("gridar_cancel_token", default=None)


@contextmanager
def active(token: CancelToken | None) -> Iterator[CancelToken | None]:
    """Make `token` the one checkpoints check while the block runs (on this thread)."""
    reset = _current.set(token)
    try:
        yield token
    finally:
        _current.reset(reset)


def checkpoint() -> None:
    """Raise `Cancelled` when the active job's token was aborted; nothing outside a job."""
    token = _current.get()
    if token is not None:
        token.check()


def _pre_hook(module, args) -> None:
    checkpoint()


def install_checkpoints(model) -> int:
    """A checkpoint before every block of every layer list in `model` (a torch module: the language model's layers,
    the vision encoder's, the VQ decoder's blocks), once per model. Returns the number of blocks hooked (0 when
    they already were)."""
    import torch
    if model is None or getattr(model, "_gridar_checkpoints", False):
        return 0
    hooked = 0
    for m in model.modules():
        if isinstance(m, torch.nn.ModuleList):
            for block in m:
                block.register_forward_pre_hook(_pre_hook)
                hooked += 1
    model._gridar_checkpoints = True
    return hooked
