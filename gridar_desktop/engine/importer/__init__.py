"""`gridar import-model SRC DST`: DeepSeek's original-layout Janus / Janus-Pro folders to the transformers format.

The official `deepseek-ai/Janus-Pro-1B` / `-7B` folders hold a `MultiModalityCausalLM` (model_type
"multi_modality") with DeepSeek's own module names and processor files; the app loads transformers'
`JanusForConditionalGeneration`. The import renames every tensor, derives the transformers configuration from the
original one and the tensors' shapes, converts the processor, and writes a new folder shard by shard.

Modules:
- `layout`:  what a folder is (original, transformers, another family) and its weight files; torch-free.
- `keymap`:  original tensor names -> transformers names (and the qkv split).
- `janus_config`: the `JanusConfig` and generation settings from the original config.json and the tensors.
- `processor`: the tokenizer, image processor and chat template as a `JanusProcessor`.
- `shards`:  reading source shards one at a time; the streamed safetensors writer; the sha256 manifest.
- `run`:     `import_model`, which ties them together.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..models import original_layout_hint
from .layout import MANIFEST, ModelImportError, detect_layout

__all__ = ["MANIFEST", "STAGES", "ModelImportError", "detect_layout", "import_model", "original_layout_hint",
           "suggested_destination"]

# The stages `progress` reports, in plain words for the CLI and the studio.
STAGES = {"reading": "reading the original files", "converting": "writing the new folder",
          "checking": "checking the written files", "loading": "loading the new folder to test it"}


def import_model(src: str | Path, dst: str | Path, progress: Callable[[str, int, int], None] | None = None,
                 verify: bool = True, max_shard_bytes: int = 2 << 30) -> Path:
    """Import the original-layout folder `src` into a new transformers-format folder `dst`; returns `dst`.
    `progress(stage, done, total)` is called as work advances (bytes for the tensor and checksum stages). Every
    refusal is a `ModelImportError` (a `ModelLoadError`) with one line naming what is wrong and what to do."""
    from .run import import_model as _run
    return _run(src, dst, progress=progress, verify=verify, max_shard_bytes=max_shard_bytes)


def suggested_destination(src: str | Path) -> Path:
    """A free folder beside `src` for its imported copy: '<name>-transformers', else '<name>-transformers-2', ..."""
    src = Path(src).expanduser()
    base = src.parent / f"{src.name}-transformers"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate
