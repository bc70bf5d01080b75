"""The GPU speed planner's arithmetic (engine.speed_plan) and the GPU decode benchmark's CPU smoke run."""
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gridar_desktop.engine import speed_plan as sp
from gridar_desktop.engine.memory_plan import ModelShape

ROOT = Path(__file__).resolve().parents[1]


def toy_shape(**kw) -> ModelShape:
    base = dict(layers=2, kv_heads=4, head_dim=16, heads=4, hidden=64, intermediate=128, image_tokens=16,
                image_features=16, vision_hidden=32, vision_intermediate=64, vision_heads=2, vq_latent=4,
                vq_base_channels=8, vq_channel_multiplier=(1, 2), vq_latent_channels=8, codebook=32,
                params={"language model": 500_000, "vision encoder": 100_000, "VQ": 10_000, "image head": 3_000})
    return ModelShape(**{**base, **kw})


CARD = sp.Card("test card", bandwidth_gbs=1.0, bf16_tflops=1e-3, memory_gb=1)     # 1e9 B/s, 1e9 FLOP/s


def test_decode_params_by_hand():
    s = toy_shape()
    per_layer = 64 * 64 * 4 + 3 * 64 * 128 + 2 * 64          # q, k, v, o; gate, up, down; two norms
    assert sp.decode_params(s) == 2 * per_layer + 64 + 3_000


def test_decode_params_count_the_real_7b_decoder():
    """The formula against the parameters of Janus-Pro-7B's architecture built on the meta device: decoder layers,
    final norm and the image-generation parts."""
    from transformers import JanusForConditionalGeneration
    cfg = sp.janus_pro_config("7B")
    with torch.device("meta"):
        model = JanusForConditionalGeneration(cfg)
    m = model.model
    counted = sum(p.numel() for mod in (m.language_model.layers, m.language_model.norm, m.generation_embeddings,
                                        m.generation_aligner, m.generation_head) for p in mod.parameters())
    assert sp.decode_params(sp.model_shape(cfg)) == counted
    # 12.3 GB of weights per step in bf16, as the issue measured
    assert 12.2e9 < 2 * counted < 12.5e9


def test_step_floor_is_the_larger_of_memory_and_compute():
    s = toy_shape()
    p = sp.decode_params(s)
    kvpp = 2 * 2 * 4 * 16 * 2                                # layers x (k, v) x kv heads x head size x bf16
    floor, weights_only, compute = sp.step_seconds(s, "bf16", rows=3, positions=10, c=CARD)
    mem = (2 * p + kvpp * 3 * 10) / 1e9
    flops = (2 * p * 3 + 4 * 3 * 10 * 4 * 16 * 2) / 1e9
    assert weights_only == pytest.approx(2 * p / 1e9)
    assert floor == pytest.approx(max(mem, flops)) and compute == (flops > mem)
    fast = replace(CARD, bf16_tflops=1e6)                      # compute free: memory-bound
    assert sp.step_seconds(s, "bf16", 3, 10, fast)[0] == pytest.approx(mem)
    assert sp.step_seconds(s, "fp32", 3, 10, fast)[1] == pytest.approx(2 * weights_only)


def test_prediction_adds_up_and_orders_methods():
    s = toy_shape()
    fast = replace(CARD, bf16_tflops=1e6)
    r = sp.predict_seconds(s, "bf16", "gridar", 4, fast, prompt_tokens=10, clause_tokens=4)
    parts = r["decode_s"] + r["prefill_s"] + r["judging_s"] + r["vq_s"]
    assert r["floor_s"] == pytest.approx(parts)
    assert r["decode_steps"] == 16 and r["expected_s"] > r["floor_s"]
    # memory-bound steps: the decode is the sum over steps of weights + the KV rows read at that step
    kvpp = 2 * 2 * 4 * 16 * 2
    rows = [8] * 4 + [12] * 12                                  # 2 rows per candidate, 3 after the first quarter
    pos = [10 + k + (4 if k >= 4 else 0) for k in range(16)]
    want = sum((2 * sp.decode_params(s) + kvpp * r_ * p_) / 1e9 for r_, p_ in zip(rows, pos))
    assert r["decode_s"] == pytest.approx(want)
    assert r["decode_weight_floor_s"] == pytest.approx(16 * 2 * sp.decode_params(s) / 1e9)
    single = sp.predict_seconds(s, "bf16", "single", 4, fast, prompt_tokens=10)
    bon = sp.predict_seconds(s, "bf16", "best-of-n", 4, fast, prompt_tokens=10)
    assert single["n"] == 1 and single["judging_s"] == 0 and single["vq_images"] == 1
    assert single["floor_s"] < bon["floor_s"] < r["floor_s"]
    assert sp.predict_seconds(s, "bf16", "gridar", 4, fast, previews=True)["vq_images"] == 4 + 8 + 4 * 4


