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
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .backend import JANUS_PRO_TEMPLATE, JanusBackend
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

    def __init__(self, backend: JanusBackend, max_new_tokens: int = 24) -> None:
        self.b = backend
        self.model = backend.model
        self.tok = backend.tokenizer
        self.plain = backend.info.prompt_format == "plain"
        self.max_new_tokens = max_new_tokens
        self.image_token = backend.image_id
        self.n_image_tokens = backend.n_image_features
        self.feature_grid = math.isqrt(self.n_image_tokens)         # the vision encoder's patch grid (square)
        m = self.model.model
        self.lm_params = backend.info.generator_params - sum(
            p.numel() for mod in (m.generation_head, m.generation_aligner) for p in mod.parameters())
        self.vision_params = backend.vision_params
        self.answers = {w: answer_token_ids(self.tok, w) for w in ("yes", "possible")}
        self._prefixes: dict[bytes, tuple] = {}     # view key -> (per-layer (K, V) of the prefix, next position)
        # the pruning threshold calibrated for these weights (`training.calibrate`); None: the engine's default
        rec = backend.meta.get("verify_threshold")
        self.prune_threshold: float | None = _threshold_value(rec)
        by = rec.get("by_rows") if isinstance(rec, dict) else None        # one per verification row, where measured
        self.prune_thresholds_by_rows: dict[int, float] = {
            int(k): float(v) for k, v in (by.items() if isinstance(by, dict) else ())
            if str(k).isdigit() and isinstance(v, (int, float))}
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
        folder = Path(backend.info.folder)
        if isinstance(rec, dict) and (folder / str(rec.get("file"))).is_file():
            from .value_head import load_head
            w, b = load_head(folder)
            if w.shape == (self.model.config.text_config.hidden_size,):
                self.edit_value = (w.to(backend.device), b.to(backend.device))
                self.prune_threshold_edit = _threshold_value(rec.get("threshold"))
                fw = rec.get("final_weight")
                self.fresh_success_edit = _threshold_value(rec.get("candidate_success"))
                self.final_value_weight_edit = float(fw) if isinstance(fw, (int, float)) and fw > 0 else 0.0

    # -- inputs --------------------------------------------------------------------------------------------------
    def visible_features(self, view: PartialView | None, edit: bool = False) -> int:
        """How many image features (raster order) the language model reads for a view (all for the edit
        question, which shows the whole canvas)."""
        if view is None or not self.plain or edit:
            return self.n_image_tokens
        rows = math.ceil(view.rows * self.feature_grid / view.total_rows)
        return min(self.n_image_tokens, rows * self.feature_grid)

    def _ids(self, kind: str, prompt: str, view: PartialView | None) -> list[int]:
        if self.plain:
            image = [self.b.boi_id] + [self.image_token] * self.visible_features(view, kind == "edit") + [
                self.tok.convert_tokens_to_ids(getattr(self.tok, "eoi_token", "<end_of_image>"))]
            tail = {"verify": "?", "edit": "?", "score": "?", "layout": ","}[kind]
            words = f"{kind} : {prompt.strip().lower()} {tail}"
            return [self.b.bos_id] + image + self.tok(words, add_special_tokens=False).input_ids
        text = {"verify": PRO_VERIFY, "score": PRO_SCORE, "layout": PRO_LAYOUT}[kind].format(
            prompt=prompt, rows=view.rows if view else 0, total=view.total_rows if view else 0)
        text = JANUS_PRO_TEMPLATE.format(prompt="<image_placeholder>\n" + text)
        if kind == "layout":
            text += " " + prompt.strip()
        expanded = text.replace("<image_placeholder>", self.tok.boi_token + self.tok.image_token
                                * self.n_image_tokens + self.tok.eoi_token)
        return [self.b.bos_id] + self.tok(expanded, add_special_tokens=False).input_ids

    def _question(self, kind: str, prompt: str) -> list[int]:
        """Plain format: the words after the image prefix."""
        tail = {"verify": "?", "edit": "?", "score": "?", "layout": ","}[kind]
        return self.tok(f"{kind} : {prompt.strip().lower()} {tail}", add_special_tokens=False).input_ids

    def _view_key(self, view: PartialView, image: np.ndarray, edit: bool) -> bytes:
        return hashlib.blake2b(image.tobytes(), digest_size=16).digest() + str(
            self.visible_features(view, edit)).encode()

    @torch.inference_mode()
    def _after_prefix(self, kind: str, prompts: list[str], views: list[PartialView], cost: CostRecord, role: str,
                      reuse: bool, keep: bool):
        """Plain format: each distinct view's image prefix (reused from the last `verify` when `reuse`), then the
        questions in one forward. Returns (last hidden (B, H), cache, mask (B, T), next position (B,))."""
        from transformers import DynamicCache
        edit = kind == "edit"
        images = [masked_view(v, edit) for v in views]
        keys = [self._view_key(v, im, edit) for v, im in zip(views, images)]
        have = dict(self._prefixes) if reuse else {}
        need = list(dict.fromkeys(k for k in keys if k not in have))
        rc = cost.role(role, self.lm_params)
        rc.calls += 1
        if need:
            first = [keys.index(k) for k in need]
            rows = [self._ids(kind, "", views[i])[:3 + self.visible_features(views[i], edit)] for i in first]
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
        qs = [self._question(kind, p) for p in prompts]
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
        if not self.plain:
            return self._answer_prob("verify", prompt, views, [masked_view(v) for v in views], "possible", cost,
                                     "verifier")
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
    def reformulate(self, prompt: Prompts, views: list[PartialView], cost: CostRecord) -> list[str]:
        """Greedy continuation with a KV cache, batched; each result validated against the original prompt."""
        from transformers import DynamicCache
        prompts = per_item(prompt, len(views))
        rows = [self._ids("layout", p, v) for p, v in zip(prompts, views)]
        if self.plain:      # continue from the image prefixes the last verify kept
            last, cache, mask, next_pos = self._after_prefix("layout", prompts, views, cost, "reformulator",
                                                             reuse=True, keep=False)
        else:
            cache = DynamicCache(config=self.model.config.text_config)
            h, mask, pos = self._forward(rows, [masked_view(v) for v in views], cache)
            last, next_pos = h[:, -1], pos[:, -1] + 1
        eos = self.tok.eos_token_id
        out: list[list[int]] = [[] for _ in rows]
        alive = list(range(len(rows)))          # the row each cache row belongs to; finished rows leave the batch
        decoded = 0
        for _ in range(self.max_new_tokens):
            nxt = self.model.lm_head(last).float().argmax(-1)                # (A,)
            going = []
            for a, (row, t) in enumerate(zip(alive, nxt.tolist())):
                if t != eos:
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
        if self.plain:
            cost.role("reformulator", self.lm_params).decode_token_rows += decoded
        else:
            self._count(cost, "reformulator", rows, decoded)
        return [self._validate(p, self._join(p, t)) for p, t in zip(prompts, out)]

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
