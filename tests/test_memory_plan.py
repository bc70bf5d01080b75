"""The memory plan: its numbers against real tensors on the CPU and hand-computed values at Janus-Pro's shape, and a
run that does not fit refused before any work."""
from __future__ import annotations

import pytest
import torch

from gridar_desktop.engine import memory_plan as mp
from gridar_desktop.engine.decode import decode, merge_streams, prefill, start
from gridar_desktop.engine.memory_plan import GIB, DoesNotFit, kv_bytes, model_shape, plan
from gridar_desktop.engine.sampling import SamplingParams
from gridar_desktop.engine.search import Search, SearchRequest
from gridar_desktop.engine.tiny import tiny_backend

PROMPT = "a red circle above a blue square"


def janus_pro(size: str) -> dict:
    """Janus-Pro-1B / -7B's config.json content as the planner reads it (published dimensions; see
    benchmarks/memory_table.py for where each value comes from)."""
    hidden, inter, layers, heads = {"1B": (2048, 5632, 24, 16), "7B": (4096, 11008, 30, 32)}[size]
    return {"model_type": "janus", "tie_word_embeddings": False,
            "text_config": {"model_type": "llama", "hidden_size": hidden, "intermediate_size": inter,
                            "num_hidden_layers": layers, "num_attention_heads": heads,
                            "num_key_value_heads": heads, "vocab_size": 102400,
                            "max_position_embeddings": 16384},
            "vision_config": {"projection_dim": hidden},
            "vq_config": {"projection_dim": hidden, "image_token_embed_dim": hidden}}


def cache_bytes(cache) -> int:
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


