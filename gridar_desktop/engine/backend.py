"""A Janus / Janus-Pro backend on transformers' native `JanusForConditionalGeneration`, loaded from a local folder.

Only local files are read (HF_HUB_OFFLINE is forced by the package before transformers is imported, and every load
passes `local_files_only=True`). The backend exposes the pieces the decoding loop needs, not a `generate`: text and
image-token embeddings, one language-model forward over a carried cache, the image head, and tokens <-> pixels.

An optional `gridar.json` in the folder carries app metadata (the demo model's prompt format and canvas colour);
Janus-Pro folders need none.
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .defaults import DTYPE_CHOICES  # noqa: F401 - torch-free there, for the CLI's parser; offered from here too
from .errors import ModelLoadError, PromptNotUnderstood
from .memory_plan import DTYPE_NAMES
from .models import check_model_folder  # noqa: F401 - the folder check lives with the JSON checks (torch-free)

log = logging.getLogger("gridar.engine")

JANUS_PRO_TEMPLATE = "<|User|>: {prompt}\n\n<|Assistant|>:"

# Latent rows decoded beyond each side of a preview's rows (`JanusBackend.decode_rows`). benchmarks/cpu_precision.py,
# mean difference from the full decode (of 255) at margins 1 / 2 / 3: the trained demo VQ, the last of 4 of 8 rows,
# 8.5 / 4.2 / 1.4; random weights at real width (24 x 24 -> 384 px), the last of 12 rows of a partial image,
# 52 / 41 / 34 (a random decoder mixes the whole image far more than a trained one). With margin 3 a one-row
# preview at 384 px cost 0.20 of a full decode.
PREVIEW_MARGIN = 3


@dataclass(frozen=True)
class ModelInfo:
    folder: str
    rows: int                   # token rows of an image
    cols: int                   # token columns
    image_size: int             # pixels per side
    codebook: int               # image-token vocabulary
    generator_params: int       # weights used per generated token (language model without its embedding, image
                                # head and image-embedding aligner)
    prompt_format: str          # "plain" (demo model) or "janus-pro"


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda, then mps, then cpu. An unavailable device raises `ModelLoadError` naming it."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ModelLoadError(f"unknown device '{device}'; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device '{device}' was asked for, but this torch build sees no CUDA GPU "
                                 f"(torch {torch.__version__}); use --device cpu or install the CUDA build "
                                 "(GRIDAR_TORCH=cuda make install)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelLoadError(f"device '{device}' does not exist: {torch.cuda.device_count()} CUDA GPU(s) found")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError(f"device '{device}' was asked for, but MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ModelLoadError(f"unsupported device '{device}'; use auto, cpu, cuda or mps")
    return dev


# On a CPU, "auto" runs the language model in bfloat16 from this many weights per decoding step on (layers only),
# where the CPU has fast bfloat16 (`cpu_has_fast_bf16`). The demo (4.3M) and the test models stay float32: bfloat16
# changed the demo's sampled tokens (2 of 256 in one seeded image of 4 candidates), and its recorded numbers are
# float32's. Janus-Pro-1B reads 1.2B, the 2-layer real-shape test model 103M.
CPU_BF16_MIN_STEP_PARAMS = 50_000_000


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bfloat16 matrix products at least as fast as float32: oneDNN's bfloat16 support
    (AVX512-class or newer). benchmarks/cpu_precision.py, one thread, Janus-Pro-1B width: with it (AVX512 with
    native bfloat16) a decoding step took 0.20x and a 4 x 650-token prefill 0.26x of float32's time; with torch
    limited to AVX2 (where this is False) 1.03x and 3.9x."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):           # a build without oneDNN (e.g. some ARM wheels)
        return False


@dataclass(frozen=True)
class Precision:
    """The dtypes a loaded Janus model runs in: `lm` for the language model, its embeddings, image head and KV
    cache; `pixels` for the VQ model (encoder, quantizer, decoder) and the understanding vision encoder + aligner.
    They differ only on a CPU, where convolutions in half precision can be hundreds of times slower than in float32
    (benchmarks/cpu_precision.py, torch limited to AVX2: 4 token rows of the 384 px VQ decoder took 814 s in
    bfloat16, 2.8 s in float32) while the language model's steps may gain from bfloat16 (`cpu_has_fast_bf16`)."""
    lm: torch.dtype
    pixels: torch.dtype

    @property
    def mixed(self) -> bool:
        return self.lm != self.pixels

    def words(self) -> str:
        """'bfloat16' or 'bfloat16 (image decoder and vision encoder float32)'."""
        lm = _dtype_name(self.lm)
        return lm if not self.mixed else f"{lm} (image decoder and vision encoder {_dtype_name(self.pixels)})"


