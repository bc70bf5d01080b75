"""The three judging roles on a Janus model's own understanding path (vision encoder -> aligner -> language model ->
text head), batched over candidates: one model can generate, verify, score and reformulate.

Probabilities come from the raw logits of one forward pass: P(answer) is the softmax mass of the answer's token
variants at the first answer position ("yes" + "Yes", "possible" + "Possible", ...), never sampled text. Mass the model
puts on anything else lowers the probability, so an unreadable answer is a low score, never a high one.

Prompt formats:
- "plain" (the demo model): word-level questions, ``verify : <prompt> ?``, ``score : <prompt> ?`` and
  ``layout : <prompt> ,`` (the model continues with the clause, e.g. "with the red circles at the top").
- "janus-pro": the model's SFT chat format with an instruction in English.

Partial views, plain format: the vision encoder sees the whole canvas (rows not drawn yet grey), but only the image
features of the drawn rows enter the language model: a quarter of the image positions at the first band, half at the
second. The demo model is trained that way (`training.understand`). Janus-Pro was not, so it reads all positions.
Partial edits, to weights trained on the edit question (gridar.json "edit_verify"): ``edit : <target prompt> ?`` over
all image features, the canvas shown whole (the source outside the mask, the drawn rows inside it) with only the
redrawn pixels not drawn yet grey (`training.edit_views`); other weights get the generation question.

Shared image prefix, plain format: a question follows the image prefix [BOS, BOI, image features, EOI], so the
prefix's cache does not depend on the question. `verify` keeps the prefix cache of each view it saw; `reformulate`,
asked next about the survivors of the same stage, continues from those caches and only runs its own question (and
counts only that). The cache holds one stage's views and is dropped after the reformulation. After the edit
question (whole canvas) the layout question's views (top rows) differ, so the reformulator computes its own
prefixes (and counts them).

Janus-Pro format: the questions are asked as DeepSeek's VLChatProcessor asks them (janus/models/processing_vlm.py,
sft_format "deepseek"): its understanding system prompt, then ``<|User|>: <image_placeholder>\n{question}\n\n
<|Assistant|>:``, the placeholder expanded to [BOI, IMAGE * 576, EOI] and BOS first. A folder's own chat template is
used for the user / assistant wrapping where it renders one image and the question (the imported folders' template
does); the system text is the official one (transformers' JanusProcessor holds the same text). Everything up to
the image's EOI is the same for every question about a view, so [BOS, system, user tag, image] is the shared prefix
(618 positions with 576 image tokens and the real-shape tokenizer; the issue measured ~650) and verify /
reformulate reuse it exactly as for the plain format; the cut at EOI is exact because a special token ends a
tokenizer segment. At Janus-Pro-1B's shape (2 of 24 language layers, full SigLIP-L, one thread) reformulating two
views from verify's prefixes took 0.15x the time of recomputing them, with the same clause ids.

Clauses: a reformulation is greedy text that must end (EOS; for Janus-Pro also a line break, as the answer is one
sentence) within `max_new_tokens` (`CLAUSE_TOKENS`); a clause that reaches the cap without ending was cut mid-phrase
and is rejected: the candidate keeps its prompt, as for an invalid reformulation. Janus-Pro's cap is 80 BPE
tokens: the longest layout clause of the demo grammar (six placements, 49 words with its commas) is 67 tokens with
the real-shape test tokenizer (`engine.real_shape`, 6,000 BPE entries trained on English; Janus-Pro's 100k vocabulary
splits English less), and a free four-object clause of 25 words is 40 (the old cap of 24 cut both). The demo keeps
24 word tokens, with which its numbers were measured: of 400 held-out views (`training.calibrate` views, cut at rows
2 and 4) 55 clauses ran longer (28-35 words, four or five placements), none of which the demo grammar accepts once
cut, so the rejection rule changes none of them; a cap of 48 (the grammar's longest) would turn 46 of the 400 into
accepted layouts, a change of the demo's measured behaviour left to a benchmark rerun.

Calibration: `calibrated` is True when gridar.json holds a verify threshold for these weights (a record that names
a weights fingerprint, as `training.calibrate` writes, must match the folder's `weights_fingerprint`; a record for
other weights is ignored), and `calibration_note` is a line the studio and CLI show.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .backend import JanusBackend
from .cost import CostRecord
from .decode import left_pad
from .roles import PartialView, Prompts, answer_token_ids, per_item, validate_reformulation

HIDDEN_FILL = (128, 128, 128)      # rows not drawn yet are shown as flat grey to the verifier

PRO_VERIFY = ("The top {rows} of {total} rows of this image are drawn; the grey part below is not drawn yet. "
              "Prompt: \"{prompt}\". Could the finished image still match the prompt exactly? Say \"impossible\" only "
              "if what is visible already rules it out. Answer possible or impossible.")
PRO_SCORE = "This image was generated from the prompt: \"{prompt}\". Does it accurately show the prompt? Answer yes or no."
PRO_LAYOUT = ("The top of this image is drawn; the grey part is not drawn yet. Rewrite the prompt \"{prompt}\" so that "
              "it describes the final layout: repeat the prompt verbatim, then add after a comma a short clause saying "
              "where the objects are or will be (e.g. \", with the red circle at the top and the blue square at the "
              "bottom\"). Never change objects, counts or colours. If unsure, repeat the prompt unchanged.")


# The understanding system prompt of DeepSeek's VLChatProcessor (`system_prompt`), which it puts before every
# conversation; Janus-Pro was fine-tuned with it.
PRO_SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content that "
              "the user provides, and assist the user with a variety of tasks using natural language.")
# The "deepseek" conversation around one image and a question: system, "\n\n", user turn, "\n\n", assistant tag.
PRO_USER = "<|User|>: <image_placeholder>\n{question}\n\n<|Assistant|>:"
_SENTINEL = "GRIDARQUESTIONSENTINEL"

# Longest clause a reformulation may write before it must end (module docstring: why these numbers).
CLAUSE_TOKENS = {"plain": 24, "janus-pro": 80}


def weights_fingerprint(folder: str | Path) -> str | None:
    """A cheap identity of a folder's weights: sha256 over each weight file's name, size and three 1 MiB samples
    (start, middle, end; the start holds the safetensors header). Changed weights of the same shapes change the
    sampled bytes; a full hash of 15 GB at every load would not be cheap. None when the folder has no weights."""
    path = Path(folder)
    files = ["model.safetensors"] if (path / "model.safetensors").is_file() else []
    index = path / "model.safetensors.index.json"
    if not files and index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()))
        except (OSError, ValueError, AttributeError):
            return None
    h = hashlib.sha256()
    chunk = 1 << 20
    try:
        for name in files:
            f = path / str(name)
            size = f.stat().st_size
            h.update(f"{name}\0{size}\0".encode())
            with open(f, "rb") as fh:
                for at in dict.fromkeys((0, max(0, size // 2 - chunk // 2), max(0, size - chunk))):
                    fh.seek(at)
                    h.update(fh.read(chunk))
    except OSError:
        return None
    return "sha256:" + h.hexdigest() if files else None


def pro_conversation(processor) -> tuple[str, str, str]:
    """(head, middle, end) of a Janus-Pro understanding prompt: the text is head + IMAGE + middle + question + end,
    with the system text in the head. From the processor's chat template where it renders a user turn with one
    image and the question (a system message it drops is put first, as transformers' JanusProcessor does); else
    the official format (`PRO_SYSTEM`, `PRO_USER`)."""
    image = getattr(getattr(processor, "tokenizer", None), "image_token", None) or "<image_placeholder>"
    fallback = (PRO_SYSTEM + "\n\n" + PRO_USER.split("<image_placeholder>")[0],) + tuple(
        PRO_USER.split("<image_placeholder>")[1].split("{question}"))
    template = getattr(processor, "chat_template", None)
    if not isinstance(template, str) or not template:
        return fallback
    messages = [{"role": "system", "content": [{"type": "text", "text": PRO_SYSTEM}]},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": _SENTINEL}]}]
    try:
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception:  # noqa: BLE001 - a folder's template is untrusted input; the official format serves instead
        return fallback
    if isinstance(text, list):
        text = text[0] if text and isinstance(text[0], str) else None
    if not isinstance(text, str) or text.count(image) != 1 or text.count(_SENTINEL) != 1 \
            or text.index(image) > text.index(_SENTINEL):
        return fallback
    head, rest = text.split(image)
    middle, end = rest.split(_SENTINEL)
    if PRO_SYSTEM not in head:
        head = PRO_SYSTEM + "\n\n" + head
    return head, middle, end


def masked_view(view: PartialView, edit: bool = False) -> np.ndarray:
    """The view's image with the rows below the drawn band flat grey (uint8 (H, W, 3)); with `edit`, only the
    edit's pixels not drawn yet (`view.undrawn`) are grey and the rest of the canvas is shown."""
    img = np.array(view.image, dtype=np.uint8)
    if edit:
        img[view.undrawn] = HIDDEN_FILL
    else:
        img[view.visible_pixels:] = HIDDEN_FILL
    return img


def _threshold_value(rec) -> float | None:
    """A threshold record of gridar.json ({"value": t, ...} or a bare number) -> t; anything malformed -> None."""
    t = rec.get("value") if isinstance(rec, dict) else rec
    return float(t) if isinstance(t, (int, float)) else None


class JanusRoles:
    """verify / score / reformulate with a Janus model's understanding path."""

    def __init__(self, backend: JanusBackend, max_new_tokens: int | None = None) -> None:
        self.b = backend
        self.model = backend.model
        self.tok = backend.tokenizer
        self.plain = backend.info.prompt_format == "plain"
        # the longest clause a reformulation may write (None: its prompt format's, `CLAUSE_TOKENS`)
        self.max_new_tokens = max_new_tokens or CLAUSE_TOKENS["plain" if self.plain else "janus-pro"]
        # Janus-Pro: (head, middle, end) of the conversation around the image and the question, and the head's ids
        self.pro = None if self.plain else pro_conversation(backend.processor)
        self._head = [] if self.plain else self.tok(self.pro[0], add_special_tokens=False).input_ids
        self.image_token = backend.image_id
        self.n_image_tokens = backend.n_image_features
        self.feature_grid = math.isqrt(self.n_image_tokens)         # the vision encoder's patch grid (square)
        m = self.model.model
        self.lm_params = backend.info.generator_params - sum(
            p.numel() for mod in (m.generation_head, m.generation_aligner) for p in mod.parameters())
        self.vision_params = backend.vision_params
        self.answers = {w: answer_token_ids(self.tok, w) for w in ("yes", "no", "possible")}
        self._prefixes: dict[bytes, tuple] = {}     # view key -> (per-layer (K, V) of the prefix, next position)
        # the pruning threshold calibrated for these weights (`training.calibrate`); None: the engine's default
        rec = backend.meta.get("verify_threshold")
        self.prune_threshold: float | None = _threshold_value(rec)
        by = rec.get("by_rows") if isinstance(rec, dict) else None        # one per verification row, where measured
        self.prune_thresholds_by_rows: dict[int, float] = {
            int(k): float(v) for k, v in (by.items() if isinstance(by, dict) else ())
            if str(k).isdigit() and isinstance(v, (int, float))}
        # a record that names the weights it was measured on holds only for those weights (a folder whose weights
        # were replaced keeps its old gridar.json); records without a fingerprint came with their weights
        self._other_weights = False
        folder = Path(backend.info.folder)
        want = rec.get("weights") if isinstance(rec, dict) else None
        if self.prune_threshold is not None and isinstance(want, str) and folder.is_dir() \
                and weights_fingerprint(folder) != want:
            self._other_weights = True
            self.prune_threshold, self.prune_thresholds_by_rows = None, {}
        # weights trained on the edit question (`training.edit_views`) verify partial edits with it, at a threshold
        # calibrated on edit views
        self.edit_verify = self.plain and bool(backend.meta.get("edit_verify"))
        self.prune_threshold_edit: float | None = (_threshold_value(backend.meta.get("verify_threshold_edit"))
                                                   if self.edit_verify else None)
        # a value head learned on the model's own finished edits (`training.edit_value`): partial edits are judged
        # by how they will end, P(the finished edit follows the target prompt), at the head's own threshold
        self.edit_value: tuple[torch.Tensor, torch.Tensor] | None = None
        # and its verdicts weigh in GridAR's final pick of an edit (`engine.search`); 0: the scorer alone
        self.final_value_weight_edit: float = 0.0
        # the chance a fresh draw of an edit ends right (the head's training base rate): with refill "redraw", a
        # candidate the head expects to end right less often is redrawn (`Search._view_threshold`)
        self.fresh_success_edit: float | None = None
        rec = backend.meta.get("edit_value") if self.edit_verify else None
        if isinstance(rec, dict) and (folder / str(rec.get("file"))).is_file():
            from .value_head import load_head
            w, b = load_head(folder)
            if w.shape == (self.model.config.text_config.hidden_size,):
                self.edit_value = (w.to(backend.device), b.to(backend.device))
                self.prune_threshold_edit = _threshold_value(rec.get("threshold"))
                fw = rec.get("final_weight")
                self.fresh_success_edit = _threshold_value(rec.get("candidate_success"))
                self.final_value_weight_edit = float(fw) if isinstance(fw, (int, float)) and fw > 0 else 0.0

    # -- calibration ---------------------------------------------------------------------------------------------
    @property
    def calibrated(self) -> bool:
        """Whether pruning uses a threshold measured for these weights (gridar.json "verify_threshold")."""
        return self.prune_threshold is not None or bool(self.prune_thresholds_by_rows)

    @property
    def calibration_note(self) -> str:
        """One line on the verifier's pruning threshold, for the studio and the CLI."""
        from .search import DEFAULT_THRESHOLD
        if self.calibrated:
            by = ", ".join(f"{t:.3g} after {r} rows" for r, t in sorted(self.prune_thresholds_by_rows.items()))
            pooled = f"{self.prune_threshold:.3g}" if self.prune_threshold is not None else "none"
            return (f"the verifier of this model is calibrated: pruning uses its threshold {pooled}"
                    + (f" ({by})" if by else ""))
        folder = self.b.info.folder if Path(self.b.info.folder).is_dir() else "FOLDER"
        why = ("its threshold in gridar.json was calibrated for other weights" if self._other_weights
               else "the verifier of this model is not calibrated")
        return (f"{why}: pruning uses the uncalibrated threshold {DEFAULT_THRESHOLD}; run `gridar calibrate "
                f"{folder} --prompts FILE --write`")

    # -- inputs --------------------------------------------------------------------------------------------------
    def visible_features(self, view: PartialView | None, edit: bool = False) -> int:
        """How many image features (raster order) the language model reads for a view (all for the edit
        question, which shows the whole canvas)."""
        if view is None or not self.plain or edit:
            return self.n_image_tokens
        rows = math.ceil(view.rows * self.feature_grid / view.total_rows)
        return min(self.n_image_tokens, rows * self.feature_grid)

    def _prefix_ids(self, view: PartialView | None, edit: bool = False) -> list[int]:
        """What every question about a view starts with: plain [BOS, BOI, IMAGE * visible, EOI]; Janus-Pro
        [BOS, system and user tag, BOI, IMAGE * F, EOI]."""
        image = [self.b.boi_id] + [self.image_token] * self.visible_features(view, edit) + [self.b.eoi_id]
        return [self.b.bos_id] + self._head + image

    def _question(self, kind: str, prompt: str, view: PartialView | None = None) -> list[int]:
        """The tokens after the prefix: the question (for a layout, the start of the answer: the prompt)."""
        if self.plain:
            tail = {"verify": "?", "edit": "?", "score": "?", "layout": ","}[kind]
            return self.tok(f"{kind} : {prompt.strip().lower()} {tail}", add_special_tokens=False).input_ids
        text = {"verify": PRO_VERIFY, "score": PRO_SCORE, "layout": PRO_LAYOUT}[kind].format(
            prompt=prompt, rows=view.rows if view else 0, total=view.total_rows if view else 0)
        text = self.pro[1] + text + self.pro[2]
        if kind == "layout":
            text += " " + prompt.strip()
        return self.tok(text, add_special_tokens=False).input_ids

    def _ids(self, kind: str, prompt: str, view: PartialView | None) -> list[int]:
        return self._prefix_ids(view, kind == "edit") + self._question(kind, prompt, view)

    def _view_key(self, view: PartialView, image: np.ndarray, edit: bool) -> bytes:
        return hashlib.blake2b(image.tobytes(), digest_size=16).digest() + str(
            self.visible_features(view, edit)).encode()

    @torch.inference_mode()
    def _after_prefix(self, kind: str, prompts: list[str], views: list[PartialView], cost: CostRecord, role: str,
                      reuse: bool, keep: bool):
        """Each distinct view's prefix (`_prefix_ids`; reused from the last `verify` when `reuse`), then the
        questions in one forward. Returns (last hidden (B, H), cache, mask (B, T), next position (B,))."""
        from transformers import DynamicCache
        edit = kind == "edit"
        images = [masked_view(v, edit) for v in views]
        keys = [self._view_key(v, im, edit) for v, im in zip(views, images)]
        if not reuse:
            self._prefixes = {}          # the last stage's caches go before this stage's are computed
        have = dict(self._prefixes)
        need = list(dict.fromkeys(k for k in keys if k not in have))
        rc = cost.role(role, self.lm_params)
        rc.calls += 1
        if need:
            first = [keys.index(k) for k in need]
            rows = [self._prefix_ids(views[i], edit) for i in first]
            pc = DynamicCache(config=self.model.config.text_config)
            _, pmask, ppos = self._forward(rows, [images[i] for i in first], pc)
            for j, k in enumerate(need):
                real = pmask[j].bool()
                have[k] = ([(layer.keys[j][:, real], layer.values[j][:, real]) for layer in pc.layers],
                           int(ppos[j, -1]) + 1)
            rc.prefill_token_rows += sum(len(r) for r in rows)
            rc.extra_flops += 2.0 * self.vision_params * len(need) * self.n_image_tokens
        self._prefixes = {k: have[k] for k in keys} if keep else {}
        # the prefixes, left-padded to a common length, become the cache the questions continue
        lengths = [have[k][0][0][0].shape[1] for k in keys]
        width = max(lengths)
        cache = DynamicCache(config=self.model.config.text_config)
        for li in range(len(have[keys[0]][0])):
            ks = [torch.nn.functional.pad(have[k][0][li][0], (0, 0, width - n, 0)) for k, n in zip(keys, lengths)]
            vs = [torch.nn.functional.pad(have[k][0][li][1], (0, 0, width - n, 0)) for k, n in zip(keys, lengths)]
            cache.update(torch.stack(ks), torch.stack(vs), li)
        pmask = torch.tensor([[0] * (width - n) + [1] * n for n in lengths], device=self.b.device)
        qs = [self._question(kind, p, v) for p, v in zip(prompts, views)]
        ids, qmask = left_pad(qs, self.b.pad_id, self.b.device)
        start = torch.tensor([have[k][1] for k in keys], device=self.b.device)
        pos = (start.unsqueeze(1) + (qmask.cumsum(-1) - 1).clamp_min(0))                  # (B, W)
        mask = torch.cat([pmask, qmask], 1)
        out = self.model.model.language_model(inputs_embeds=self.model.get_input_embeddings()(ids),
                                              attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        rc.prefill_token_rows += sum(len(q) for q in qs)
        return out.last_hidden_state[:, -1], cache, mask, pos[:, -1] + 1

    @torch.inference_mode()
    def _forward(self, rows: list[list[int]], images: list[np.ndarray], cache=None):
        """Left-padded batch forward with image features scattered into the placeholder positions; a row with
        fewer placeholders than features reads the first ones (the drawn rows, in raster order)."""
        ids, mask = left_pad(rows, self.b.pad_id, self.b.device)
        embeds = self.model.get_input_embeddings()(ids)
        feats = self.b.image_features(images)                                                # (B, F, H)
        place = ids == self.image_token                                                      # (B, W)
        shown = torch.arange(feats.shape[1], device=ids.device) < place.sum(-1, keepdim=True)  # (B, F)
        embeds = embeds.masked_scatter(place.unsqueeze(-1), feats[shown].to(embeds.dtype))
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        out = self.model.model.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos,
                                              cache=cache, use_cache=cache is not None)
        return out.last_hidden_state, mask, pos

    def _count(self, cost: CostRecord, role: str, rows: list[list[int]], decoded_rows: int = 0) -> None:
        rc = cost.role(role, self.lm_params)
        rc.calls += 1
        rc.prefill_token_rows += sum(len(r) for r in rows)       # real positions; left padding is not counted
        rc.decode_token_rows += decoded_rows
        rc.extra_flops += 2.0 * self.vision_params * len(rows) * self.n_image_tokens

    @torch.inference_mode()
    def _answer_prob(self, kind: str, prompt: Prompts, views: list[PartialView | None], images: list[np.ndarray],
                     answer: str, cost: CostRecord, role: str) -> list[float]:
        rows = [self._ids(kind, p, v) for p, v in zip(per_item(prompt, len(views)), views)]
        h, _, _ = self._forward(rows, images)
        self._count(cost, role, rows)
        return self._probs(h[:, -1], answer)

    # -- the roles -----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def verify(self, prompt: Prompts, views: list[PartialView], cost: CostRecord) -> list[float]:
        # a partial edit, to weights that know the edit question: the whole canvas, only the undrawn pixels hidden
        kind = "edit" if self.edit_verify and views and all(v.undrawn is not None for v in views) else "verify"
        h, *_ = self._after_prefix(kind, per_item(prompt, len(views)), views, cost, "verifier", reuse=False,
                                   keep=True)
        if kind == "edit" and self.edit_value is not None:
            w, b = self.edit_value
            return torch.sigmoid(h.float() @ w + b).tolist()
        return self._probs(h, "possible")

    @torch.inference_mode()
    def edit_hidden(self, prompt: Prompts, views: list[PartialView], cost: CostRecord) -> torch.Tensor:
        """(B, H) the language model's last hidden state after the edit question about partial edits (what the
        answer word and the value head read), counted as a verification."""
        h, *_ = self._after_prefix("edit", per_item(prompt, len(views)), views, cost, "verifier", reuse=False,
                                   keep=True)
        return h

    @torch.inference_mode()
    def answer_probability(self, h: torch.Tensor, answer: str) -> list[float]:
        """P(answer word) from last hidden states (B, H), as the roles read it."""
        return self._probs(h, answer)

    def _probs(self, h: torch.Tensor, answer: str) -> list[float]:
        """P(answer) from the raw logits at the last position (B, H)."""
        probs = F.softmax(self.model.lm_head(h).float(), dim=-1)               # (B, V) raw, no warpers
        ids = self.answers[answer]
        if not ids:
            return [0.0] * h.shape[0]
        return probs[:, ids].sum(-1).clamp(0, 1).tolist()

    def score(self, prompt: Prompts, images: list[np.ndarray], cost: CostRecord) -> list[float]:
        return self._answer_prob("score", prompt, [None] * len(images), list(images), "yes", cost, "scorer")

    @torch.inference_mode()
    def score_answers(self, prompt: Prompts, images: list[np.ndarray], cost: CostRecord) -> list[tuple[float, float]]:
        """(P(yes), P(no)) of the scorer's question per finished image, from one forward: the scorer accepts an
        image when it answers yes rather than no (`training.calibrate` labels the model's own images so)."""
        prompts = per_item(prompt, len(images))
        rows = [self._ids("score", p, None) for p in prompts]
        h, _, _ = self._forward(rows, list(images))
        self._count(cost, "scorer", rows)
        return list(zip(self._probs(h[:, -1], "yes"), self._probs(h[:, -1], "no")))

    def release(self) -> None:
        """Drop the prefix caches the last `verify` kept for a reformulation that will not come (a stage without
        one, or the end of a run): at Janus-Pro-7B they are ~0.3 GB per view in bf16."""
        self._prefixes = {}

    @torch.inference_mode()
    def reformulate(self, prompt: Prompts, views: list[PartialView], cost: CostRecord) -> list[str]:
        """Greedy continuation from the view prefixes the last `verify` kept (each other view's prefix is computed
        and counted here), batched; a clause that does not end within `max_new_tokens` is rejected, every other
        result validated against the original prompt."""
        prompts = per_item(prompt, len(views))
        out, ended = self._clauses(prompts, views, cost)
        # a clause cut at the cap is unfinished (mid-phrase): the candidate keeps its prompt
        return [self._validate(p, self._join(p, t)) if done else p.strip()
                for p, t, done in zip(prompts, out, ended)]

    @torch.inference_mode()
    def _clauses(self, prompts: list[str], views: list[PartialView], cost: CostRecord
                 ) -> tuple[list[list[int]], list[bool]]:
        """The greedy token ids after each layout question, and whether each ended within the cap."""
        last, cache, mask, next_pos = self._after_prefix("layout", prompts, views, cost, "reformulator", reuse=True,
                                                         keep=False)
        out: list[list[int]] = [[] for _ in prompts]
        ended = [False] * len(prompts)
        alive = list(range(len(prompts)))       # the row each cache row belongs to; finished rows leave the batch
        decoded = 0
        for step in range(self.max_new_tokens + 1):      # the last step only reads whether the clause ends there
            nxt = self.model.lm_head(last).float().argmax(-1)                # (A,)
            going = []
            for a, (row, t) in enumerate(zip(alive, nxt.tolist())):
                if self._ends(t):
                    ended[row] = True
                elif step < self.max_new_tokens:
                    out[row].append(t)
                    going.append(a)
            if not going:
                break
            if len(going) < len(alive):
                idx = torch.tensor(going, device=nxt.device)
                for layer in cache.layers:
                    layer.keys, layer.values = layer.keys[idx], layer.values[idx]
                mask, next_pos, nxt = mask[idx], next_pos[idx], nxt[idx]
                alive = [alive[a] for a in going]
            mask = torch.cat([mask, mask.new_ones(len(alive), 1)], 1)
            emb = self.model.get_input_embeddings()(nxt.unsqueeze(1))
            last = self.model.model.language_model(inputs_embeds=emb, attention_mask=mask,
                                                   position_ids=next_pos.unsqueeze(1), cache=cache,
                                                   use_cache=True).last_hidden_state[:, -1]
            next_pos = next_pos + 1
            decoded += len(alive)
        cost.role("reformulator", self.lm_params).decode_token_rows += decoded
        return out, ended

    def _ends(self, token: int) -> bool:
        """Whether a generated token ends the clause: EOS, and for Janus-Pro a line break (one sentence)."""
        if token == self.tok.eos_token_id:
            return True
        return not self.plain and "\n" in self.tok.decode([token])

    def _validate(self, prompt: str, proposal: str) -> str:
        """The common rule (original prompt verbatim + a clause), and for the demo model also its grammar: the
        clause must parse and must not change the objects, counts or relation."""
        out = validate_reformulation(prompt, proposal)
        if not self.plain or out == prompt.strip():
            return out
        from ..shapes.grammar import PromptError, parse_prompt
        try:
            same = parse_prompt(out).without_layout() == parse_prompt(prompt).without_layout()
        except PromptError:
            return prompt.strip()
        return out if same else prompt.strip()

    def _join(self, prompt: str, ids: list[int]) -> str:
        words = self.tok.convert_ids_to_tokens(ids) if self.plain else None
        if self.plain:
            clause = " ".join(words).replace(" ,", ",").strip()
            return prompt.strip() if not clause else f"{prompt.strip()}, {clause}"
        text = self.tok.decode(ids, skip_special_tokens=True).strip()
        return text if text.startswith(prompt.strip()) else f"{prompt.strip()}{text}"