def peak_allocated(fn) -> int:
    """The most bytes torch's CPU allocator held at once while `fn` ran, above what it held before (read from the
    profiler's allocation events)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


# -- the KV cache ------------------------------------------------------------------------------------------------

def test_kv_formula_equals_a_real_cache_after_prefill_and_decoding():
    b = tiny_backend(seed=0)
    shape = model_shape(b.model.config, b.model)
    state = start(b, PROMPT, n=4)
    assert cache_bytes(state.cache) == kv_bytes(shape, torch.float32, state.rows, state.mask.shape[1])
    state = decode(b, state, 5, SamplingParams(cfg=2.0), generator=torch.Generator().manual_seed(0))
    assert cache_bytes(state.cache) == kv_bytes(shape, torch.float32, 8, state.mask.shape[1])
    # a third (layout) stream, left-padded to the longest row: rows x the padded width
    ids = b.prompt_ids(PROMPT + ", with the red circle at the top")
    layout = prefill(b, {"layout": [ids] * 4}, state.tokens)
    joined = merge_streams(state, layout)
    assert cache_bytes(joined.cache) == kv_bytes(shape, torch.float32, 12, joined.mask.shape[1])


def test_kv_cache_by_hand_at_janus_pro_7b():
    shape = model_shape(janus_pro("7B"))
    per_position = 30 * 2 * 32 * 128 * 2                # layers x (K, V) x heads x head size x bf16
    assert mp.kv_bytes_per_position(shape, "bf16") == per_position == 491_520
    p = plan(shape, "bf16", method="gridar", n=4, prompt_tokens=40, clause_tokens=24)
    assert p.positions == 40 + 24 + 576
    full = per_position * 4 * 3 * 640
    assert p.phases["decoding the last row"] >= full
    # the cache at the peak is the finished candidates' (the final pick runs beside it)
    assert p.kv_cache == full
    # issue 27's figure: N=4 x 3 rows x 1,176 positions (600-token prompts) = 6.9 GB
    assert abs(kv_bytes(shape, "bf16", 12, 1176) / 1e9 - 6.94) < 0.01


def test_rollouts_hold_a_second_cache():
    shape = model_shape(janus_pro("1B"))
    view = plan(shape, "bf16", method="gridar", n=4)
    rollout = plan(shape, "bf16", method="gridar", n=4, verify_by="rollout")
    band = kv_bytes(shape, "bf16", 12, 64 + 288)
    assert rollout.kv_cache == view.kv_cache + band
    assert rollout.total > view.total


def test_guidance_rows_by_method():
    shape = model_shape(janus_pro("1B"))
    assert plan(shape, "bf16", method="gridar").run.rows_per_candidate == 3
    assert plan(shape, "bf16", method="gridar", strategy="replace").run.rows_per_candidate == 2
    assert plan(shape, "bf16", method="best-of-n", n=8).run.rows_per_candidate == 2
    two = plan(shape, "bf16", method="gridar", guidance_rows=2)
    assert two.kv_cache * 3 == plan(shape, "bf16", method="gridar").kv_cache * 2


# -- the weights -------------------------------------------------------------------------------------------------

def test_weights_counted_on_the_architecture_equal_the_loaded_model():
    b = tiny_backend(seed=0)
    loaded = model_shape(b.model.config, b.model).params
    from_config = model_shape(b.model.config.to_dict()).params
    assert loaded == from_config
    # a tied head is counted once
    assert sum(loaded.values()) == sum(p.numel() for p in b.model.parameters())


@pytest.mark.parametrize("size,lm,total", [
    # language model by hand: embeddings + untied head (2 x vocab x hidden), per layer 4 h^2 (attention) +
    # 3 h x intermediate (MLP) + 2 h (norms), a final norm
    ("1B", 2 * 102400 * 2048 + 24 * (4 * 2048 ** 2 + 3 * 2048 * 5632 + 2 * 2048) + 2048, 2.08e9),
    ("7B", 2 * 102400 * 4096 + 30 * (4 * 4096 ** 2 + 3 * 4096 * 11008 + 2 * 4096) + 4096, 7.41e9),
])
def test_weights_by_hand_at_janus_pro_shape(size, lm, total):
    shape = model_shape(janus_pro(size))
    assert shape.params["language model"] == lm
    assert abs(sum(shape.params.values()) - total) / total < 0.005
    # SigLIP-L/16 at 384 px: about 0.30B parameters, plus the aligner into the language model's width
    assert 0.30e9 < shape.params["vision encoder"] < 0.33e9
    assert plan(shape, "bf16").weights["language model"] == 2 * lm


# -- the VQ decoder ----------------------------------------------------------------------------------------------

def test_vq_decode_estimate_matches_a_measured_decode():
    """Janus-Pro's VQ decoder (real channel widths) on a smaller token grid, measured by the allocator."""
    from transformers import JanusVQVAE, JanusVQVAEConfig
    torch.manual_seed(0)
    cfg = JanusVQVAEConfig(num_patches=6)                              # 6 x 6 tokens -> 96 px
    vq = JanusVQVAE(cfg).eval()
    codes = torch.randint(0, cfg.num_embeddings, (4, 36))
    shape = model_shape({"vision_config": {"image_size": 96, "patch_size": 16, "num_image_tokens": 36},
                         "vq_config": cfg.to_dict()})
    with torch.inference_mode():
        measured = peak_allocated(lambda: vq.decode(codes))
    estimate = mp.vq_decode_bytes(shape, torch.float32, 4)
    assert 0.9 * measured <= estimate <= 1.3 * measured, (estimate, measured)


# -- a whole run -------------------------------------------------------------------------------------------------

def test_a_tiny_run_stays_within_its_plan():
    b = tiny_backend(seed=0)
    req = SearchRequest(prompt=PROMPT, method="gridar", n=4, seed=0)
    search = Search(b, None, req)
    p = search.check_memory()
    measured = peak_allocated(lambda: Search(b, None, req).run())
    # within the plan without its fixed margin, and the plan is not a wild overestimate either
    assert 0.5 * (p.run_bytes - p.margin) <= measured <= p.run_bytes - mp.MARGIN_FIXED, (measured, p.parts())


def test_largest_n_fits_and_the_next_does_not():
    shape = model_shape(janus_pro("7B"))
    p = plan(shape, "bf16", method="gridar", n=4)
    free = 24 * GIB
    n = p.largest_n(free)
    assert n % 4 == 0 and n >= 4
    assert p.with_n(n).fits(free) and not p.with_n(n + 4).fits(free)
    # nothing at all fits in less than the weights
    assert p.largest_n(p.weight_bytes) == 0
    bon = plan(shape, "bf16", method="best-of-n", n=8)
    k = bon.largest_n(free)
    assert bon.with_n(k).fits(free) and not bon.with_n(k + 1).fits(free)


