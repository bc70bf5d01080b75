"""`import_model`: read the original folder twice (shapes first, then data, one shard at a time), write the new
folder through the atomic folder writer, and check it before it lands."""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ...io.atomic import atomic_folder
from .janus_config import derive_config, expected_shapes, generation_settings
from .keymap import Target, map_key
from .layout import MANIFEST, ModelImportError, read_source
from .processor import make_processor, read_processor_parts
from .shards import Shard, tensor_bytes, verify_manifest, write_manifest, write_safetensors

log = logging.getLogger("gridar.import")
Progress = Callable[[str, int, int], None]
_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


@dataclass(frozen=True)
class Planned:
    out: str                        # transformers name
    source: str                     # original name
    shard: int                      # index of the source shard that holds it
    target: Target
    shape: tuple[int, ...]
    dtype: torch.dtype


def _check_destination(src: Path, dst: Path) -> None:
    if dst.exists() and not dst.is_dir():
        raise ModelImportError(f"'{dst}' is a file; choose a new folder for the imported model")
    if dst.is_dir() and any(dst.iterdir()):
        raise ModelImportError(f"'{dst}' already holds files; choose a new (or empty) folder for the imported model")
    s, d = src.resolve(), dst.resolve()
    if d == s or s in d.parents:
        raise ModelImportError(f"'{dst}' is inside the source folder; choose a folder outside '{src}'")


def _out_shape(name: str, shape: tuple[int, ...], t: Target) -> tuple[int, ...]:
    if t.squeeze:
        if not shape or shape[0] != 1:
            raise ModelImportError(f"the tensor '{name}' has shape {shape}, expected a leading 1; the folder is "
                                   "not an original Janus model")
        return shape[1:]
    if t.parts > 1:
        if not shape or shape[0] % t.parts:
            raise ModelImportError(f"the tensor '{name}' ({shape}) cannot be split into {t.parts} equal parts; the "
                                   "folder is not an original Janus model")
        return (shape[0] // t.parts,) + shape[1:]
    return shape


def _take(t: torch.Tensor, target: Target) -> torch.Tensor:
    if target.squeeze:
        return t.squeeze(0)
    if target.parts > 1:
        return t.chunk(target.parts, dim=0)[target.part]
    return t


def _inventory(source, report: Progress) -> dict[str, tuple[tuple[int, ...], torch.dtype, int]]:
    """Every tensor's shape, dtype and shard, read without loading any data."""
    found: dict[str, tuple[tuple[int, ...], torch.dtype, int]] = {}
    for i, file in enumerate(source.shards):
        report("reading", i, len(source.shards))
        with Shard(file, source.kind) as shard:
            for name in shard.names():
                if name in found:
                    raise ModelImportError(f"the tensor '{name}' is in both {source.shards[found[name][2]].name} and "
                                           f"{file.name}; the folder is damaged: download it again")
                shape, dtype = shard.info(name)
                if dtype is None:
                    raise ModelImportError(f"the tensor '{name}' in '{file}' has a data type the app cannot read")
                found[name] = (shape, dtype, i)
    report("reading", len(source.shards), len(source.shards))
    if source.index is not None:
        absent = [k for k, f in source.index.items() if k not in found]
        if absent:
            raise ModelImportError(f"'{source.path}' is an incomplete download: {len(absent)} tensor(s) named in its "
                                   f"index are in no weight file (e.g. '{absent[0]}'); download the folder again")
    return found


def _plan(found: dict, config, src: Path) -> list[Planned]:
    unknown = [k for k in found if map_key(k) is None]
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise ModelImportError(f"'{src}' holds the tensor '{unknown[0][:120]}'{more} that an original Janus / "
                               "Janus-Pro model does not have; it cannot be imported")
    expected = expected_shapes(config)
    plan: dict[str, Planned] = {}
    for name, (shape, dtype, shard) in found.items():
        for t in map_key(name):
            if t.key == "lm_head.weight" and config.tie_word_embeddings:
                continue                        # tied: the input embedding is the output head
            plan[t.key] = Planned(t.key, name, shard, t, _out_shape(name, shape, t), dtype)
    missing = sorted(set(expected) - set(plan))
    if missing:
        raise ModelImportError(f"'{src}' lacks {len(missing)} tensor(s) its config.json calls for (e.g. "
                               f"'{missing[0]}'); the download is incomplete or the config does not match the "
                               "weights: download the folder again")
    extra = sorted(set(plan) - set(expected))
    if extra:
        raise ModelImportError(f"'{src}' has {len(extra)} tensor(s) its config.json does not call for (e.g. "
                               f"'{plan[extra[0]].source}'); the config does not match the weights")
    for p in plan.values():
        if p.shape != expected[p.out]:
            raise ModelImportError(f"the tensor '{p.source}' has shape {p.shape}, the configuration implies "
                                   f"{expected[p.out]}; the config does not match the weights")
    return sorted(plan.values(), key=lambda p: (p.shard, p.out))


def _group(plan: list[Planned], limit: int) -> list[list[Planned]]:
    """Output shards of at most `limit` bytes (one bigger tensor gets a file of its own), never drawing on two
    source shards, so a single source shard is open at a time."""
    groups: list[list[Planned]] = []
    size = 0
    for p in plan:
        n = tensor_bytes(p.shape, p.dtype)
        if not groups or groups[-1][-1].shard != p.shard or (size + n > limit and groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append(p)
        size += n
    return groups


def import_model(src: str | Path, dst: str | Path, progress: Progress | None = None, verify: bool = True,
                 max_shard_bytes: int = 2 << 30) -> Path:
    report: Progress = progress or (lambda stage, done, total: None)
    source = read_source(src)
    dst = Path(dst).expanduser()
    _check_destination(source.path, dst)

    found = _inventory(source, report)
    lm = source.config["language_config"]
    improc, tokenizer, ids, proc_cfg = read_processor_parts(source.path, lm.get("max_position_embeddings"))
    config = derive_config(source.config, {k: v[:2] for k, v in found.items()}, ids, source.path / "config.json")
    n_features = config.vision_config.num_image_tokens
    if proc_cfg.get("num_image_tokens", n_features) != n_features:
        raise ModelImportError(f"'{source.path / 'processor_config.json'}' gives num_image_tokens "
                               f"{proc_cfg.get('num_image_tokens')}, the understanding encoder makes {n_features}; the "
                               "folder is inconsistent")
    plan = _plan(found, config, source.path)
    lm_dtype = found.get("language_model.model.embed_tokens.weight", (None, torch.float32))[1]
    config.dtype = _DTYPE_NAMES.get(lm_dtype, "float32")
    total = sum(tensor_bytes(p.shape, p.dtype) for p in plan)
    parent = next(p for p in (dst.absolute(), *dst.absolute().parents) if p.exists())
    free = shutil.disk_usage(parent).free
    if free < total + (64 << 20):
        raise ModelImportError(f"the imported model needs {total / 2**30:.1f} GiB and '{parent.resolve()}' has "
                               f"{free / 2**30:.1f} GiB free; free some space or choose another folder")

    groups = _group(plan, max(1, max_shard_bytes))
    names = (["model.safetensors"] if len(groups) == 1 else
             [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))])
    with atomic_folder(dst) as tmp:
        hashes: dict[str, str] = {}
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            report("converting", done, total)

        report("converting", 0, total)
        shard_index, shard = -1, None
        try:
            for name, group in zip(names, groups):
                if group[0].shard != shard_index:
                    if shard is not None:
                        shard.close()
                    shard_index = group[0].shard
                    shard = Shard(source.shards[shard_index], source.kind)
                items = [(p.out, p.shape, p.dtype, lambda p=p: _take(shard.tensor(p.source), p.target))
                         for p in group]
                hashes[name] = write_safetensors(tmp / name, items, advance)
        finally:
            if shard is not None:
                shard.close()
        if len(groups) > 1:
            index = {"metadata": {"total_size": total},
                     "weight_map": {p.out: name for name, group in zip(names, groups) for p in group}}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n",
                                                               encoding="utf-8")
        config.save_pretrained(tmp)
        generation_settings(config, ids).save_pretrained(tmp)
        make_processor(improc, tokenizer, n_features).save_pretrained(tmp)
        manifest = write_manifest(tmp, hashes, {"imported_from": str(source.path.resolve()),
                                                "source_layout": "janus-original", "tensors": len(plan)})
        if verify:
            size = sum(rec["bytes"] for rec in manifest["files"].values())
            checked = 0

            def tick(n: int) -> None:
                nonlocal checked
                checked += n
                report("checking", checked, size)

            verify_manifest(tmp, tick)
            report("loading", 0, 1)
            from ..backend import JanusBackend
            JanusBackend.load(tmp, device="cpu", dtype=config.dtype)
            report("loading", 1, 1)
    log.info("imported %s into %s (%d tensors, %d file(s))", source.path, dst, len(plan), len(groups))
    return dst


__all__ = ["import_model", "MANIFEST"]
