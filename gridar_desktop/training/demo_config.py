"""Writing the demo model's folder. Its format (configuration, tokenizer, processor) lives in the engine
(`engine.demo_format`), which builds test models with it too; the names are re-exported here for the training code."""
from __future__ import annotations

from pathlib import Path

from ..engine.demo_format import (BOI, BOS, CODEBOOK, EOI, EOS, GRID, IMAGE, PAD, PATCH, RESERVED, ROLE_WORDS,  # noqa: F401
                                  SPECIAL_TOKENS, TEXT_VOCAB, UNK, build_processor, janus_config,
                                  set_generation_config)


# Files that hold weights: they belong to the weights they were saved with, so a new save never carries them over.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".safetensors.index.json", ".bin.index.json")


def save_folder(model, processor, out: str | Path, meta: dict | None = None) -> None:
    """Write the model folder OUT atomically: it is built in a temporary folder beside OUT and renamed into place,
    so a crash mid-save leaves the previous model whole (the app may be loading it). Files of the previous folder
    that this save does not write (gridar.json, README.md) are carried over, except weight files (such as the edit
    value head), which belong to the old weights. `meta`, when given, is written as the new gridar.json."""
    import json
    import shutil

    from ..io.atomic import atomic_folder, atomic_write_text
    out = Path(out)
    set_generation_config(model)
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if meta is not None:
            atomic_write_text(tmp / "gridar.json", json.dumps(meta, indent=1))
        if out.is_dir():
            for old in out.iterdir():
                if (tmp / old.name).exists() or old.name.endswith(WEIGHT_SUFFIXES):
                    continue
                if old.is_dir():
                    shutil.copytree(old, tmp / old.name, symlinks=True)
                else:
                    shutil.copy2(old, tmp / old.name, follow_symlinks=False)
