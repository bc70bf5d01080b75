"""Weights in and out: source shards read one at a time, a safetensors writer that streams tensor by tensor (never
a whole shard in memory), and the sha256 manifest of the written folder."""
from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import struct
from pathlib import Path
from typing import Callable, Iterable

import torch

from .layout import MANIFEST, ModelImportError

SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                      torch.uint8: "U8", torch.bool: "BOOL"}
_CHUNK = 1 << 24


class Shard:
    """One source weight file. A pickle (.bin) is opened with `weights_only=True` (no code runs; anything but
    tensors is refused) and memory-mapped, so its tensors are read from disk only as they are written out."""

    def __init__(self, file: Path, kind: str) -> None:
        self.file = file
        self._st = None
        self._dict: dict | None = None
        if kind == "safetensors":
            from safetensors import safe_open
            try:
                self._st = safe_open(str(file), framework="pt")
            except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
                raise self._damaged(e) from None
            return
        try:
            try:
                data = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                # the legacy (pre-zip) format cannot be mapped: it is read whole, still one shard at a time
                data = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ModelImportError(f"'{file}' holds more than tensors, so it was not opened (a pickle can run code; "
                                   f"{str(e).splitlines()[0][:120]}); use the official files") from None
        except (RuntimeError, EOFError, OSError, ValueError) as e:
            raise self._damaged(e) from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in data.items()):
            raise ModelImportError(f"'{file}' does not hold a plain table of named tensors, as a model's weight file "
                                   "does; use the official files")
        self._dict = data

    def _damaged(self, e: BaseException) -> ModelImportError:
        text = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        return ModelImportError(f"could not read '{self.file}' ({text}); the file is incomplete or damaged: "
                                "download it again")

    def names(self) -> list[str]:
        return list(self._st.keys()) if self._st is not None else list(self._dict)

    def info(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        if self._st is not None:
            sl = self._st.get_slice(name)
            table = {v: k for k, v in SAFETENSORS_DTYPES.items()}
            return tuple(sl.get_shape()), table.get(sl.get_dtype(), None)
        t = self._dict[name]
        return tuple(t.shape), t.dtype

    def tensor(self, name: str) -> torch.Tensor:
        try:
            return self._st.get_tensor(name) if self._st is not None else self._dict[name]
        except Exception as e:  # noqa: BLE001
            raise self._damaged(e) from None

    def close(self) -> None:
        self._st = None
        self._dict = None

    def __enter__(self) -> "Shard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tensor_bytes(shape: Iterable[int], dtype: torch.dtype) -> int:
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


def write_safetensors(file: Path, items: list[tuple[str, tuple[int, ...], torch.dtype, Callable[[], torch.Tensor]]],
                      on_bytes: Callable[[int], None] = lambda n: None) -> str:
    """Write `items` (name, shape, dtype, a function that gives the tensor) as one safetensors file, one tensor at a
    time: the header is built from the shapes first, then each tensor's bytes are appended. Returns the sha256."""
    header: dict = {}
    offset = 0
    for name, shape, dtype, _ in items:
        n = tensor_bytes(shape, dtype)
        header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}       # transformers refuses a file without it
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)                   # the data starts 8-byte aligned
    digest = hashlib.sha256()
    with open(file, "wb") as f:
        def put(data) -> None:
            f.write(data)
            digest.update(data)
        put(struct.pack("<Q", len(raw)))
        put(raw)
        for name, shape, dtype, get in items:
            t = get()
            if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                raise ModelImportError(f"the tensor '{name}' changed while it was read ({tuple(t.shape)} "
                                       f"{t.dtype}, expected {tuple(shape)} {dtype}); the source file is damaged")
            flat = t.detach().contiguous().reshape(-1).view(torch.uint8)
            for start in range(0, flat.numel(), _CHUNK):
                put(memoryview(flat[start:start + _CHUNK].numpy()))
            on_bytes(flat.numel())
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest()


def file_sha256(file: Path, on_bytes: Callable[[int], None] = lambda n: None) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            on_bytes(len(chunk))
    return digest.hexdigest()


def write_manifest(folder: Path, known: dict[str, str], about: dict) -> dict:
    """Write MANIFEST: every file in `folder` with its size and sha256 (`known` gives the hashes already computed
    while writing). Returns the manifest."""
    files = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name != MANIFEST:
            files[p.name] = {"bytes": p.stat().st_size, "sha256": known.get(p.name) or file_sha256(p)}
    manifest = dict(about, files=files)
    with open(folder / MANIFEST, "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return manifest


def verify_manifest(folder: str | Path, on_bytes: Callable[[int], None] = lambda n: None) -> None:
    """Re-read every file the manifest lists and compare its size and sha256; `ModelImportError` names the first
    file that differs (a disk or copy error)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        assert isinstance(files, dict)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise ModelImportError(f"'{folder / MANIFEST}' is missing or damaged; import the model again") from None
    for name, rec in files.items():
        p = folder / Path(str(name)).name
        if not p.is_file() or p.stat().st_size != rec.get("bytes") or file_sha256(p, on_bytes) != rec.get("sha256"):
            raise ModelImportError(f"'{p}' does not match its checksum in {MANIFEST}: the file was damaged on disk "
                                   "or in a copy; import the model again")