def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


def lm_step_params(config: dict) -> int | None:
    """Weights a decoding step reads in the language model's layers, from a config.json dict (None when its text
    config lacks the sizes): what decides whether bfloat16 pays on a CPU."""
    text = config.get("text_config") or config.get("language_config") or {}
    try:
        h, inter, layers, heads = (int(text[k]) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                           "num_attention_heads"))
        kv = int(text.get("num_key_value_heads") or heads)
        head_dim = int(text.get("head_dim") or h // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return layers * (2 * h * heads * head_dim + 2 * h * kv * head_dim + 3 * h * inter)


def resolve_precision(dtype: str, device: torch.device | str, config: dict | None = None) -> Precision:
    """A dtype choice (`DTYPE_CHOICES` name or alias: fp32, bf16, fp16) on `device` -> the `Precision` a Janus
    model is loaded in. `config` (the folder's config.json dict) lets "auto" on a CPU pick bfloat16 for a large
    language model; without it "auto" on a CPU is float32. An unknown name is a `ModelLoadError`."""
    dev = torch.device(device)
    if dtype == "auto":
        if dev.type == "cuda":
            return Precision(torch.bfloat16, torch.bfloat16)
        if dev.type == "mps":
            return Precision(torch.float16, torch.float16)
        step = lm_step_params(config) if config is not None else None
        large = step is not None and step >= CPU_BF16_MIN_STEP_PARAMS
        lm = torch.bfloat16 if large and cpu_has_fast_bf16() else torch.float32
        return Precision(lm, torch.float32)
    if dtype not in DTYPE_NAMES:
        raise ModelLoadError(f"unknown dtype '{dtype}'; use {', '.join(name for name, _ in DTYPE_CHOICES)}")
    lm = DTYPE_NAMES[dtype]
    return Precision(lm, torch.float32 if dev.type == "cpu" else lm)


def resolve_dtype(dtype: str, device: torch.device, config: dict | None = None) -> torch.dtype:
    """The language model's dtype of `resolve_precision` (what the KV cache and a judging model load in)."""
    return resolve_precision(dtype, device, config).lm


def dtype_words(dtype: str, device: torch.device | str = "cpu", config: dict | None = None) -> str:
    """What the dtype choice `dtype` means on `device` (and for the model of `config`), in a few words for the
    studio: 'bfloat16 (image decoder and vision encoder float32)'. Without `config`, "auto" on a CPU names both of
    its outcomes. An unknown name is a `ModelLoadError`."""
    if dtype == "auto" and config is None and torch.device(device).type == "cpu":
        large = resolve_precision("auto", device, {"text_config": {
            "hidden_size": 1, "intermediate_size": CPU_BF16_MIN_STEP_PARAMS, "num_hidden_layers": 1,
            "num_attention_heads": 1}})
        if large.mixed:
            return f"float32 for a small model, {large.words()} for a large one"
    return resolve_precision(dtype, device, config).words()


def set_pixel_precision(model, dtype: torch.dtype) -> None:
    """Cast the modules that work on pixels (the VQ model, the understanding vision encoder and its aligner) of a
    `JanusForConditionalGeneration` to `dtype`, leaving the language model, its embeddings and the image head as
    they are. Their inputs are cast to their weights' dtype where they enter (`decode_tokens`, `encode_images`,
    `image_features`) and their outputs to the language model's where they leave (`embed_text`)."""
    inner = model.model
    for mod in (inner.vqmodel, inner.vision_model, inner.aligner):
        mod.to(dtype)


def continue_codes(codes: torch.Tensor, k: int, cols: int, hidden: torch.Tensor | None = None) -> torch.Tensor:
    """(n, total) codes whose first k are drawn -> the same codes with every hidden position of the row after the cut
    (positions k .. k+cols-1) taking the code directly above it. `hidden` (n, total) bool marks what is not drawn
    yet (default: every position from k on; an edit passes its redrawn positions only).

    Why: the VQ decoder is not local (attention, GroupNorm), so drawn rows next to empty-canvas codes come out tinted
    and softened (a red apex decoded orange), which the verifier, the judge's partial mode and the artist would all
    read as drawn content. Continuing the last drawn row for one row keeps the drawn rows close to how the finished
    image shows them (`benchmarks/verifier_quality.py`, `agree_with_partial_truth`: the judge's partial reading of the
    drawn rows agreed with its reading of the finished image's rows 0.91 / 0.89 of the time at 2 / 4 rows, against
    0.82 / 0.86 with blank codes). The continued row is never shown:
    `JanusBackend.paint_undrawn` paints undrawn patches as the empty canvas."""
    total = codes.shape[1]
    if not cols <= k < total:
        return codes
    end = min(total, k + cols)
    above = codes[:, k - cols:end - cols]                        # all drawn: end - cols <= k
    out = codes.clone()
    out[:, k:end] = above if hidden is None else torch.where(hidden[:, k:end].to(codes.device), above, codes[:, k:end])
    return out


def partial_codes(tokens: torch.Tensor, total: int, cols: int, blank: int) -> torch.Tensor:
    """(n, k) drawn codes -> (n, total) codes to decode a partial candidate from: the next `cols` positions repeat
    the codes directly above them (`continue_codes`), everything later is the empty-canvas code `blank`."""
    n, k = tokens.shape
    full = torch.full((n, total), blank if k < total else 0, dtype=torch.long, device=tokens.device)
    full[:, :k] = tokens
    return continue_codes(full, k, cols)


def partial_edit_codes(codes: torch.Tensor, hidden: torch.Tensor, k: int, cols: int, blank: int) -> torch.Tensor:
    """(n, total) codes of a partial edit (drawn, or the source's) -> the codes to decode it from: the redrawn
    positions not drawn yet (`hidden`, (n, total) bool, none before k) get the empty-canvas code `blank`, except in
    the row after the cut, which repeats the codes above it (`continue_codes`). The source's old object inside the
    mask would bleed into the decode of the drawn rows and show the verifier, the reformulator and the artist what
    is being replaced; an empty canvas does not."""
    hidden = hidden.to(codes.device)
    return continue_codes(torch.where(hidden, torch.full_like(codes, blank), codes), k, cols, hidden)


def quiet_transformers() -> None:
    """Keep transformers' load reports and progress bars off stderr unless it is a terminal: the CLI's stderr is one
    line on error, and a log or a pipe should not fill with bars."""
    import os
    import sys

    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        hf_logging.disable_progress_bar()


def _first_line(e: BaseException) -> str:
    """An exception's message cut to its first line: library errors can run to dozens of lines."""
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else e.__class__.__name__


class JanusBackend:
    """The generator side of a Janus model: embeddings, one LM forward, the image head, VQ decode and encode."""

    def __init__(self, model, processor, device: torch.device | str = "cpu", folder: str = "<in memory>",
                 meta: dict | None = None) -> None:
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = torch.device(device)
        self.meta = meta or {}
        cfg = model.config
        grid = cfg.vision_config.image_size // cfg.vision_config.patch_size
        factor = 2 ** (len(cfg.vq_config.channel_multiplier) - 1)
        lm = model.model.language_model
        emb = lm.get_input_embeddings().weight.numel()
        gen_params = (sum(p.numel() for p in lm.parameters()) - emb
                      + sum(p.numel() for p in model.model.generation_head.parameters())
                      + sum(p.numel() for p in model.model.generation_aligner.parameters()))
        self.info = ModelInfo(folder=folder, rows=grid, cols=grid, image_size=grid * factor,
                              codebook=cfg.vq_config.num_embeddings, generator_params=gen_params,
                              prompt_format=self.meta.get("prompt_format", "janus-pro"))
        tok = self.tokenizer
        self.bos_id = tok.bos_token_id if tok.bos_token_id is not None else model.generation_config.bos_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else model.generation_config.pad_token_id
        self.boi_id = tok.convert_tokens_to_ids(getattr(tok, "boi_token", None) or "<begin_of_image>")
        self.eoi_id = tok.convert_tokens_to_ids(getattr(tok, "eoi_token", None) or "<end_of_image>")
        self.image_id = cfg.image_token_id
        self.n_image_features = cfg.vision_config.num_image_tokens
        self.vision_params = (sum(p.numel() for p in model.model.vision_model.parameters())
                              + sum(p.numel() for p in model.model.aligner.parameters()))
        self._blank: int | None = None
        self._lean: bool | None = None           # decoding steps through engine.lean (decided on first use)

    # -- loading -----------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path, device: str = "auto", dtype: str = "auto") -> "JanusBackend":
        """Load a Janus / Janus-Pro folder offline; every failure is a `ModelLoadError` naming folder and problem.

        `device`: auto, cpu, cuda, cuda:N or mps (`resolve_device`). `dtype`: a `DTYPE_CHOICES` name (auto, float32,
        bfloat16, float16) or an alias (fp32, bf16, fp16), resolved with the folder's config by
        `resolve_precision`: on a CPU a half-precision language model comes with a float32 VQ and vision encoder."""
        from .models import read_model_meta
        config = check_model_folder(folder)
        path = Path(folder).expanduser()
        meta = read_model_meta(path)            # checked before the weights: a bad gridar.json costs no load
        dev = resolve_device(device)
        precision = resolve_precision(dtype, dev, config)
        from transformers import AutoProcessor, JanusForConditionalGeneration
        quiet_transformers()
        try:
            processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - any failure here means unusable processor files
            raise ModelLoadError(f"could not load the processor/tokenizer of '{path}': {_first_line(e)}") from None
        try:
            # use_safetensors: never open a pickle (.bin), even when one lies next to the safetensors
            # loaded in the language model's dtype, the pixel modules cast up after: a bf16 checkpoint (Janus-Pro's)
            # loses nothing, and the whole model is never held in float32 at once
            model = JanusForConditionalGeneration.from_pretrained(path, local_files_only=True, dtype=precision.lm,
                                                                  use_safetensors=True)
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"could not load the weights in '{path}' ({e.__class__.__name__}: "
                                 f"{_first_line(e)}). The files may be incomplete or corrupt: copy the model folder "
                                 "again") from None
        if precision.mixed:
            set_pixel_precision(model, precision.pixels)
        try:
            model.to(dev)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
            raise ModelLoadError(f"could not move the model to {dev}: {_first_line(e)}") from None
        log.info("loaded %s on %s (%s)", path, dev, precision.words())
        return cls(model, processor, dev, str(path), meta)

    @property
    def precision(self) -> Precision:
        """The dtypes the loaded model runs in (language model; VQ and vision encoder), read off its weights."""
        inner = self.model.model
        return Precision(next(inner.language_model.parameters()).dtype, next(inner.vqmodel.parameters()).dtype)

    # -- prompts -----------------------------------------------------------------------------------------------
    @property
    def prompt_language(self) -> str | None:
        """The prompt language the model folder declares (gridar.json "prompt_language"); None: any text."""
        lang = self.meta.get("prompt_language")
        return lang if isinstance(lang, str) else None

    @property
    def defaults(self) -> dict:
        """The settings this model is used with unless the artist chooses others (`models.model_defaults`:
        guidance, temperature, ...; Janus-Pro's guidance 5 for a folder without gridar.json)."""
        from .models import model_defaults
        return model_defaults({**self.meta, "prompt_format": self.info.prompt_format})

    @property
    def display_name(self) -> str:
        return self.meta.get("name") or f"the model in '{self.info.folder}'"

    @property
    def max_positions(self) -> int | None:
        """How many positions the language model reads (prompt plus image tokens); None when the config says not."""
        cfg = self.model.config
        text = getattr(cfg, "text_config", None) or getattr(cfg, "language_config", None)
        n = getattr(text, "max_position_embeddings", None)
        return n if isinstance(n, int) and n > 0 else None

    def check_prompt(self, text: str, edit: bool = False) -> str:
        """The prompt as this model reads it (normalised by its language), or `PromptNotUnderstood` naming the
        model and the reason: empty, not in the model's prompt language, unknown words, or too long for the context
        together with the image tokens a run needs (`edit`: an edit-conditioned row also carries the source)."""
        from .prompt_language import check_prompt
        try:
            prompt = check_prompt(self.prompt_language, text)
        except PromptNotUnderstood as e:
            raise PromptNotUnderstood(f"{self.display_name} cannot read this prompt: {e}") from None
        ids = self.edit_prompt_ids(prompt) if edit and self.edit_conditioned else self.prompt_ids(prompt)
        limit = self.max_positions
        image = self.info.rows * self.info.cols
        if limit is not None and len(ids) + image - 1 > limit:
            raise PromptNotUnderstood(
                f"the prompt is {len(ids):,} tokens long; {self.display_name} reads {limit:,} positions, {image} of "
                f"which the image needs, so at most {limit - image + 1:,} tokens are left for the prompt: shorten it")
        return prompt

    def unknown_words(self, prompt: str) -> list[str]:
        """Words the tokenizer maps to its unknown token (a word-level tokenizer like the demo model's)."""
        unk = self.tokenizer.unk_token_id
        if unk is None:
            return []
        words = re.findall(r"[^\s,.]+", prompt)
        return list(dict.fromkeys(w for w in words if unk in self.tokenizer(w, add_special_tokens=False).input_ids))

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of a generation prompt, ending with the begin-of-image token."""
        bad = self.unknown_words(prompt)
        if bad:
            hint = self.meta.get("prompt_hint", "")
            raise PromptNotUnderstood(f"{self.display_name} does not know the word{'s' if len(bad) > 1 else ''} "
                                      f"{', '.join(repr(b) for b in bad)}" + (f". {hint}" if hint else ""))
        if self.info.prompt_format == "plain":
            # the shapes grammar ignores case and a final full stop; so does the word-level tokenizer's input
            text = prompt.strip().lower().rstrip(".").strip()
        else:
            text = JANUS_PRO_TEMPLATE.format(prompt=prompt.strip())
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return [self.bos_id] + list(ids) + [self.boi_id]

    def uncond_ids(self, ids: list[int]) -> list[int]:
        """Janus's unconditional row: the same length, everything but BOS and BOI replaced by the pad token. An
        edit-conditioned row (`edit_prompt_ids`) keeps its image and marker: only the prompt words are padded."""
        head = self._edit_head() if self.edit_conditioned else None
        if head is not None and ids[:len(head)] == head:
            return head + [self.pad_id] * (len(ids) - len(head) - 1) + ids[-1:]
        return [t if t in (self.bos_id, self.boi_id) else self.pad_id for t in ids]

    # -- edit-conditioned generation (`training.edit_gen`) -------------------------------------------------------
    @property
    def edit_conditioned(self) -> bool:
        """Whether this model generates edits given the source (its gridar.json names `edit_generation`); other
        models edit by continuing the kept codes only."""
        return (self.meta.get("edit_generation") or {}).get("format") == "holed-source" \
            and self.info.prompt_format == "plain"

    @property
    def hole_fill(self) -> tuple[int, int, int]:
        """The grey the model was trained to read as the redrawn part of an edit's source."""
        from .edit import HOLE_FILL
        return tuple((self.meta.get("edit_generation") or {}).get("hole_fill", HOLE_FILL))

    def _edit_head(self) -> list[int]:
        words = (self.meta.get("edit_generation") or {}).get("words", "target :")
        return ([self.bos_id, self.boi_id] + [self.image_id] * self.n_image_features + [self.eoi_id]
                + list(self.tokenizer(words, add_special_tokens=False).input_ids))

    def edit_prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of an edit-conditioned generation row: [BOS, BOI, IMAGE * F, EOI, "target", ":", prompt...,
        BOI]; the IMAGE positions take the features of the conditioning image (`image_features`)."""
        ids = self.prompt_ids(prompt)                  # unknown words: the same message as for a generation
        return self._edit_head() + ids[1:]

    @torch.inference_mode()
    def image_features(self, images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
        """uint8 (n, H, W, 3) (or n such images) -> (n, F, hidden): the understanding encoder's features, in the
        language model's width (what IMAGE positions read: the roles' views and an edit's conditioning)."""
        pv = self.processor.image_processor(images=list(images), return_tensors="pt").pixel_values
        pv = pv.to(self.device, next(self.model.model.vision_model.parameters()).dtype)
        return self.model.model.get_image_features(pv, return_dict=True).pooler_output

    # -- the generator's pieces --------------------------------------------------------------------------------
    def embed_text(self, ids: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """(R, L) token ids -> (R, L, H). With `features` (R', F, H), the image placeholder positions of the rows
        that have them (R' rows, in order) take those features."""
        embeds = self.model.get_input_embeddings()(ids)
        if features is None:
            return embeds
        place = ids == self.image_id
        return embeds.masked_scatter(place.unsqueeze(-1), features.to(embeds.dtype))

    def embed_image(self, tokens: torch.Tensor) -> torch.Tensor:
        """(R, L) image codes -> (R, L, H), through the generation embeddings and aligner."""
        return self.model.prepare_embeddings_for_image_generation(tokens)

    def step_forward(self, embeds: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor, cache):
        """A decoding step's forward: the lean written-out Llama forward when the model allows (`engine.lean`),
        else the library's."""
        if self._lean is None:
            from . import lean
            self._lean = lean.supports(self.model.model.language_model)
        if self._lean:
            from . import lean
            return lean.forward(self.model.model.language_model, embeds, mask, positions, cache)
        return self.forward(embeds, mask, positions, cache)

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor, cache):
        """One language-model forward over `cache`; returns the hidden states (R, L, H)."""
        out = self.model.model.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                              cache=cache, use_cache=True)
        return out.last_hidden_state

    @torch.inference_mode()
    def image_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(R, H) -> (R, codebook) float32 logits of the next image token."""
        return self.model.model.generation_head(hidden).float()

    # -- tokens <-> pixels -------------------------------------------------------------------------------------
    @property
    def canvas_colour(self) -> tuple[int, int, int]:
        return tuple(self.meta.get("canvas_colour", (255, 255, 255)))

    @property
    def blank_token(self) -> int:
        """The code of an empty canvas patch: fills rows not drawn yet, so a partial decode shows the drawn rows
        over an empty canvas (tiling the drawn rows, as the paper's code does, would show objects that are not
        there; zeros would show whatever code 0 means)."""
        if self._blank is None:
            s = self.info.image_size
            flat = np.broadcast_to(np.array(self.canvas_colour, np.uint8), (1, s, s, 3))
            self._blank = int(torch.mode(self.encode_images(flat).flatten()).values)
        return self._blank

    @torch.inference_mode()
    def decode_tokens(self, tokens: torch.Tensor) -> np.ndarray:
        """(n, k) codes, k <= rows*cols (the first k in raster order) -> uint8 (n, H, W, 3). A partial candidate
        (k < rows*cols) is decoded from `partial_codes` and its patches not drawn yet are shown as the empty
        canvas."""
        n, k = tokens.shape
        total = self.info.rows * self.info.cols
        if k > total:
            raise ValueError(f"{k} tokens given, an image has {total}")
        # the blank code costs a VQ encode of the empty canvas: found only when a partial candidate needs it
        full = partial_codes(tokens.to(self.device), total, self.info.cols, self.blank_token if k < total else 0)
        vq = self.model.model.vqmodel
        px = vq.decode(full)                                             # (n, 3, H, W) in about [-1, 1]
        px = ((px.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        img = px.permute(0, 2, 3, 1).cpu().numpy()
        if k < total:
            hidden = np.zeros((n, total), bool)
            hidden[:, k:] = True
            self.paint_undrawn(img, hidden)
        return img

    @torch.inference_mode()
    def decode_rows(self, tokens: torch.Tensor, rows: int, first: int = 0,
                    margin: int | None = None) -> np.ndarray:
        """A preview of token rows `first` .. `rows`-1 only: (n, k) codes (the first k in raster order, as for
        `decode_tokens`) -> uint8 (n, H, W, 3) with those rows decoded and everything else the empty canvas (also
        the patches of those rows not drawn yet). It decodes the latent rows `first - margin` .. `rows + margin`
        only, from the same codes `decode_tokens` would use, so it costs about (rows - first + 2 * margin) / rows
        of a full decode (`first` = 0: rows + margin).

        Why a margin and not exact: a decoder convolution needs the rows around it, but the VQ decoder's
        receptive field is nearly the whole image (about 18 latent rows at 24 x 24) and its attention and
        GroupNorm layers are global, so no finite window is exact; `PREVIEW_MARGIN` rows on each side keep the
        shown rows close to the full decode's (measured in `benchmarks/cpu_precision.py`; tested in
        tests/test_backend_dtype.py). When the window reaches both edges the result is `decode_tokens`'s."""
        n, k = tokens.shape
        R, C = self.info.rows, self.info.cols
        total = R * C
        if k > total:
            raise ValueError(f"{k} tokens given, an image has {total}")
        margin = PREVIEW_MARGIN if margin is None else max(0, int(margin))
        first, rows = max(0, int(first)), min(R, int(rows))
        size, f = self.info.image_size, self.info.image_size // R
        out = np.empty((n, size, size, 3), np.uint8)
        out[:] = self.canvas_colour
        if rows <= first:
            return out
        lo, hi = max(0, first - margin), min(R, rows + margin)
        full = partial_codes(tokens.to(self.device), total, C, self.blank_token if k < total else 0)
        px = self._decode_latent_rows(full[:, lo * C:hi * C], hi - lo)          # (n, 3, (hi - lo) * f, W)
        px = ((px.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out[:, first * f:rows * f] = px[:, (first - lo) * f:(rows - lo) * f]
        hidden = np.zeros((n, total), bool)
        hidden[:, k:] = True
        return self.paint_undrawn(out, hidden)

    def _decode_latent_rows(self, codes: torch.Tensor, h: int) -> torch.Tensor:
        """(n, h*cols) codes of h whole token rows -> the VQ decoder's (n, 3, h*f, W) pixels: `vq.decode` (which
        accepts only the full grid) written out for any number of rows, with the same arithmetic."""
        vq = self.model.model.vqmodel
        n = codes.shape[0]
        emb = F.normalize(vq.quantize.embedding(codes), p=2, dim=-1)                # (n, h*cols, D)
        emb = emb.view(n, h, self.info.cols, -1).permute(0, 3, 1, 2).contiguous()
        return vq.decoder(vq.post_quant_conv(emb))

    def decode_partial_edit(self, codes: torch.Tensor, hidden: torch.Tensor, k: int) -> np.ndarray:
        """(n, rows*cols) codes of partial edits drawn up to position k (kept codes everywhere else), `hidden`
        (n, rows*cols) bool the redrawn positions not drawn yet (none before k) -> uint8 (n, H, W, 3): decoded by
        the partial-edit rule (`partial_edit_codes`), the hidden patches painted as the empty canvas."""
        full = partial_edit_codes(codes, hidden, k, self.info.cols, self.blank_token)
        return self.paint_undrawn(self.decode_tokens(full), hidden.cpu().numpy())

    def paint_undrawn(self, images: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        """Paint, in place, the patches marked in `hidden` (n, rows*cols) bool as the empty canvas: what is not drawn
        yet is never shown, whatever codes its decode used. Returns `images` (n, H, W, 3)."""
        from .edit import pixel_mask
        images[pixel_mask(hidden, self.info.rows, self.info.cols, images.shape[1])] = self.canvas_colour
        return images

    @torch.inference_mode()
    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (n, H, W, 3) at the model's resolution -> (n, rows*cols) codes.

        L2 rule (as the original Janus VQ with codebook_l2_norm): the nearest code by cosine of the normalised
        encoder output and codebook. transformers' quantizer takes an unnormalised Euclidean argmin instead; the two
        agree when the codebook is stored normalised (the demo model) and can differ for other checkpoints, while
        `decode` always normalises, so this rule is the one that round-trips."""
        vq = self.model.model.vqmodel
        x = torch.as_tensor(np.ascontiguousarray(images), device=self.device)
        x = x.permute(0, 3, 1, 2).to(next(vq.parameters()).dtype) / 127.5 - 1.0
        z = F.normalize(vq.quant_conv(vq.encoder(x)).float(), dim=1)                 # (n, D, rows, cols)
        codebook = F.normalize(vq.quantize.embedding.weight.float(), dim=-1)         # (K, D)
        return torch.einsum("ndhw,kd->nhwk", z, codebook).argmax(-1).flatten(1)
