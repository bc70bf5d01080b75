"""The one place that turns a judge choice into the roles GridAR asks (verify, score, reformulate), for the CLI and
the studio alike.

A choice is either `JUDGE_SELF` ("self": the generator's own understanding path, `JanusRoles`) or a local model
folder: an image-text-to-text folder transformers supports natively (Qwen2.5-VL, Qwen2-VL, LLaVA, Idefics3 class;
`VLMRoles`), or another Janus-format folder (say a 7B judging for a 1B generator; `JanusRoles` on its own backend).

Everything here that runs before a load reads only small files (config.json, the processor's JSON, the
safetensors headers), so a bad choice is refused in one line before any weights load, and the memory plan can
count the judge's weights and batch (`judge_shape_for`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import ModelLoadError

JUDGE_SELF = "self"

# What a judging question costs a judge per image when its processor does not say (a stated guess, as in
# `memory_plan.JudgeShape`).
DEFAULT_IMAGE_TOKENS = 1024


def is_self(spec: str | None) -> bool:
    """Whether `spec` names the generator's own understanding path (also for None and an empty string)."""
    return spec is None or str(spec).strip() in ("", JUDGE_SELF)


def judge_setting(spec: str | None) -> dict:
    """{"judge": FOLDER} for results judged by a separate model, recorded with them (PNG metadata, reports); nothing
    for the generator's own judging, so the records of such runs stay as they were."""
    return {} if is_self(spec) else {"judge": str(spec)}


