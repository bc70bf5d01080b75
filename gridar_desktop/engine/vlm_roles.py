"""The judging roles on any local image-text-to-text model (Qwen2.5-VL, LLaVA, MiniCPM-V style folders that
transformers supports natively), through AutoModelForImageTextToText + AutoProcessor + the folder's chat template.
No trust_remote_code: an architecture transformers does not know gets a clear error instead.

Probabilities come from the raw logits of one forward pass at the first answer position (P("yes") + P("Yes"), and
likewise "possible"); reformulations are greedy generations, validated against the original prompt.
Cost: 2 x all parameters x (batch x padded input length) per call, plus generated rows for reformulation.

Qwen2-VL / Qwen2.5-VL processors carry a video processor, which transformers builds only with torchvision. The
set-up installs the torchvision build matching torch; where it is missing or does not load (a build for another
torch), a processor whose class takes a video processor is built without one, with the image processor's PIL
backend: judging sends images only, and the PIL backend is transformers' own (its resizing may differ from the
torchvision one by rounding). Any other processor that needs torchvision is refused in one line saying how to
install it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .backend import resolve_device, resolve_dtype
from .cost import CostRecord
from .errors import ModelLoadError
from .janus_roles import masked_view
from .roles import PartialView, Prompts, answer_token_ids, per_item, validate_reformulation

VERIFY = ("The top {rows} of {total} rows of this image are drawn; the grey part below is not drawn yet. Prompt: "
          "\"{prompt}\". Could the finished image still match the prompt exactly? Say impossible only if what is "
          "visible already rules it out. Answer with one word: possible or impossible.")
# an edit's partial view: the whole canvas, only the redrawn pixels not drawn yet grey (`janus_roles.masked_view`)
VERIFY_EDIT = ("This image is being edited; the grey part is not redrawn yet. Prompt: \"{prompt}\". Could the finished "
               "image still match the prompt exactly? Say impossible only if what is visible already rules it out. "
               "Answer with one word: possible or impossible.")
SCORE = ("This image was generated from the prompt: \"{prompt}\". Does it accurately show the prompt? Answer yes or "
         "no.")
LAYOUT = ("The top of this image is drawn; the grey part is not drawn yet. Rewrite the prompt \"{prompt}\" so it "
          "describes the final layout: repeat it verbatim, then append after a comma a short clause saying where the "
          "objects are or will be, e.g. \", with the red circle at the top and the blue square at the bottom\". Never "
          "change objects, counts or colours. If unsure, repeat the prompt unchanged. Reply with the prompt only.")


class VLMRoles:
    def __init__(self, folder: str | Path, device: str = "auto", dtype: str = "auto",
                 max_new_tokens: int = 48) -> None:
        from .judges import judge_config
        path = Path(folder).expanduser()
        mtype = judge_config(path).get("model_type")
        from transformers import AutoModelForImageTextToText

        from .backend import _first_line, quiet_transformers
        quiet_transformers()
        self.processor = _load_processor(path, mtype)
        template = getattr(self.processor, "chat_template", None) or getattr(
            getattr(self.processor, "tokenizer", None), "chat_template", None)
        if not template:
            raise ModelLoadError(f"'{path}' has no chat template, so questions cannot be formatted for it; use an "
                                 "instruction-tuned VLM folder that ships chat_template.jinja or a template in its "
                                 "tokenizer config")
        self.device = resolve_device(device)
        try:
            # use_safetensors: never open a pickle (.bin), even when one lies next to the safetensors
            self.model = AutoModelForImageTextToText.from_pretrained(
                path, local_files_only=True, dtype=resolve_dtype(dtype, self.device),
                use_safetensors=True).to(self.device).eval()
        except ValueError as e:
            raise ModelLoadError(f"'{path}' holds a '{mtype}' model, which is not an image-text-to-text "
                                 f"architecture transformers supports natively ({_first_line(e)})") from None
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"could not load the weights in '{path}': {_first_line(e)}") from None
        self.tok = self.processor.tokenizer
        self.tok.padding_side = "left"
        self.params = sum(p.numel() for p in self.model.parameters())
        self.max_new_tokens = max_new_tokens
        self.answers = {w: answer_token_ids(self.tok, w) for w in ("yes", "possible")}
        self.name = path.name
        self.folder = path
        # no threshold has been calibrated for this judge: GridAR prunes at the engine's default (`engine.search`)
        self.calibrated = False
        self.prune_threshold: float | None = None
        self.calibration_note = (f"the verifier '{path.name}' is not calibrated for GridAR: it prunes at the "
                                 "default threshold (set --threshold to choose one)")

    def _batch(self, questions: list[str], images: list[np.ndarray]):
        texts = [self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
            add_generation_prompt=True, tokenize=False) for q in questions]
        batch = self.processor(text=texts, images=list(images), return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in batch.items()}

    def _count(self, cost: CostRecord, role: str, batch, decoded: int = 0) -> None:
        rc = cost.role(role, self.params)
        rc.calls += 1
        rc.prefill_token_rows += int(batch["attention_mask"].sum())     # real positions, not the left padding
        rc.decode_token_rows += decoded

    @torch.inference_mode()
    def _prob(self, questions: list[str], images: list[np.ndarray], answer: str, cost: CostRecord,
              role: str) -> list[float]:
        batch = self._batch(questions, images)
        logits = self.model(**batch).logits[:, -1].float()
        self._count(cost, role, batch)
        ids = self.answers[answer]
        if not ids:
            return [0.0] * len(questions)
        return F.softmax(logits, -1)[:, ids].sum(-1).clamp(0, 1).tolist()

    def verify(self, prompt: Prompts, views: list[PartialView], cost: CostRecord) -> list[float]:
        qs = [(VERIFY_EDIT if v.undrawn is not None else VERIFY).format(prompt=p, rows=v.rows, total=v.total_rows)
              for p, v in zip(per_item(prompt, len(views)), views)]
        return self._prob(qs, [_shown(v) for v in views], "possible", cost, "verifier")

    def score(self, prompt: Prompts, images: list[np.ndarray], cost: CostRecord) -> list[float]:
        qs = [SCORE.format(prompt=p) for p in per_item(prompt, len(images))]
        return self._prob(qs, list(images), "yes", cost, "scorer")

    @torch.inference_mode()
    def reformulate(self, prompt: Prompts, views: list[PartialView], cost: CostRecord) -> list[str]:
        prompts = per_item(prompt, len(views))
        batch = self._batch([LAYOUT.format(prompt=p) for p in prompts], [_shown(v) for v in views])
        out = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, batch["input_ids"].shape[1]:]
        self._count(cost, "reformulator", batch, int(new.numel()))
        texts = self.processor.batch_decode(new, skip_special_tokens=True)
        return [validate_reformulation(p, t.strip().splitlines()[0] if t.strip() else "") for p, t in zip(prompts, texts)]


def _shown(view: PartialView) -> np.ndarray:
    """What the judge sees of a partial view: the drawn rows (an edit: the whole canvas less its undrawn pixels)."""
    return masked_view(view, edit=view.undrawn is not None)


def _load_processor(path: Path, mtype):
    """The folder's processor through AutoProcessor; where that fails and torchvision cannot be used, a processor
    built without its video processor (see the module's notes), else one `ModelLoadError` line."""
    from transformers import AutoProcessor

    from .backend import _first_line
    from .judges import torchvision_hint, torchvision_problem
    try:
        return AutoProcessor.from_pretrained(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - said in one line below
        first = _first_line(e)
    problem = torchvision_problem()
    if problem is None:
        raise ModelLoadError(f"could not load the processor of '{path}' ({mtype}): {first}")
    proc = _processor_without_video(path)
    if proc is None:
        raise ModelLoadError(f"could not load the processor of '{path}' ({mtype}): it needs torchvision, and "
                             f"{problem}; {torchvision_hint()}")
    return proc


def _first_text(path: Path, files: tuple[str, ...], key: str) -> str | None:
    """The string `key` of the first of the folder's JSON `files` that holds one (unreadable files are skipped)."""
    import json
    for file in files:
        try:
            data = json.loads((path / file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get(key), str):
            return data[key]
    return None


def _processor_without_video(path: Path):
    """The folder's processor class built from its image processor (PIL backend) and tokenizer only, when the
    class takes a video processor (Qwen2-VL family); None when it does not apply or cannot be built."""
    import inspect

    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer
    name = _first_text(path, ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"),
                       "processor_class")
    cls = getattr(transformers, name, None) if name else None
    if not isinstance(cls, type) or "video_processor" not in inspect.signature(cls.__init__).parameters:
        return None
    base = cls

    class WithoutVideo(base):
        """The processor without its video processor (`ProcessorMixin` skips a sub-processor it does not list)."""

        @classmethod
        def get_attributes(klass):
            return [a for a in base.get_attributes() if a != "video_processor"]
    WithoutVideo.__name__ = WithoutVideo.__qualname__ = base.__name__
    jinja = path / "chat_template.jinja"
    template = (jinja.read_text(encoding="utf-8") if jinja.is_file()
                else _first_text(path, ("chat_template.json", "processor_config.json"), "chat_template"))
    try:
        image = AutoImageProcessor.from_pretrained(path, local_files_only=True, backend="pil")
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return WithoutVideo(image_processor=image, tokenizer=tok,
                            chat_template=template or getattr(tok, "chat_template", None))
    except Exception:  # noqa: BLE001 - the caller says the processor could not load, and why
        return None
