"""Stage 2 of the demo model: train the generation path (language model, image embeddings, aligner, head) on
prompt -> image tokens, then pack everything into a `save_pretrained` folder.

Data: scenes from the scene sampler over all categories, encoded once by the trained VQ into a token table
(`gen_data.pt`, resumable). Each training row is [BOS, prompt, BOI, image tokens]; 30% of prompts carry the layout
clause that describes where the sampled scene put each group, and 10% of rows are Janus's unconditional form (prompt
words replaced by the pad token) so that classifier-free guidance has an unconditional model to subtract.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..engine.decode import left_pad
from ..io.atomic import atomic_write_text, torch_save_atomic
from ..shapes.grammar import SceneSpec, format_prompt
from ..shapes.scene import layout_of, render_scene
from .data import random_scene, to_tensor
from .demo_config import BOI, BOS, PAD, TEXT_VOCAB, build_processor, save_folder

log = logging.getLogger(__name__)
WORD_ID = {w: i for i, w in enumerate(TEXT_VOCAB)}
UNCOND_P = 0.1
LAYOUT_P = 0.3


def words_to_ids(prompt: str) -> list[int]:
    return [WORD_ID[w] for w in prompt.replace(",", " , ").split()]


def build_dataset(vq, n: int, seed: int, path: Path, chunk: int = 256) -> dict:
    """Render and encode `n` scenes; store base prompt ids, layout prompt ids and tokens. Resumable by chunk."""
    from .vq import quantize
    data = torch.load(path, weights_only=True) if path.exists() else {"base": [], "layout": [], "tokens": []}
    rng = random.Random(seed * 7919 + len(data["tokens"]))
    vq.eval()
    while len(data["tokens"]) < n:
        specs, objs = [], []
        for _ in range(chunk):
            spec, o, _ = random_scene(rng)
            specs.append(spec)
            objs.append(o)
        with torch.no_grad():
            _, idx, _ = quantize(vq, to_tensor([render_scene(o) for o in objs]))
        for spec, o, t in zip(specs, objs, idx):
            data["base"].append(words_to_ids(format_prompt(spec)))
            lay = SceneSpec(spec.groups, spec.relation, layout_of(o, spec))
            data["layout"].append(words_to_ids(format_prompt(lay)))
            data["tokens"].append(t.to(torch.int16))
        if len(data["tokens"]) % (chunk * 20) == 0 or len(data["tokens"]) >= n:
            torch_save_atomic(data, path)
            log.info("encoded %d / %d scenes", len(data["tokens"]), n)
    data["tokens_t"] = torch.stack(data["tokens"]).long()
    return data


def three_group_rows(data: dict) -> list[int]:
    """Rows whose base prompt has three groups (the only form with a comma before any layout clause)."""
    return [i for i, words in enumerate(data["base"]) if WORD_ID[","] in words]


def make_batch(data: dict, rng: random.Random, batch: int, favour: list[int] | None = None,
               favour_share: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(text ids (B, L) left-padded with [BOS .. BOI], mask (B, L), image tokens (B, 64)). With `favour`, a share
    `favour_share` of the rows is drawn from those row indices (the rest from all rows)."""
    picks = [rng.choice(favour) if favour and rng.random() < favour_share else rng.randrange(len(data["base"]))
             for _ in range(batch)]
    rows = []
    for i in picks:
        words = data["layout"][i] if rng.random() < LAYOUT_P else data["base"][i]
        ids = [BOS] + words + [BOI]
        if rng.random() < UNCOND_P:
            ids = [BOS] + [PAD] * len(words) + [BOI]
        rows.append(ids)
    ids, mask = left_pad(rows, PAD)
    return ids, mask, data["tokens_t"][picks]


def generation_loss(model, ids: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every image token given the prompt and the tokens before it."""
    text = model.get_input_embeddings()(ids)                                   # (B, L, H)
    img = model.prepare_embeddings_for_image_generation(tokens[:, :-1])        # (B, 63, H)
    embeds = torch.cat([text, img], 1)
    full_mask = torch.cat([mask, mask.new_ones(tokens.shape[0], tokens.shape[1] - 1)], 1)
    pos = (full_mask.cumsum(-1) - 1).clamp_min(0)
    h = model.model.language_model(inputs_embeds=embeds, attention_mask=full_mask, position_ids=pos).last_hidden_state
    logits = model.model.generation_head(h[:, ids.shape[1] - 1:])              # (B, 64, K): from BOI onwards
    return F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())


def _trainable(model):
    m = model.model
    mods = [m.language_model, m.generation_embeddings, m.generation_aligner, m.generation_head]
    return [p for mod in mods for p in mod.parameters()]


def train_gen(config, work: str | Path, steps: int = 6000, batch: int = 64, lr: float = 1e-3, seed: int = 0,
              n_scenes: int = 120_000, ckpt_every: int = 200) -> None:
    from transformers import JanusForConditionalGeneration

    from .vq import build_vq
    work = Path(work)
    vq = build_vq(config)
    vq.load_state_dict(torch.load(work / "vq_final.pt", weights_only=True))
    data = build_dataset(vq, n_scenes, seed, work / "gen_data.pt")
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config)
    model.model.vqmodel.load_state_dict(vq.state_dict())
    params = _trainable(model)
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    rng = random.Random(seed + 1)
    step = 0
    ckpt = work / "gen_ckpt.pt"
    if ckpt.exists():
        ck = torch.load(ckpt, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        rng.setstate(ck["rng"])
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed generator training at step %d", step)
    model.train()
    t0, seen = time.time(), 0
    while step < steps:
        warm = min(1.0, (step + 1) / 300)
        for g in opt.param_groups:
            g["lr"] = lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        ids, mask, tokens = make_batch(data, rng, batch)
        loss = generation_loss(model, ids, mask, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        seen += tokens.numel()
        if step % 50 == 0:
            log.info("gen step %d loss %.4f (%.0f image tokens/s)", step, loss.item(), seen / (time.time() - t0))
            t0, seen = time.time(), 0
        if step % ckpt_every == 0 or step == steps:
            torch_save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                               "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, ckpt)
    # gen_final.pt last: train_demo skips the stage once it exists, so the record must be there before
    atomic_write_text(work / "gen_done.json", json.dumps({"steps": steps, "batch": batch, "seed": seed,
                                                          "scenes": n_scenes}))
    torch_save_atomic(model.state_dict(), work / "gen_final.pt")


def pack(config, work: str | Path, out: str | Path) -> None:
    """Assemble the shipped folder: fp16 weights, processor files, gridar.json (prompt format, canvas colour)."""
    from transformers import JanusForConditionalGeneration

    from ..shapes.scene import BACKGROUND
    work = Path(work)
    model = JanusForConditionalGeneration(config)
    model.load_state_dict(torch.load(work / "gen_final.pt", weights_only=True))
    model = model.to(torch.float16).eval()
    meta = {"prompt_format": "plain", "canvas_colour": list(BACKGROUND), "name": "The demo model",
            "prompt_hint": "It knows only the shapes world: colours red, green, blue, yellow, purple, orange; shapes "
                           "circle, square, triangle; counts a/one to four; e.g. 'a red circle above two blue squares'",
            "training": {k: json.loads((work / f).read_text()) for k, f in
                         (("vq", "vq_done.json"), ("gen", "gen_done.json")) if (work / f).exists()}}
    save_folder(model, build_processor(), out, meta=meta)