def test_a_faster_card_and_fewer_layers_predict_less():
    seven = sp.janus_pro_config("7B")
    two = sp.janus_pro_config("7B", layers=2)
    h100 = sp.predict_seconds(seven, "bf16", "gridar", 4, "H100 SXM")
    h200 = sp.predict_seconds(seven, "bf16", "gridar", 4, "H200")
    assert h200["floor_s"] < h100["floor_s"]
    assert h100["step_floor_ms"] == pytest.approx(1e3 * 2 * sp.decode_params(sp.model_shape(seven)) / 3350e9,
                                                  rel=1e-3)
    assert sp.predict_seconds(two, "bf16", "gridar", 4, "H100 SXM")["floor_s"] < h100["floor_s"] / 5


def test_vq_flops_count_the_decoders_3x3_convolutions():
    """The closed form against a count over the convolutions the demo-size VQ decoder actually runs."""
    from transformers import JanusVQVAE
    from gridar_desktop.engine.demo_format import janus_config
    cfg = janus_config().vq_config                  # 8 x 8 latents -> 64 px, channels 32 x (1, 2, 2, 4)
    vq = JanusVQVAE(cfg).eval()
    seen = []

    def hook(mod, inp, out):
        if mod.kernel_size == (3, 3):
            seen.append(2.0 * 9 * mod.in_channels * mod.out_channels * out.shape[-2] * out.shape[-1])
    for mod in vq.decoder.modules():
        if isinstance(mod, torch.nn.Conv2d):
            mod.register_forward_hook(hook)
    with torch.no_grad():
        vq.decode(torch.zeros((1, 64), dtype=torch.long))
    shape = toy_shape(vq_latent=8, vq_base_channels=cfg.base_channels,
                      vq_channel_multiplier=tuple(cfg.channel_multiplier), vq_latent_channels=cfg.latent_channels)
    assert sp.vq_decode_flops(shape, res_blocks=cfg.num_res_blocks) == pytest.approx(sum(seen))


def test_cards_by_device_name():
    assert sp.card("NVIDIA H100 80GB HBM3").name == "H100 SXM"
    assert sp.card("NVIDIA H100 PCIe").name == "H100 PCIe"
    assert sp.card("NVIDIA H200").name == "H200"
    assert sp.card("NVIDIA A100-SXM4-40GB").name == "A100 40GB"
    assert sp.card("NVIDIA A100-SXM4-80GB").name == "A100 80GB"
    assert sp.card("NVIDIA GeForce RTX 4090").name == "RTX 4090"
    assert sp.card("NVIDIA L40S").name == "L40S"
    with pytest.raises(ValueError, match="no numbers for the card 'Voodoo 3'"):
        sp.card("Voodoo 3")
    with pytest.raises(ValueError, match="unknown method"):
        sp.predict_seconds(toy_shape(), "bf16", "beam", 4, CARD)
    with pytest.raises(ValueError, match="unknown Janus-Pro size"):
        sp.janus_pro_config("3B")


def test_the_benchmark_smoke_run_measures_every_field(tmp_path):
    """benchmarks/gpu_decode.py at the reduced shape on CPU (what CI runs): every timing and memory field is a
    measured positive number, and our loop's greedy tokens equal the library's."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_decode
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    out = tmp_path / "r.json"
    threads = torch.get_num_threads()
    try:
        gpu_decode.main(["--smoke", "--device", "cpu", "--threads", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["device"] == "cpu"
    [m] = report["models"]
    assert m["skipped"] == [] and "errors" not in m and m["image_tokens"] == 64
    assert m["graph_capture_error"] is None
    single, bon, grid = m["single_greedy"], m["best_of_n_8"], m["gridar_4"]
    for value in (single["ours_eager_tok_s"], single["ours_graph_tok_s"], single["library_tok_s"],
                  bon["ours_tok_s"], bon["library_tok_s"], grid["tok_s"], single["step_ms"]):
        assert isinstance(value, float) and value > 0
    assert single["ours_graph_vs_library"] == pytest.approx(single["ours_graph_s"] / single["library_s"], rel=0.01)
    assert single["identical_to_library"] and single["graph_identical_to_eager"]
    assert all(isinstance(b, int) and b > 10 * 2 ** 20 for b in [*single["peak_bytes"].values(),
                                                                  *bon["peak_bytes"].values(), grid["peak_bytes"]])
    assert grid["decode_token_rows"] > 0 and grid["prefill_token_rows"] > 0