def test_a_batch_is_bounded_by_the_plan():
    shape = model_shape(janus_pro("7B"))
    p = plan(shape, "bf16", method="gridar", n=4)
    beside = 20 * GIB
    k = p.largest_batch(beside)
    assert k >= 1
    assert p.with_n(4, k).fits(beside, weights_loaded=True)
    assert not p.with_n(4, k + 1).fits(beside, weights_loaded=True)


# -- the refusal ---------------------------------------------------------------------------------------------

def test_a_run_that_does_not_fit_is_refused_before_any_work(monkeypatch):
    b = tiny_backend(seed=0)
    req = SearchRequest(prompt=PROMPT, method="gridar", n=16, seed=0)
    need = Search(b, None, req).check_memory()
    four = need.with_n(4)
    free = (four.run_bytes + need.run_bytes) // 2             # N=4 fits, N=16 does not
    monkeypatch.setattr(mp, "free_memory", lambda device: free)
    events = []
    search = Search(b, None, req, emit=events.append)
    with pytest.raises(DoesNotFit) as e:
        search.run()
    msg = str(e.value)
    assert "\n" not in msg
    assert mp.gb(need.run_bytes) in msg and mp.gb(free) in msg
    n = need.largest_n(free, weights_loaded=True)
    assert 4 <= n < 16 and f"the largest N that fits is {n}" in msg
    assert events == [] and search.cost.image_tokens == 0
    # the N it names runs
    Search(b, None, SearchRequest(prompt=PROMPT, method="gridar", n=n, seed=0)).run()


def test_a_refusal_with_nothing_that_fits_says_so(monkeypatch):
    b = tiny_backend(seed=0)
    monkeypatch.setattr(mp, "free_memory", lambda device: 1)
    with pytest.raises(DoesNotFit, match="not even one candidate fits"):
        Search(b, None, SearchRequest(prompt=PROMPT, method="single", n=1)).run()


def test_unknown_free_memory_does_not_block(monkeypatch):
    b = tiny_backend(seed=0)
    monkeypatch.setattr(mp, "free_memory", lambda device: None)
    assert Search(b, None, SearchRequest(prompt=PROMPT, method="single", n=1)).check_memory() is not None


def test_free_memory_on_the_cpu_is_the_available_ram():
    free = mp.free_memory("cpu")
    assert free is None or free > 0


def test_the_memory_table_states_its_assumptions_and_marks_every_card():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "memory_table", Path(__file__).resolve().parents[1] / "benchmarks" / "memory_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    t = table.table("bf16", 40)
    assert {r["model"] for r in t["rows"]} == {"Janus-Pro-1B", "Janus-Pro-7B"}
    seven = next(r for r in t["rows"] if r["model"] == "Janus-Pro-7B" and r["run"] == "GridAR N=4")
    assert abs(seven["parameters"] / 1e9 - 7.41) < 0.01        # 14.8 GB in bf16, as issue 27 measured
    assert not seven["fits"]["12"] and seven["fits"]["80"]
    md = table.markdown(t)
    assert md.count("\n| Janus-Pro-") == 6 and "Assumed:" in md and "40 tokens" in md


# -- defaults that belong to the model ---------------------------------------------------------------------------

def test_a_janus_pro_folder_without_gridar_json_gets_janus_pros_guidance():
    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.tiny import tiny_janus
    model, processor = tiny_janus(seed=0)
    pro = JanusBackend(model, processor, "cpu", meta={})            # no gridar.json: a Janus-Pro folder
    assert pro.defaults["guidance"] == 5.0 and pro.defaults["temperature"] == 1.0
    assert tiny_backend(seed=0).defaults["guidance"] == 2.0         # the demo format keeps the demo's


