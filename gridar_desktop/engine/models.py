"""Where models live (the bundled demo model and user folders), and the checks on a folder's small JSON files.

A model folder comes from anywhere, so its config.json and gridar.json are untrusted input: they are read here,
cheaply and without torch, and every field the app uses is checked for type and range, so a bad file ends as one
`ModelLoadError` naming the file and the field instead of an exception deep in transformers or the engine.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .errors import ModelLoadError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_NAME = "demo"
# Small JSON files only: a config or gridar.json larger than this is not one.
MAX_JSON_BYTES = 4_000_000


def demo_model_dir() -> Path:
    """The bundled shapes-world model (GRIDAR_DEMO_MODEL overrides, e.g. for a relocated install)."""
    env = os.environ.get("GRIDAR_DEMO_MODEL")
    return Path(env) if env else REPO_ROOT / "resources" / "models" / "shapes-demo"


def resolve_model(spec: str) -> Path:
    """'demo' -> the bundled model; anything else is a local folder path."""
    return demo_model_dir() if spec == DEMO_NAME else Path(spec).expanduser()


def read_json_file(file: Path) -> object:
    """Parse a small JSON file; any problem is a `ModelLoadError` naming the file (and line/column)."""
    try:
        if file.stat().st_size > MAX_JSON_BYTES:
            raise ModelLoadError(f"'{file}' is {file.stat().st_size:,} bytes, too large for a model's JSON file "
                                 "(the folder may be damaged)")
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModelLoadError(f"'{file}' is not UTF-8 text; the folder may be damaged") from None
    except OSError as e:
        raise ModelLoadError(f"cannot read '{file}': {e.strerror or e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"'{file}' is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); the "
                             "folder may be damaged") from None
    except RecursionError:
        raise ModelLoadError(f"'{file}' is nested too deeply to be a model file; the folder may be damaged") from None


# -- config.json ------------------------------------------------------------------------------------------------
# (section, field, lowest, highest): the dimensions the engine and transformers build tensors from. The ranges are
# generous (Janus-Pro-7B sits well inside) but keep an absurd file from allocating terabytes or printing a long
# load report.
_CONFIG_INTS: tuple[tuple[str, str, int, int], ...] = (
    ("text_config", "hidden_size", 1, 65_536),
    ("text_config", "intermediate_size", 1, 262_144),
    ("text_config", "num_hidden_layers", 1, 512),
    ("text_config", "num_attention_heads", 1, 1_024),
    ("text_config", "vocab_size", 1, 4_000_000),
    ("text_config", "max_position_embeddings", 1, 1_048_576),
    ("vision_config", "image_size", 1, 4_096),
    ("vision_config", "patch_size", 1, 4_096),
    ("vision_config", "hidden_size", 1, 65_536),
    ("vision_config", "num_hidden_layers", 1, 512),
    ("vision_config", "num_image_tokens", 1, 65_536),
    ("vq_config", "num_embeddings", 1, 4_000_000),
    ("vq_config", "embed_dim", 1, 65_536),
)


def _int_field(file: Path, where: str, value, lo: int, hi: int, required: bool = True) -> int | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelLoadError(f"'{file}': {where} must be a whole number, got {json.dumps(value)[:40]}")
    if not lo <= value <= hi:
        raise ModelLoadError(f"'{file}': {where} = {value} is outside {lo}..{hi:,}; the folder is damaged or not "
                             "a model GridAR can load")
    return value


def original_layout_hint(folder: str | Path) -> str:
    """The one line for a folder in DeepSeek's original Janus layout (model_type "multi_modality"), which the app
    reads only after `gridar import-model` has converted it."""
    return (f"'{folder}' is in the original Janus layout (DeepSeek's own files): import it once with "
            f"`gridar import-model '{folder}' NEW_FOLDER` and load the new folder")


def check_config(cfg: object, file: Path) -> dict:
    """A Janus config.json's content -> the dict, or `ModelLoadError` naming the field that is wrong."""
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"'{file}' holds a JSON {type(cfg).__name__}, not an object; the folder may be damaged")
    mtype = cfg.get("model_type")
    if mtype == "multi_modality":
        raise ModelLoadError(original_layout_hint(file.parent))
    if mtype != "janus":
        raise ModelLoadError(f"'{file.parent}' holds a '{mtype}' model; GridAR Desktop generates with Janus-family "
                             "models (model_type 'janus', e.g. Janus-Pro-1B or Janus-Pro-7B)")
    for section, key, lo, hi in _CONFIG_INTS:
        sub = cfg.get(section, {})
        if not isinstance(sub, dict):
            raise ModelLoadError(f"'{file}': {section} must be an object")
        _int_field(file, f"{section}.{key}", sub.get(key), lo, hi, required=False)
    vq = cfg.get("vq_config", {})
    mult = vq.get("channel_multiplier")
    if mult is not None and (not isinstance(mult, list) or not 1 <= len(mult) <= 8
                             or not all(isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 64
                                        for m in mult)):
        raise ModelLoadError(f"'{file}': vq_config.channel_multiplier must be a list of 1 to 8 whole numbers in "
                             "1..64")
    text = cfg.get("text_config", {})
    if isinstance(text.get("hidden_size"), int) and isinstance(text.get("num_attention_heads"), int) \
            and text["hidden_size"] % text["num_attention_heads"]:
        raise ModelLoadError(f"'{file}': text_config.hidden_size ({text['hidden_size']}) is not a multiple of "
                             f"num_attention_heads ({text['num_attention_heads']})")
    return cfg


