"""Stage 4 of the demo model: edit-conditioned generation, the generator an edit needs.

The text-to-image generator continues the kept codes of an edit without knowing where the mask is: it redraws the
old object from the trace the kept codes carry, and an object to add in an empty box mostly never appears (the
measurements in the model card). This stage teaches the same `JanusForConditionalGeneration` to generate *given the
source*: the understanding encoder reads the source with the redrawn part grey (`engine.edit.conditioning_image`),
and the generation rows are

    [BOS, BOI, IMAGE * 64, EOI, "target", ":", target prompt..., BOI] + 64 image codes

where IMAGE positions take the image features, as the roles' rows do (30% of the prompts carry the edited scene's
layout clause, as the generation stage's do: GridAR's reformulations replace the prompt with such a prompt), and the
codes are the source's outside the token mask (the kept codes the engine forces; half of the rows the cleared context's, `engine.edit.CONTEXTS`) and
the edited scene's inside it. The loss is on the redrawn codes only: the kept ones are forced at inference. 10% of
rows drop the prompt words (pad tokens), keeping the image: the unconditional row of guidance for an edit, so that
guidance strengthens the prompt, not the source.

Data: the edit sampler (`shapes.edits.sample_edit`, the four kinds in turn) on a random stream of its own; the mask
box grown by 2-5 px (artists' masks are looser than the benchmark's 2 px). Labels are the edited scene as the sampler
built it, never the judge.

Each step also replays generation rows (the text-to-image path must stay as it was) and understanding examples (the
language model is shared with the verifier, scorer and reformulator), so no role is retrained from scratch. The
vision encoder and its aligner are frozen: they are the roles' eyes, and the generator learns to read them as they
are.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.decode import left_pad
from ..engine.edit import conditioning_image, token_mask
from ..io.atomic import atomic_write_text, torch_save_atomic
from ..shapes.edits import KINDS, box_mask, sample_edit
from ..shapes.grammar import SceneSpec, format_prompt
from ..shapes.scene import BACKGROUND, IMAGE_SIZE, layout_of, render_scene
from .demo_config import BOI, BOS, EOI, GRID, IMAGE, PAD
from .gen import WORD_ID, generation_loss, make_batch, three_group_rows, words_to_ids

log = logging.getLogger(__name__)
UNCOND_P = 0.1
LAYOUT_P = 0.3                 # rows whose prompt carries the edited scene's layout clause (GridAR's reformulations)
CLEARED_P = 0.5
GROW = (2, 5)                  # px the mask box is grown by (the benchmark's masks: 2)
DATA_SEED = 424_242            # the edit sampler's stream here; the benchmark seeds its own (0, 1, ...)


def edit_generation_ids(words: list[int] | None, n_words: int) -> list[int]:
    """One edit-generation row; `words` None is the unconditional form (n_words pad tokens)."""
    body = words if words is not None else [PAD] * n_words
    return [BOS, BOI] + [IMAGE] * GRID * GRID + [EOI, WORD_ID["target"], WORD_ID[":"]] + body + [BOI]


def build_edit_dataset(vq, n: int, path: Path, seed: int = DATA_SEED, chunk: int = 256) -> dict:
    """Sample and encode `n` edits (resumable by chunk). Keys: holed (uint8 (N, 64, 64, 3)), words (prompt ids),
    layout (the prompt with the edited scene's layout clause),
    redraw (bool (N, 64)), source / cleared / edited (int16 (N, 64) codes), kind."""
    from .data import to_tensor
    from .vq import quantize
    data = torch.load(path, weights_only=True) if path.exists() else {
        "holed": [], "words": [], "layout": [], "redraw": [], "source": [], "cleared": [], "edited": [], "kind": []}
    rng = random.Random(seed * 7919 + len(data["kind"]))
    vq.eval()
    while len(data["kind"]) < n:
        cases = []
        while len(cases) < chunk:
            c = sample_edit(KINDS[(len(data["kind"]) + len(cases)) % len(KINDS)], rng)
            if c is not None:
                c["mask"] = box_mask(c["changed"], rng.randint(*GROW))
                cases.append(c)
        sources = [np.asarray(c["source"], np.uint8) for c in cases]
        cleared = [s.copy() for s in sources]
        for s, c in zip(cleared, cases):
            s[c["mask"]] = BACKGROUND
        edited = [render_scene(c["edited"]) for c in cases]
        with torch.no_grad():
            _, idx, _ = quantize(vq, to_tensor(sources + cleared + edited))
        idx = idx.view(3, chunk, -1).to(torch.int16)
        for i, c in enumerate(cases):
            redraw = token_mask(c["mask"], GRID, GRID).reshape(-1)
            data["holed"].append(torch.from_numpy(conditioning_image(sources[i], c["mask"], redraw)))
            data["words"].append(words_to_ids(c["target_prompt"]))
            t = c["target"]
            data["layout"].append(words_to_ids(format_prompt(SceneSpec(t.groups, t.relation,
                                                                       layout_of(c["edited"], t)))))
            data["redraw"].append(torch.from_numpy(redraw))
            for k, key in enumerate(("source", "cleared", "edited")):
                data[key].append(idx[k, i])
            data["kind"].append(c["kind"])
        if len(data["kind"]) % (chunk * 10) == 0 or len(data["kind"]) >= n:
            torch_save_atomic(data, path)
            log.info("encoded %d / %d edits", len(data["kind"]), n)
    return data


def make_edit_batch(data: dict, rng: random.Random, batch: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids (B, L) left-padded, mask (B, L), images (B, 3, H, W) in [-1, 1], stream codes (B, 64), redraw (B, 64))."""
    picks = [rng.randrange(len(data["kind"])) for _ in range(batch)]
    rows, streams = [], []
    for i in picks:
        words = data["layout"][i] if data.get("layout") and rng.random() < LAYOUT_P else data["words"][i]
        rows.append(edit_generation_ids(None if rng.random() < UNCOND_P else words, len(words)))
        kept = data["cleared" if rng.random() < CLEARED_P else "source"][i].long()
        streams.append(torch.where(data["redraw"][i], data["edited"][i].long(), kept))
    ids, mask = left_pad(rows, PAD)
    images = torch.stack([data["holed"][i] for i in picks]).permute(0, 3, 1, 2).float() / 127.5 - 1
    return ids, mask, images, torch.stack(streams), torch.stack([data["redraw"][i] for i in picks])


def edit_generation_loss(model, ids: torch.Tensor, mask: torch.Tensor, images: torch.Tensor, codes: torch.Tensor,
                         redraw: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the redrawn codes given the holed source, the prompt and the codes before each."""
    embeds = model.get_input_embeddings()(ids)                                     # (B, L, H)
    with torch.no_grad():                                                          # the roles' eyes stay frozen
        feats = model.model.get_image_features(images, return_dict=True).pooler_output   # (B, 64, H)
    embeds = embeds.masked_scatter((ids == IMAGE).unsqueeze(-1), feats.to(embeds.dtype))
    img = model.prepare_embeddings_for_image_generation(codes[:, :-1])             # (B, 63, H)
    embeds = torch.cat([embeds, img], 1)
    full_mask = torch.cat([mask, mask.new_ones(codes.shape[0], codes.shape[1] - 1)], 1)
    pos = (full_mask.cumsum(-1) - 1).clamp_min(0)
    h = model.model.language_model(inputs_embeds=embeds, attention_mask=full_mask, position_ids=pos).last_hidden_state
    logits = model.model.generation_head(h[:, ids.shape[1] - 1:])                  # (B, 64, K)
    return F.cross_entropy(logits[redraw].float(), codes[redraw])


def train_edit_generation(model, gen_data: dict, edit_data: dict, work: str | Path, steps: int = 800,
                          batch: int = 24, replay: int = 16, und_batch: int = 16, lr: float = 3e-4,
                          warmup: int = 50, seed: int = 0, ckpt_every: int = 100, gen_weight: float = 0.5,
                          und_weight: float = 0.5, three_groups: float = 0.5, favour_counts: bool = False) -> None:
    """Train edit-conditioned generation in place (resumable through work/editgen_ckpt.pt). Per step: `batch` edit
    rows, `replay` generation rows (a share `three_groups` of them three-group prompts, the rest drawn from all)
    and `und_batch` understanding examples of the shipped mix; a linear warm-up, then a cosine to 5%."""
    from .understand import EDIT_MIX, blank_code, example_pixels, make_example, understanding_loss
    work = Path(work)
    ckpt = work / "editgen_ckpt.pt"
    m = model.model
    for p in list(m.vision_model.parameters()) + list(m.aligner.parameters()):
        p.requires_grad_(False)
    params = [p for mod in (m.language_model, m.generation_embeddings, m.generation_aligner, m.generation_head)
              for p in mod.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    rng, step = random.Random(seed + 31), 0
    favour = three_group_rows(gen_data)
    if favour_counts:
        counted = {WORD_ID[w] for w in ("two", "three", "four")}
        favour = sorted(set(favour) | {i for i, w in enumerate(gen_data["base"]) if counted & set(w)})
    blank = blank_code(m.vqmodel)
    if ckpt.exists():
        ck = torch.load(ckpt, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, _ = ck["step"], rng.setstate(ck["rng"])
        log.info("resumed edit-generation training at step %d", step)
    model.train()
    m.vqmodel.eval()
    m.vision_model.eval()
    t0 = time.time()
    while step < steps:
        scale = min(1.0, (step + 1) / max(warmup, 1)) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        loss_e = edit_generation_loss(model, *make_edit_batch(edit_data, rng, batch))
        ids, mask, tokens = make_batch(gen_data, rng, replay, favour, three_groups)
        loss_g = generation_loss(model, ids, mask, tokens)
        ex = [make_example(rng, EDIT_MIX) for _ in range(und_batch)]
        px = example_pixels(m.vqmodel, ex, EDIT_MIX, blank)
        loss_u, _ = understanding_loss(model, [(e[3], e[4]) for e in ex], px, [e[2] * GRID // IMAGE_SIZE for e in ex])
        loss = loss_e + gen_weight * loss_g + und_weight * loss_u
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            log.info("editgen step %d edit %.4f gen %.4f und %.4f %.1fs/step", step, loss_e.item(), loss_g.item(),
                     loss_u.item(), (time.time() - t0) / 25)
            t0 = time.time()
        if step % ckpt_every == 0 or step == steps:
            torch_save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                               "rng": rng.getstate()}, ckpt)
    atomic_write_text(work / "editgen_done.json", json.dumps({"steps": steps, "batch": batch, "replay_batch": replay,
                                                        "und_batch": und_batch, "lr": lr, "seed": seed}))