def test_gridar_json_defaults_are_read_on_load(tmp_path):
    import json

    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.models import model_defaults, read_model_meta
    from gridar_desktop.engine.tiny import save_tiny_janus
    save_tiny_janus(tmp_path, seed=0)
    meta = json.loads((tmp_path / "gridar.json").read_text())
    meta["defaults"] = {"guidance": 3.5, "temperature": 0.9, "top_k": 50, "threshold": 0.3}
    (tmp_path / "gridar.json").write_text(json.dumps(meta))
    b = JanusBackend.load(tmp_path, device="cpu")
    assert b.defaults == {"guidance": 3.5, "temperature": 0.9, "top_k": 50, "threshold": 0.3}
    # torch-free, before a load (what the CLI's parser reads)
    assert model_defaults(read_model_meta(tmp_path)) == b.defaults


@pytest.mark.parametrize("defaults,words", [
    ({"guidance": "high"}, "defaults.guidance must be a number at least 0"),
    ({"guidance": -1}, "defaults.guidance must be a number"),
    ({"temperature": 0}, "defaults.temperature must be a number above 0"),
    ({"top_k": 2.5}, "defaults.top_k must be a whole number"),
    ({"threshold": 1.5}, "defaults.threshold must be a number at least 0 and at most 1"),
    ({"cfg": 5}, "defaults.cfg is not a setting GridAR knows"),
    ([5], "defaults must be an object"),
])
def test_bad_defaults_are_one_line_naming_the_field(tmp_path, defaults, words):
    import json

    from gridar_desktop.engine.errors import ModelLoadError
    from gridar_desktop.engine.models import read_model_meta
    (tmp_path / "gridar.json").write_text(json.dumps({"defaults": defaults}))
    with pytest.raises(ModelLoadError) as e:
        read_model_meta(tmp_path)
    assert words in str(e.value) and "gridar.json" in str(e.value) and "\n" not in str(e.value)


# -- helpers the CLI, the benchmark and the studio call ----------------------------------------------------------

def test_a_benchmark_batch_is_bounded_by_free_memory(monkeypatch):
    b = tiny_backend(seed=0)
    req = SearchRequest(prompt=PROMPT, method="gridar", n=4, seed=0)
    one = mp.plan_request(b, None, req)
    three = mp.plan_request(b, None, [req] * 3)
    assert three.run.jobs == 3 and three.kv_cache == 3 * one.kv_cache
    monkeypatch.setattr(mp, "free_memory", lambda device: three.run_bytes)
    k = mp.largest_batch(b, None, req, most=16)
    assert 3 <= k < 16 and mp.plan_request(b, None, [req] * k).fits(three.run_bytes, weights_loaded=True)
    # the batch the bound allows runs; one more prompt per batch would be refused
    monkeypatch.setattr(mp, "free_memory", lambda device: mp.plan_request(b, None, [req] * k).run_bytes)
    with pytest.raises(DoesNotFit, match=f"at most {k} prompts of N = 4 fit together"):
        Search(b, None, [req] * (k + 1)).run_all()
    monkeypatch.setattr(mp, "free_memory", lambda device: None)
    assert mp.largest_batch(b, None, req, most=16) == 16


def test_the_estimate_beside_n(monkeypatch):
    b = tiny_backend(seed=0)
    p = mp.plan_request(b, None, SearchRequest(prompt=PROMPT, method="gridar", n=8))
    monkeypatch.setattr(mp, "free_memory", lambda device: 8 * GIB)
    assert mp.estimate_words(p, "cpu") == f"needs about {mp.gb(p.run_bytes)} of 8.0 GB free"
    monkeypatch.setattr(mp, "free_memory", lambda device: 1)
    assert mp.estimate_words(p, "cpu").endswith("too much, lower N")


def test_settings_not_given_take_the_models_then_the_engines():
    from gridar_desktop.engine.models import fill_defaults
    pro = fill_defaults({"guidance": None, "temperature": None, "top_k": None, "threshold": None}, {})
    assert pro == {"guidance": 5.0, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "layout_scale": None,
                   "threshold": None}
    demo = fill_defaults({"guidance": None}, {"prompt_format": "plain", "defaults": {"threshold": 0.3}})
    assert demo["guidance"] == 2.0 and demo["threshold"] == 0.3
    # what the artist gave wins, zero included
    mine = fill_defaults({"guidance": 0.0, "top_k": 0, "threshold": 0.1}, {"defaults": {"guidance": 7, "top_k": 9}})
    assert mine["guidance"] == 0.0 and mine["top_k"] == 0 and mine["threshold"] == 0.1