# -- gridar.json --------------------------------------------------------------------------------------------------
PROMPT_FORMATS = ("plain", "janus-pro")


def _colour(file: Path, where: str, value) -> list[int]:
    if not (isinstance(value, list) and len(value) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)):
        raise ModelLoadError(f"'{file}': {where} must be three whole numbers 0-255 (red, green, blue), got "
                             f"{json.dumps(value)[:40]}")
    return value


def _probability(file: Path, where: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 1:
        raise ModelLoadError(f"'{file}': {where} must be a number in 0..1, got {json.dumps(value)[:40]}")


def _text(file: Path, where: str, value, longest: int = 2_000) -> None:
    if not isinstance(value, str) or len(value) > longest:
        raise ModelLoadError(f"'{file}': {where} must be text of at most {longest} characters")


def _threshold_record(file: Path, where: str, rec) -> None:
    """A calibrated threshold: a bare number or {"value": p, "by_rows": {"2": p, ...}, ...} (other keys are notes)."""
    if isinstance(rec, dict):
        if "value" in rec:
            _probability(file, f"{where}.value", rec["value"])
        by = rec.get("by_rows")
        if by is not None:
            if not isinstance(by, dict):
                raise ModelLoadError(f"'{file}': {where}.by_rows must be an object of row -> number")
            for k, v in by.items():
                if not str(k).isdigit():
                    raise ModelLoadError(f"'{file}': {where}.by_rows has the key '{k}', not a row number")
                _probability(file, f"{where}.by_rows.{k}", v)
    else:
        _probability(file, where, rec)


# What a model is used with when its gridar.json says nothing, by prompt format: the demo model was trained and
# measured at guidance 2 (docs/benchmarks.md); Janus-Pro's own inference uses guidance 5 at temperature 1 (the
# library's default for Janus image generation too).
FORMAT_DEFAULTS: dict[str, dict] = {"plain": {"guidance": 2.0, "temperature": 1.0},
                                    "janus-pro": {"guidance": 5.0, "temperature": 1.0}}
# gridar.json "defaults": field -> (lowest, highest, lowest excluded, whole number), the ranges the CLI accepts.
DEFAULT_FIELDS: dict[str, tuple[float, float | None, bool, bool]] = {
    "guidance": (0, 100, False, False), "temperature": (0, 100, True, False), "top_k": (0, None, False, True),
    "top_p": (0, 1, True, False), "layout_scale": (0, 100, False, False), "threshold": (0, 1, False, False)}


def _defaults(file: Path, rec) -> None:
    if not isinstance(rec, dict):
        raise ModelLoadError(f"'{file}': defaults must be an object such as {{\"guidance\": 5}}, got "
                             f"{json.dumps(rec)[:40]}")
    for key, value in rec.items():
        if key not in DEFAULT_FIELDS:
            raise ModelLoadError(f"'{file}': defaults.{key} is not a setting GridAR knows; use "
                                 f"{', '.join(DEFAULT_FIELDS)}")
        lo, hi, open_lo, whole = DEFAULT_FIELDS[key]
        kind = "a whole number" if whole else "a number"
        ok = (not isinstance(value, bool) and isinstance(value, int if whole else (int, float))
              and math.isfinite(value) and (value > lo if open_lo else value >= lo) and (hi is None or value <= hi))
        if not ok:
            bounds = f"above {lo}" if open_lo else f"at least {lo}"
            raise ModelLoadError(f"'{file}': defaults.{key} must be {kind} {bounds}"
                                 + (f" and at most {hi}" if hi is not None else "") + f", got "
                                 f"{json.dumps(value)[:40]}")


def model_defaults(meta: dict) -> dict:
    """The settings a model is used with unless the artist chooses others: its prompt format's
    (`FORMAT_DEFAULTS`), overridden by its gridar.json "defaults" (checked by `check_meta`); the keys are
    guidance, temperature and, where given, top_k, top_p, layout_scale and threshold. Torch-free: the CLI's
    parser reads it before a model loads."""
    fmt = meta.get("prompt_format", "janus-pro")
    return {**FORMAT_DEFAULTS.get(fmt, FORMAT_DEFAULTS["janus-pro"]), **(meta.get("defaults") or {})}


# What a setting is when neither the artist nor the model says (`fill_defaults`): top-k and top-p off, the layout
# scale the paper's (None: equal to the guidance's), the verifier's own threshold (None).
ENGINE_DEFAULTS: dict = {"top_k": 0, "top_p": 1.0, "layout_scale": None, "threshold": None}


def fill_defaults(given: dict, meta: dict) -> dict:
    """Settings the artist gave (a value, or None where not given; keys as `DEFAULT_FIELDS`) completed with the
    model's defaults (`model_defaults`), then the engine's (`ENGINE_DEFAULTS`)."""
    own = model_defaults(meta)
    return {key: given[key] if given.get(key) is not None else own.get(key, ENGINE_DEFAULTS.get(key))
            for key in DEFAULT_FIELDS}


def check_meta(meta: object, file: Path) -> dict:
    """A gridar.json's content -> the dict, or `ModelLoadError` naming the field that is wrong. Every field the app
    reads is checked here, in one place; unknown fields (notes such as "training") are kept and ignored."""
    from .prompt_language import LANGUAGES
    if not isinstance(meta, dict):
        raise ModelLoadError(f"'{file}' holds a JSON {type(meta).__name__}, not an object; the folder may be damaged")
    if "prompt_format" in meta and meta["prompt_format"] not in PROMPT_FORMATS:
        raise ModelLoadError(f"'{file}': prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got "
                             f"{json.dumps(meta['prompt_format'])[:40]}")
    if meta.get("prompt_language") is not None and meta["prompt_language"] not in LANGUAGES:
        raise ModelLoadError(f"'{file}': prompt_language must be one of {', '.join(LANGUAGES)} (or absent for any "
                             f"text), got {json.dumps(meta['prompt_language'])[:40]}")
    if "canvas_colour" in meta:
        _colour(file, "canvas_colour", meta["canvas_colour"])
    for key in ("name", "prompt_hint"):
        if key in meta:
            _text(file, key, meta[key])
    if "edit_verify" in meta and not isinstance(meta["edit_verify"], bool):
        raise ModelLoadError(f"'{file}': edit_verify must be true or false, got {json.dumps(meta['edit_verify'])[:40]}")
    if "edit_generation" in meta:
        eg = meta["edit_generation"]
        if not isinstance(eg, dict):
            raise ModelLoadError(f"'{file}': edit_generation must be an object such as {{\"format\": "
                                 f"\"holed-source\"}}, got {json.dumps(eg)[:40]}")
        if "format" in eg and eg["format"] != "holed-source":
            raise ModelLoadError(f"'{file}': edit_generation.format must be \"holed-source\", got "
                                 f"{json.dumps(eg['format'])[:40]}")
        if "hole_fill" in eg:
            _colour(file, "edit_generation.hole_fill", eg["hole_fill"])
        if "words" in eg:
            _text(file, "edit_generation.words", eg["words"], 200)
    for key in ("verify_threshold", "verify_threshold_edit"):
        if key in meta:
            _threshold_record(file, key, meta[key])
    if "defaults" in meta:
        _defaults(file, meta["defaults"])
    if "edit_value" in meta:
        ev = meta["edit_value"]
        if not isinstance(ev, dict):
            raise ModelLoadError(f"'{file}': edit_value must be an object")
        if "file" in ev:
            name = ev["file"]
            if not isinstance(name, str) or not name or Path(name).name != name:
                raise ModelLoadError(f"'{file}': edit_value.file must be a file name inside the model folder")
        for key in ("threshold", "penalty", "final_weight"):
            if key in ev and (isinstance(ev[key], bool) or not isinstance(ev[key], (int, float))
                              or not math.isfinite(ev[key])):
                raise ModelLoadError(f"'{file}': edit_value.{key} must be a finite number")
        if "candidate_success" in ev:
            _probability(file, "edit_value.candidate_success", ev["candidate_success"])
    return meta


def read_model_meta(folder: str | Path) -> dict:
    """The folder's gridar.json, checked (`check_meta`); {} when the folder has none (e.g. Janus-Pro)."""
    file = Path(folder).expanduser() / "gridar.json"
    if not file.is_file():
        return {}
    return check_meta(read_json_file(file), file)


def check_model_folder(folder: str | Path) -> dict:
    """Validate a Janus folder without loading weights (config.json's fields, the weights' format, the tokenizer
    files); returns its config dict or raises `ModelLoadError` naming the file and what is wrong."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model folder '{path}' does not exist")
    if not path.is_dir():
        raise ModelLoadError(f"'{path}' is a file; choose the folder that holds config.json and the weights")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelLoadError(f"'{path}' has no config.json: it is not a transformers model folder")
    cfg = check_config(read_json_file(cfg_file), cfg_file)
    if not ((path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()):
        bins = sorted(p.name for p in path.glob("*.bin"))
        others = sorted(p.name for p in path.glob("*.safetensors"))
        if others:
            raise ModelLoadError(f"'{path}' has {', '.join(others[:2])} but no model.safetensors (or "
                                 "model.safetensors.index.json for split weights), the names transformers loads")
        if bins:
            raise ModelLoadError(
                f"'{path}' holds only {', '.join(bins[:2])}{' ...' if len(bins) > 2 else ''}; GridAR loads "
                "safetensors only (a .bin file is a pickle that can run code): convert it on a machine you trust "
                "with transformers (from_pretrained, then save_pretrained, which writes model.safetensors)")
        raise ModelLoadError(f"'{path}' has no .safetensors weights (model.safetensors)")
    if not ((path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists()):
        raise ModelLoadError(f"'{path}' has no tokenizer files (tokenizer.json / tokenizer_config.json); copy the "
                             "whole model folder, processor files included")
    return cfg
