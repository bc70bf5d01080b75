"""What a model folder is, and where an original-layout folder keeps its weights. Torch-free: the studio asks this
when a folder is added, before anything heavy is imported."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelLoadError
from ..models import read_json_file

MANIFEST = "gridar-manifest.json"
ORIGINAL_TYPE = "multi_modality"          # DeepSeek's MultiModalityConfig.model_type
WEIGHT_INDEXES = (("model.safetensors.index.json", "safetensors"), ("pytorch_model.bin.index.json", "bin"))
WEIGHT_FILES = (("model.safetensors", "safetensors"), ("pytorch_model.bin", "bin"))
# The sections MultiModalityCausalLM builds its parts from; all of them are needed to build a Janus generator.
SECTIONS = ("language_config", "vision_config", "aligner_config", "gen_vision_config", "gen_aligner_config",
            "gen_head_config")


class ModelImportError(ModelLoadError):
    """A folder `import-model` cannot convert; the message is one line naming what is wrong and what to do."""


@dataclass
class SourceFolder:
    path: Path
    config: dict
    kind: str                                   # "bin" (pickles, read weights-only) or "safetensors"
    shards: list[Path]                          # weight files, in the order they are read
    index: dict[str, str] | None = None         # tensor name -> shard file name, when the folder has an index
    extra: dict = field(default_factory=dict)


def detect_layout(folder: str | Path) -> str:
    """"janus" (the transformers format the app loads), "janus-original" (import it first) or "other" (anything
    else, including a folder that cannot be read). Never raises."""
    try:
        cfg = read_json_file(Path(folder).expanduser() / "config.json")
    except ModelLoadError:
        return "other"
    mtype = cfg.get("model_type") if isinstance(cfg, dict) else None
    if mtype == "janus":
        return "janus"
    if mtype == ORIGINAL_TYPE and isinstance(cfg.get("gen_vision_config"), dict):
        return "janus-original"
    return "other"


def _plain_name(name: object, index_file: Path) -> str:
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ModelImportError(f"'{index_file}' names the weight file {str(name)[:80]!r}, which is not a file name "
                               "in the folder; the index is damaged: download the folder again")
    return name


def _read_index(path: Path, index_file: Path) -> tuple[dict[str, str], list[Path]]:
    data = read_json_file(index_file)
    wmap = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(wmap, dict) or not wmap or not all(isinstance(k, str) for k in wmap):
        raise ModelImportError(f"'{index_file}' has no weight_map of tensor names to files; the index is damaged: "
                               "download the folder again")
    wmap = {k: _plain_name(v, index_file) for k, v in wmap.items()}
    names = sorted(set(wmap.values()))
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise ModelImportError(
            f"'{path}' is an incomplete download: {len(missing)} of the {len(names)} weight files named in "
            f"{index_file.name} {'is' if len(missing) == 1 else 'are'} missing ({', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}); download the folder again")
    return wmap, [path / n for n in names]


def read_json_object(file: Path) -> dict:
    """A JSON object from a file of the folder being imported, or `ModelImportError` naming the file."""
    try:
        data = read_json_file(file)
    except ModelLoadError as e:
        raise ModelImportError(str(e)) from None
    if not isinstance(data, dict):
        raise ModelImportError(f"'{file}' holds a JSON {type(data).__name__}, not an object; the folder may be "
                               "damaged")
    return data


def read_source(folder: str | Path) -> SourceFolder:
    """Check an original-layout folder (config, weights present, tokenizer) without reading any tensor."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise ModelImportError(f"model folder '{path}' does not exist")
    if not path.is_dir():
        raise ModelImportError(f"'{path}' is a file; choose the folder that holds config.json and the weights")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelImportError(f"'{path}' has no config.json: it is neither an original Janus folder nor a "
                               "transformers model folder; choose the folder you downloaded the model into")
    cfg = read_json_object(cfg_file)
    mtype = cfg.get("model_type")
    if mtype == "janus":
        raise ModelImportError(f"'{path}' is already in the transformers format: load it directly (--model "
                               f"'{path}'); there is nothing to import")
    if mtype != ORIGINAL_TYPE:
        arch = cfg.get("architectures")
        arch = f" ({arch[0]})" if isinstance(arch, list) and arch and isinstance(arch[0], str) else ""
        raise ModelImportError(f"'{path}' holds a {str(mtype)[:40]!r} model{arch[:80]}, not Janus: import-model "
                               "converts only DeepSeek's original Janus / Janus-Pro folders (model_type "
                               "'multi_modality')")
    absent = [s for s in SECTIONS if not isinstance(cfg.get(s), dict)]
    if absent:
        what = ("it has no image generator (a JanusFlow or understanding-only model)"
                if "gen_vision_config" in absent else "its config.json is incomplete")
        raise ModelImportError(f"'{cfg_file}' has no {', '.join(absent)}: {what}; only Janus and Janus-Pro "
                               "folders can be imported")
    for index_name, kind in WEIGHT_INDEXES:
        if (path / index_name).is_file():
            try:
                wmap, shards = _read_index(path, path / index_name)
            except ModelLoadError as e:
                raise ModelImportError(str(e)) from None
            return SourceFolder(path, cfg, kind, shards, wmap)
    for name, kind in WEIGHT_FILES:
        if (path / name).is_file():
            return SourceFolder(path, cfg, kind, [path / name])
    found = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".safetensors", ".pt", ".pth"))
    if found:
        raise ModelImportError(f"'{path}' has {', '.join(found[:3])} but no pytorch_model.bin / model.safetensors "
                               "(or their .index.json for split weights); the download may be incomplete: "
                               "download the folder again")
    raise ModelImportError(f"'{path}' has no weights (pytorch_model.bin, model.safetensors or their .index.json); "
                           "the download is incomplete: download the folder again")