def test_a_loaded_model_in_two_dtypes_is_planned_in_its_language_models():
    b = tiny_backend(seed=0)
    b.model.model.language_model.to(torch.bfloat16)          # the language model in bf16, the rest in float32
    p = mp.plan_request(b, None, SearchRequest(prompt=PROMPT, method="gridar", n=4))
    assert p.dtype == "bfloat16"
    assert p.kv_cache == plan(p.model, "bf16", p.run).kv_cache
    lm = {id(q): q for mod in (b.model.model.language_model, b.model.lm_head) for q in mod.parameters()}
    assert p.weights["language model"] == sum(q.numel() * 2 for q in lm.values())
    assert p.weights["VQ"] == sum(q.numel() * 4 for q in b.model.model.vqmodel.parameters())


def test_the_cli_refuses_a_run_that_does_not_fit_in_one_line(tmp_path, monkeypatch, capsys):
    from gridar_desktop import cli
    from gridar_desktop.engine.tiny import save_tiny_janus
    folder = tmp_path / "model"
    save_tiny_janus(folder, seed=0)
    b = tiny_backend(seed=0)
    four = mp.plan_request(b, None, SearchRequest(prompt=PROMPT, method="gridar", n=4))
    # what is free between a run of 4 and one of 8 once the model is loaded; before it loads, its weights' worth more
    from gridar_desktop.engine.backend import JanusBackend
    loaded, load = [], JanusBackend.load.__func__
    monkeypatch.setattr(JanusBackend, "load", classmethod(lambda cls, *a, **k: loaded.append(1) or load(cls, *a, **k)))
    monkeypatch.setattr(mp, "free_memory", lambda device: (four.run_bytes + four.with_n(8).run_bytes) // 2
                        + (0 if loaded else four.weight_bytes))
    out = tmp_path / "out.png"
    capsys.readouterr()
    code = cli.main(["generate", PROMPT, "--model", str(folder), "--method", "gridar", "-n", "16", "--device", "cpu",
                     "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and "the largest N that fits is 4" in err and "Traceback" not in err


def test_a_folder_is_checked_before_its_weights_load(tmp_path, monkeypatch):
    from gridar_desktop.engine.tiny import save_tiny_janus
    save_tiny_janus(tmp_path, seed=0)
    p = mp.check_before_load(tmp_path, "cpu", "float32", method="gridar", n=4, prompt_tokens=64)
    b = tiny_backend(seed=0)
    assert p.weight_bytes == sum(q.numel() * 4 for q in b.model.parameters())
    monkeypatch.setattr(mp, "free_memory", lambda device: p.total - 1)
    with pytest.raises(DoesNotFit, match=r"with the model loaded .* is free; not even N = 4, GridAR.s smallest, fits"):
        mp.check_before_load(tmp_path, "cpu", "float32", method="gridar", n=4, prompt_tokens=64)


def test_a_judge_folders_weights_are_read_from_the_safetensors_headers(tmp_path):
    from gridar_desktop.engine.errors import ModelLoadError
    from gridar_desktop.engine.tiny import save_tiny_janus
    model = save_tiny_janus(tmp_path, seed=0)
    unique = {id(q): q for q in model.parameters()}.values()
    assert mp.safetensors_bytes(tmp_path, "bf16") == sum(q.numel() * 2 for q in unique)
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 12)
    with pytest.raises(ModelLoadError, match="broken.safetensors"):
        mp.safetensors_bytes(tmp_path, "bf16")


@pytest.mark.parametrize("hidden,layers,heads,rows,length", [(256, 2, 4, 8, 200), (512, 4, 8, 12, 100)])
def test_forward_estimate_bounds_a_measured_prefill(hidden, layers, heads, rows, length):
    b = tiny_backend(seed=0, hidden=hidden, layers=layers, heads=heads)
    shape = model_shape(b.model.config, b.model)
    ids = [[1] + [8] * (length - 1)] * rows
    with torch.inference_mode():
        measured = peak_allocated(lambda: prefill(b, {"cond": ids}))
    estimate = (mp.forward_bytes(shape.hidden, shape.intermediate, shape.heads, rows, length, torch.float32)
                + kv_bytes(shape, torch.float32, rows, length))
    assert measured <= estimate <= 2 * measured, (estimate, measured)


def test_a_plan_before_the_run_equals_the_runs_and_takes_any_prompt():
    b = tiny_backend(seed=0)
    req = SearchRequest(prompt=PROMPT, method="gridar", n=8)
    assert mp.plan_request(b, None, req) == Search(b, None, req).check_memory()
    # an empty or half-typed prompt still gets an estimate (the studio shows it while the artist types)
    for text in ("", "a red circ", "words the demo model does not know"):
        assert mp.plan_request(b, None, SearchRequest(prompt=text, method="gridar", n=8)).run_bytes > 0


def test_the_cli_refuses_before_loading_what_cannot_fit_at_all(tmp_path, monkeypatch, capsys):
    from gridar_desktop import cli
    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.tiny import save_tiny_janus
    folder = tmp_path / "model"
    save_tiny_janus(folder, seed=0)
    capsys.readouterr()                                       # the library's progress while saving the test model
    monkeypatch.setattr(mp, "free_memory", lambda device: 1024)
    monkeypatch.setattr(JanusBackend, "load", classmethod(lambda cls, *a, **k: pytest.fail("the weights loaded")))
    code = cli.main(["generate", PROMPT, "--model", str(folder), "--method", "gridar", "-n", "4", "--device", "cpu",
                     "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "is free" in err


def test_the_cli_takes_the_models_guidance_unless_given(tmp_path):
    import argparse

    from gridar_desktop import cli
    from gridar_desktop.engine.tiny import save_tiny_janus
    save_tiny_janus(tmp_path, seed=0)
    (tmp_path / "gridar.json").unlink()                      # a Janus-Pro folder carries none
    args = lambda model, cfg: argparse.Namespace(model=model, cfg=cfg, temperature=None)  # noqa: E731
    assert cli._settings(args("demo", None))["guidance"] == 2.0
    assert cli._settings(args(str(tmp_path), None))["guidance"] == 5.0
    assert cli._settings(args(str(tmp_path), 3.5))["guidance"] == 3.5


def test_a_separate_judge_counts_in_the_check_before_load(tmp_path, monkeypatch):
    """--judge FOLDER: the plan before the load holds the judge's weights (read from its safetensors headers) and
    its questions' batch, and a run that fits alone but not with its judge is refused, naming the weights."""
    from test_vlm_roles import tiny_qwen_vl_folder      # pytest puts tests/ on the path

    from gridar_desktop.engine.judges import judge_shape_for
    from gridar_desktop.engine.tiny import save_tiny_janus
    save_tiny_janus(tmp_path / "gen", seed=0)
    folder = tiny_qwen_vl_folder(tmp_path / "qwen")
    judge = judge_shape_for(str(folder), "float32", image_size=64)
    from transformers import Qwen2_5_VLForConditionalGeneration
    loaded = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder)
    assert judge.weight_bytes == sum(q.numel() * 4 for q in loaded.parameters())
    assert (judge.layers, judge.kv_heads, judge.head_dim, judge.image_tokens) == (1, 1, 16, 4)
    run = dict(method="gridar", n=4, prompt_tokens=64)
    alone = mp.check_before_load(tmp_path / "gen", "cpu", "float32", **run)
    judged = mp.check_before_load(tmp_path / "gen", "cpu", "float32", judge=judge, **run)
    assert judged.weights[judge.name] == judge.weight_bytes
    assert judged.total >= alone.total + judge.weight_bytes and judged.phases["judging a band"] > 0
    monkeypatch.setattr(mp, "free_memory", lambda device: alone.total)
    with pytest.raises(DoesNotFit, match="is free"):
        mp.check_before_load(tmp_path / "gen", "cpu", "float32", judge=judge, **run)