def judge_folder(spec: str) -> Path:
    """The folder a judge choice names, checked without loading anything: it exists, is a folder, holds a
    config.json object and safetensors weights. `ModelLoadError` (one line) otherwise."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelLoadError(f"judge folder '{path}' does not exist; give a local image-text-to-text model folder "
                             f"(e.g. Qwen2.5-VL) or '{JUDGE_SELF}' for the generator's own judging")
    if not path.is_dir():
        raise ModelLoadError(f"judge '{path}' is a file; give the folder that holds its config.json and weights")
    judge_config(path)
    return path


def judge_config(path: Path) -> dict:
    """The config.json object of a judging model folder that holds safetensors weights, read without loading
    anything; `ModelLoadError` (one line) for a folder without them or a config that is no JSON object."""
    from .models import read_json_file
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"judge folder '{path}' has no config.json: it is not a model folder")
    cfg = read_json_file(path / "config.json")          # one line naming the file when it is not JSON
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"'{path / 'config.json'}' holds a JSON {type(cfg).__name__}, not an object; the "
                             "folder may be damaged")
    if not any(path.glob("*.safetensors")):
        raise ModelLoadError(f"judge folder '{path}' has no .safetensors weights; GridAR loads safetensors only (a "
                             ".bin file is a pickle that can run code)")
    return cfg


def _config(path: Path) -> dict:
    from .models import read_json_file
    return read_json_file(path / "config.json")


def is_janus_folder(path: Path) -> bool:
    return _config(path).get("model_type") == "janus"


def load_judge(spec: str | None, backend, device: str = "auto", dtype: str = "auto", **kw):
    """The roles for a judge choice. "self": the generator's understanding path on `backend` (no second model);
    a folder: its own model, loaded on `device` ("auto": the generator's device) in `dtype`. `kw` goes to the
    roles (e.g. max_new_tokens). Errors are one-line `ModelLoadError`s naming what is wrong and what to do."""
    from .janus_roles import JanusRoles
    if is_self(spec):
        return JanusRoles(backend, **kw)
    path = judge_folder(str(spec))
    own = getattr(getattr(backend, "info", None), "folder", None)
    if own is not None and Path(own).expanduser().resolve() == path.resolve():
        return JanusRoles(backend, **kw)            # the generator's own folder: its loaded model, not a copy
    dev = str(getattr(backend, "device", "cpu")) if device == "auto" else device
    if is_janus_folder(path):
        from .backend import JanusBackend
        return JanusRoles(JanusBackend.load(path, device=dev, dtype=dtype), **kw)
    from .vlm_roles import VLMRoles
    return VLMRoles(path, device=dev, dtype=dtype, **kw)


def judge_image_tokens(path: Path, image_size: int) -> int:
    """Positions one square `image_size` image takes in the judge's questions, from its processor configuration:
    Qwen2/2.5-VL resize to multiples of patch x merge within their pixel bounds and merge merge x merge patches
    into one token; other processors say `image_seq_length`, or their vision tower's patch grid does."""
    proc: dict = {}
    for name in ("preprocessor_config.json", "processor_config.json"):
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            proc.update(data.get("image_processor", {}) if isinstance(data.get("image_processor"), dict) else {})
            proc.update({k: v for k, v in data.items() if k != "image_processor"})
    patch, merge = proc.get("patch_size"), proc.get("merge_size")
    if isinstance(patch, int) and isinstance(merge, int) and patch > 0 and merge > 0:
        size = proc.get("size") if isinstance(proc.get("size"), dict) else {}
        lo = proc.get("min_pixels") or size.get("shortest_edge") or 56 * 56
        hi = proc.get("max_pixels") or size.get("longest_edge") or 28 * 28 * 1280
        side = max(patch * merge, round(image_size / (patch * merge)) * patch * merge)
        if side * side > hi:
            side = max(patch * merge, math.floor(math.sqrt(hi) / (patch * merge)) * patch * merge)
        elif side * side < lo:
            side = math.ceil(math.sqrt(lo) / (patch * merge)) * patch * merge
        return (side // patch) ** 2 // (merge * merge)
    if isinstance(proc.get("image_seq_length"), int):
        return int(proc["image_seq_length"])
    vision = _config(path).get("vision_config")
    if isinstance(vision, dict) and isinstance(vision.get("image_size"), int) and vision.get("patch_size"):
        return (vision["image_size"] // int(vision["patch_size"])) ** 2
    return DEFAULT_IMAGE_TOKENS


def judge_shape_for(spec: str | None, dtype="float32", image_size: int = 384):
    """The memory plan's `JudgeShape` of a judge choice, from the folder's small files and safetensors headers
    (no weights read); None for "self" (the generator's own path is planned with the generator). `dtype`: the
    judge's (a torch dtype or its name); `image_size`: the generator's images, which the judge reads."""
    if is_self(spec):
        return None
    from .memory_plan import judge_shape, safetensors_bytes
    path = judge_folder(str(spec))
    return judge_shape(_config(path), safetensors_bytes(path, dtype), name=f"judge ({path.name})",
                       image_tokens=judge_image_tokens(path, image_size))


def judge_weight_bytes(spec: str | None, dtype="float32") -> int:
    """What a judge choice's own weights take once loaded in `dtype` (0 for "self": it shares the generator's)."""
    shape = judge_shape_for(spec, dtype)
    return 0 if shape is None else shape.weight_bytes


def torchvision_problem() -> str | None:
    """None when torchvision imports beside this torch; else why not, in words. A torchvision wheel built for
    another torch (the PyPI CUDA build beside a CPU torch) is installed but fails to import."""
    import importlib.metadata
    import importlib.util
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision is not installed"
    try:
        import torchvision  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any failure means the same: a build that does not match torch
        import torch
        try:
            have = importlib.metadata.version("torchvision")
        except importlib.metadata.PackageNotFoundError:
            have = "?"
        return (f"torchvision {have} is installed but does not load beside torch {torch.__version__} (a build for "
                f"another torch: {' '.join(str(e).split())[:120]})")
    return None


def matching_torchvision(torch_version: str) -> str | None:
    """The torchvision release paired with a torch release (torch 2.X.Y ships with torchvision 0.(X+15).Y, e.g.
    2.13.0 -> 0.28.0); None for a version outside that scheme."""
    import re
    m = re.match(r"2\.(\d+)\.(\d+)", torch_version)
    return f"0.{int(m.group(1)) + 15}.{m.group(2)}" if m and int(m.group(1)) >= 6 else None


def torchvision_hint() -> str:
    """How to install the torchvision build that matches the installed torch, in one sentence."""
    import torch
    version = matching_torchvision(torch.__version__)
    pin = f"torchvision=={version}" if version else "torchvision"
    if torch.__version__.partition("+")[2] == "cpu":
        return (f"install the CPU build that matches torch {torch.__version__}: make install (from $TORCH_INDEX_URL), "
                f"or pip install {pin} --no-deps --index-url https://download.pytorch.org/whl/cpu")
    return (f"install the torchvision that matches torch {torch.__version__} from the index torch came from (make "
            f"install does): pip install {pin}")
