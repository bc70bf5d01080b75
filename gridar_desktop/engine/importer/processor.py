"""The original folder's tokenizer and image-processor files -> a transformers `JanusProcessor`.

The original ships tokenizer.json (the byte-level BPE the language model was trained with), tokenizer_config.json,
special_tokens_map.json, preprocessor_config.json (DeepSeek's `VLMImageProcessor`) and processor_config.json
(`VLChatProcessor`). tokenizer.json is used as it is, so every prompt encodes to the same ids as in the original;
the special tokens, the image geometry and the conversation format become the `JanusProcessor`'s."""
from __future__ import annotations

from pathlib import Path

from .layout import ModelImportError, read_json_object

# DeepSeek's "deepseek" conversation format (janus/utils/conversation.py), written as a chat template:
# "<|User|>: <image_placeholder>\n{text}\n\n<|Assistant|>: {reply}<end of sentence>...", a system text first.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set role = message['role'] | lower -%}"
    "{%- if role == 'user' -%}{{ '<|User|>: ' }}"
    "{%- elif role == 'assistant' -%}{{ '<|Assistant|>: ' }}"
    "{%- endif -%}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}<image_placeholder>{%- if not loop.last %}{{ '\n' }}{% endif -%}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] | trim }}{%- if not loop.last %} {% endif -%}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- if role == 'assistant' -%}{{ eos_token }}{%- else -%}{{ '\n\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|Assistant|>:{%- endif -%}"
)
IMAGE_TOKENS = {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"}
DEFAULT_PAD = "<｜▁pad▁｜>"                   # VLChatProcessor's pad_tag


def _json(path: Path, name: str, required: bool) -> dict:
    file = path / name
    if not file.is_file():
        if required:
            raise ModelImportError(f"'{path}' has no {name}; copy the whole model folder, tokenizer and processor "
                                   "files included")
        return {}
    return read_json_object(file)


def _token(value) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def read_processor_parts(path: Path, max_length: int | None):
    """(image processor, tokenizer, token ids {bos, eos, pad, image, boi, eoi}, processor_config.json's content)
    from an original folder's files; `max_length` is the fallback context length."""
    from transformers import JanusImageProcessorPil, PreTrainedTokenizerFast

    if not (path / "tokenizer.json").is_file():
        raise ModelImportError(f"'{path}' has no tokenizer.json; copy the whole model folder, tokenizer files "
                               "included")
    tok_cfg = _json(path, "tokenizer_config.json", False)
    special = _json(path, "special_tokens_map.json", False)
    pre = _json(path, "preprocessor_config.json", True)
    proc_cfg = _json(path, "processor_config.json", False)
    names = {role: _token(special.get(f"{role}_token")) or _token(tok_cfg.get(f"{role}_token"))
             for role in ("bos", "eos", "pad", "unk")}
    names["pad"] = names["pad"] or _token(proc_cfg.get("pad_tag")) or DEFAULT_PAD
    image_tokens = dict(IMAGE_TOKENS, image_token=_token(proc_cfg.get("image_tag")) or IMAGE_TOKENS["image_token"])
    extra = [t for t in (special.get("additional_special_tokens") or []) if isinstance(t, (str, dict))]
    limit = tok_cfg.get("model_max_length")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0 or limit > 10 ** 7:
        limit = max_length or 4096
    try:
        fast = PreTrainedTokenizerFast(
            tokenizer_file=str(path / "tokenizer.json"), model_max_length=limit, padding_side="left",
            clean_up_tokenization_spaces=False, additional_special_tokens=[_token(t) for t in extra if _token(t)],
            extra_special_tokens=image_tokens, **{f"{k}_token": v for k, v in names.items() if v})
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises its own exception types
        raise ModelImportError(f"could not read '{path / 'tokenizer.json'}': {str(e).splitlines()[0][:200]}; the "
                               "file may be damaged: download the folder again") from None
    vocab = fast.get_vocab()
    wanted = {"bos": names["bos"], "eos": names["eos"], "pad": names["pad"], "image": image_tokens["image_token"],
              "boi": image_tokens["boi_token"], "eoi": image_tokens["eoi_token"]}
    absent = [t for t in wanted.values() if t is None or t not in vocab]
    if absent:
        raise ModelImportError(f"the tokenizer of '{path}' has no {', '.join(repr(t) for t in absent)} token; a Janus "
                               "tokenizer has them all (the folder is another model or its tokenizer files are "
                               "damaged)")
    ids = {k: vocab[v] for k, v in wanted.items()}
    _keep_bos_rule(fast, tok_cfg, names["bos"], ids["bos"])

    size = pre.get("image_size", 384)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= 4096:
        raise ModelImportError(f"'{path / 'preprocessor_config.json'}': image_size must be a whole number of pixels")
    kwargs = {k: pre[k] for k in ("image_mean", "image_std", "min_size", "rescale_factor", "do_normalize")
              if k in pre}
    try:
        improc = JanusImageProcessorPil(size={"height": size, "width": size}, **kwargs)
    except (TypeError, ValueError) as e:
        raise ModelImportError(f"'{path / 'preprocessor_config.json'}' is not a Janus image processor's settings "
                               f"({str(e).splitlines()[0][:200]})") from None
    return improc, fast, ids, proc_cfg


def _keep_bos_rule(fast, tok_cfg: dict, bos: str, bos_id: int) -> None:
    """The original loads its tokenizer as a Llama tokenizer, which starts every encoded text with BOS unless
    add_bos_token is false; tokenizer.json alone may not say so, so the rule is written into it (the app's own
    prompts add BOS themselves, but the processor's understanding path relies on this)."""
    from tokenizers import processors
    llama = str(tok_cfg.get("tokenizer_class", "")).startswith("LlamaTokenizer")
    if not tok_cfg.get("add_bos_token", llama):
        return
    if fast("a").input_ids[:1] == [bos_id]:
        return                                  # tokenizer.json already adds it
    fast.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)])


def make_processor(improc, fast, num_image_tokens: int):
    from transformers import JanusProcessor
    # use_default_system_prompt: the original prepends its system prompt to understanding prompts
    return JanusProcessor(image_processor=improc, tokenizer=fast, chat_template=CHAT_TEMPLATE,
                          use_default_system_prompt=True, num_image_tokens=num_image_tokens)
