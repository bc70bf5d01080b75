"""Stage 1 of the demo model: train Janus's VQ tokenizer (encoder, codebook, decoder) on shapes-world renders.

The quantizer is trained L2-normalised (cosine nearest code, straight-through gradient, commitment loss, dead-code
reset) and the stored codebook is normalised. Then the library's own paths agree with training: its `quantize`
takes a Euclidean argmin against unit-norm codes, which for a fixed |z| picks the same code as the largest cosine,
and its `decode` L2-normalises the looked-up codes, which are already unit norm.
Resumable: a checkpoint (weights, optimiser, step, RNG state) is written every `ckpt_every` steps.
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..io.atomic import atomic_write_text, torch_save_atomic
from .data import image_batch

log = logging.getLogger(__name__)


def build_vq(config):
    from transformers import JanusVQVAE
    vq_cfg = config.vq_config
    vq_cfg.num_patches = config.vision_config.image_size // config.vision_config.patch_size
    return JanusVQVAE(vq_cfg)


def quantize(vq, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (B, 3, H, W) -> (straight-through codes (B, D, h, w), indices (B, h*w), commitment loss)."""
    z = F.normalize(vq.quant_conv(vq.encoder(x)), dim=1)                  # (B, D, h, w), unit norm per position
    codebook = F.normalize(vq.quantize.embedding.weight, dim=-1)          # (K, D)
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])                  # (B*h*w, D)
    idx = (flat @ codebook.T).argmax(-1)
    zq = codebook[idx].view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    commit = F.mse_loss(zq, z.detach()) + 0.25 * F.mse_loss(z, zq.detach())
    return z + (zq - z).detach(), idx.view(z.shape[0], -1), commit


def train_vq(config, out_dir: str | Path, steps: int = 6000, batch: int = 32, lr: float = 1e-3, seed: int = 0,
             ckpt_every: int = 250) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "vq_ckpt.pt"
    torch.manual_seed(seed)
    vq = build_vq(config).train()
    opt = torch.optim.Adam(vq.parameters(), lr=lr, betas=(0.5, 0.9))
    rng = random.Random(seed)
    step, usage = 0, torch.zeros(vq.quantize.num_embeddings)
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=True)
        vq.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, usage = ck["step"], ck["usage"]
        rng.setstate(ck["rng"])
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed VQ training at step %d", step)
    t0 = time.time()
    while step < steps:
        for g in opt.param_groups:        # linear warm-up, then cosine decay to 5%
            g["lr"] = lr * min(1.0, (step + 1) / 200) * (0.05 + 0.95 * 0.5 * (1 + torch.cos(
                torch.tensor(step / steps * 3.14159)).item()))
        x = image_batch(rng, batch)
        zq, idx, commit = quantize(vq, x)
        recon = vq.decoder(vq.post_quant_conv(zq))
        # Shape pixels weigh more than background: corners and edges are what the judge reads.
        weight = 1.0 + 4.0 * (x - x[:, :, :1, :1]).abs().amax(1, keepdim=True).gt(0.1).float()
        loss = (weight * ((recon - x).abs() + (recon - x) ** 2)).mean() + commit
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        usage += torch.bincount(idx.flatten(), minlength=usage.numel()).float()
        step += 1
        if step % 100 == 0:
            _reset_dead_codes(vq, x, usage)
            log.info("vq step %d loss %.4f used codes %d (%.1f img/s)", step, loss.item(), int((usage > 0).sum()),
                     100 * batch / max(time.time() - t0, 1e-6))
            usage.zero_()
            t0 = time.time()
        if step % ckpt_every == 0 or step == steps:
            torch_save_atomic({"model": vq.state_dict(), "opt": opt.state_dict(), "step": step, "usage": usage,
                               "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, ckpt_path)
    with torch.no_grad():
        vq.quantize.embedding.weight.copy_(F.normalize(vq.quantize.embedding.weight, dim=-1))
    vq.eval()
    # vq_final.pt last: train_demo skips the stage once it exists, so the record must be there before
    atomic_write_text(out / "vq_done.json", json.dumps({"steps": steps, "batch": batch, "seed": seed}))
    torch_save_atomic(vq.state_dict(), out / "vq_final.pt")
    return {"steps": steps}


@torch.no_grad()
def _reset_dead_codes(vq, x: torch.Tensor, usage: torch.Tensor) -> None:
    dead = (usage == 0).nonzero().flatten()
    if len(dead) == 0:
        return
    z = F.normalize(vq.quant_conv(vq.encoder(x)), dim=1).permute(0, 2, 3, 1).reshape(-1, vq.quantize.embedding_dim)
    pick = z[torch.randint(0, z.shape[0], (len(dead),))]
    vq.quantize.embedding.weight[dead] = F.normalize(pick + 0.01 * torch.randn_like(pick), dim=-1)
