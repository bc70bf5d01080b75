"""The preallocated KV cache (engine.static_cache) against transformers' growing DynamicCache: the same tokens under
greedy decoding and under a fixed generator, through every phase of the loop (prefill, select, fork, merge,
concat, forced runs), on the tiny model, in GridAR runs with pruning, refills and new layout rows, and on the demo
model. Also the fixed-shape step a CUDA graph captures, run eagerly on CPU."""
import numpy as np
import pytest
import torch

from gridar_desktop.engine import static_cache as kv
from gridar_desktop.engine.decode import (copy_stream, decode, decode_graph, fork, kv_cache_kind, merge_streams,
                                          new_generator, prefill, select, start, step)
from gridar_desktop.engine.sampling import SamplingParams
from gridar_desktop.engine.search import Search, SearchRequest
from gridar_desktop.engine.tiny import tiny_backend

from test_search import ScriptedRoles

PROMPT = "two red circles and a blue square"
GREEDY = SamplingParams(cfg=5.0, greedy=True)
SAMPLED = SamplingParams(cfg=3.0, temperature=1.0, top_k=50)


@pytest.fixture(scope="module")
def backend():
    torch.set_num_threads(1)
    return tiny_backend(seed=3)


def both(fn):
    """fn() with the growing cache, then with the static one."""
    out = {}
    for kind in ("dynamic", "static"):
        with kv_cache_kind(kind):
            out[kind] = fn()
    return out["dynamic"], out["static"]


def test_static_is_the_default_and_writes_in_place(backend):
    st = start(backend, PROMPT, 4)
    assert isinstance(st.cache, kv.StaticKVCache) and st.cache.capacity == st.mask.shape[1]
    seen = []
    st = decode(backend, st, 20, GREEDY, new_generator(0),
                on_token=lambda s: seen.append(tuple(layer.kbuf.data_ptr() for layer in s.cache.layers)))
    # one reservation for the call (exactly its 20 positions), then every step writes into the same buffers
    assert len(seen) == 20 and len(set(seen)) == 1
    assert st.cache.capacity == st.cache.get_seq_length() == st.mask.shape[1] and st.cache.grown == 0


@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_same_tokens_as_the_growing_cache(backend, params):
    a, b = both(lambda: decode(backend, start(backend, PROMPT, 4), 64, params, new_generator(5)))
    assert isinstance(a.cache, kv.DynamicCache) and isinstance(b.cache, kv.StaticKVCache)
    assert torch.equal(a.tokens, b.tokens)
    assert torch.equal(a.hidden, b.hidden)                      # the same arithmetic, bit for bit


def test_every_row_operation_keeps_the_same_cache(backend):
    """select (branch, drop, refill), fork, copy_stream + merge_streams (a layout row of another length), and a
    forced run of several tokens: the cached keys and values, and the tokens drawn after, are those of the growing
    cache."""
    def run():
        st = decode(backend, start(backend, PROMPT, 4), 16, SAMPLED, new_generator(1))
        st = select(st, [1, 3, 3, 0])
        rollout = decode(backend, fork(st), 48, SAMPLED, new_generator(2))
        lay = prefill(backend, {"layout": [backend.prompt_ids(PROMPT + ", with the red circles at the top")] * 4},
                      st.tokens)
        st = merge_streams(st, lay)
        st = merge_streams(st, copy_stream(st, "cond", [0, 1, 2, 3], "extra"))
        st = step(backend, st, torch.randint(0, 64, (4, 3), generator=torch.Generator().manual_seed(0)))
        st = decode(backend, st, 20, SAMPLED, new_generator(3))
        return st, rollout
    (a, ra), (b, rb) = both(run)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(ra.tokens, rb.tokens)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.pos, b.pos)
    for la, lb in zip(a.cache.layers, b.cache.layers):
        assert la.keys.shape == lb.keys.shape
        assert torch.equal(la.keys, lb.keys) and torch.equal(la.values, lb.values)


def test_a_fork_is_independent(backend):
    st = decode(backend, start(backend, PROMPT, 2), 8, SAMPLED, new_generator(1))
    keys = [layer.keys.clone() for layer in st.cache.layers]
    decode(backend, fork(st), 30, SAMPLED, new_generator(2))
    assert all(torch.equal(k, layer.keys) for k, layer in zip(keys, st.cache.layers))


def test_growth_past_the_reservation_keeps_what_is_written(backend):
    st = start(backend, PROMPT, 2)                                  # room for the prompt only
    for t in range(5):                                              # steps outside decode: no reservation
        st = step(backend, st, torch.full((2,), t))
    assert st.cache.grown > 0
    with kv_cache_kind("dynamic"):
        ref = start(backend, PROMPT, 2)
        for t in range(5):
            ref = step(backend, ref, torch.full((2,), t))
    for la, lb in zip(ref.cache.layers, st.cache.layers):
        assert torch.equal(la.keys, lb.keys)


def run_search(backend, **kw):
    req = SearchRequest(prompt=PROMPT, **{"n": 4, "seed": 11, **kw})
    verdicts = [[0.9, 0.1, 0.8, 0.2], [0.9, 0.3, 0.1, 0.9]]
    return Search(backend, ScriptedRoles(verdicts=[list(v) for v in verdicts]), req).run()


@pytest.mark.parametrize("kw", [
    {},                                                   # three-way, prune + copy refill, new layout rows
    {"strategy": "replace"},                              # prompt replacement: rows reordered, some prefilled
    {"refill": "redraw"},                                 # redrawn slots: fresh bands concatenated
    {"verify_by": "rollout"},                             # forks completed to the end at every verified band
    {"n": 8},                                             # two groups
    {"method": "best-of-n"},
    {"params": GREEDY},
], ids=["three-way", "replace", "redraw", "rollout", "n8", "best-of-n", "greedy"])
def test_gridar_runs_draw_the_same_images(backend, kw):
    a, b = both(lambda: run_search(backend, **kw))
    assert torch.equal(a.tokens, b.tokens) and a.tree == b.tree
    assert a.cost.roles["generator"].decode_token_rows == b.cost.roles["generator"].decode_token_rows


def test_an_edit_draws_the_same_tokens(backend):
    """Forced runs of kept tokens (several positions per forward) on the static cache."""
    from test_edit import box_mask, source_image
    from gridar_desktop.engine.edit import prepare_edit
    e = prepare_edit(backend, source_image(), box_mask())
    a, b = both(lambda: Search(backend, ScriptedRoles(), SearchRequest(
        prompt="a red circle and a blue square", method="gridar", n=4, seed=2, edit=e, strategy="replace")).run())
    assert torch.equal(a.tokens, b.tokens)


def test_the_demo_model_draws_the_same_images():
    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.models import demo_model_dir
    torch.set_num_threads(1)
    demo = JanusBackend.load(demo_model_dir(), device="cpu", dtype="float32")
    prompt = "a red circle above a blue square"
    a, b = both(lambda: Search(demo, ScriptedRoles(verdicts=[[0.9, 0.1, 0.8, 0.2]]),
                               SearchRequest(prompt=prompt, n=4, seed=4)).run())
    assert torch.equal(a.tokens, b.tokens) and a.tree == b.tree
    g, s = both(lambda: decode(demo, start(demo, prompt, 2), 64, GREEDY, new_generator(0)).tokens)
    assert torch.equal(g, s)


# -- the step a CUDA graph captures, run eagerly -------------------------------------------------------------------

@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_the_fixed_shape_step_draws_the_same_tokens(backend, params):
    """`lean.forward_static` attends over the whole buffer behind a mask (what a capture needs); its hidden states
    differ from the growing loop's by float rounding only, and the tokens here are the same."""
    with kv_cache_kind("dynamic"):
        ref = decode(backend, start(backend, PROMPT, 4), 64, params, new_generator(7))
    calls = []
    real = kv.GraphStep.__call__

    def counted(self, *a):
        calls.append(1)
        return real(self, *a)
    with decode_graph("eager"):
        kv.GraphStep.__call__ = counted
        try:
            got = decode(backend, start(backend, PROMPT, 4), 64, params, new_generator(7))
        finally:
            kv.GraphStep.__call__ = real
    assert len(calls) == 63                                    # every fed token but none of the last
    assert torch.equal(ref.tokens, got.tokens)
    torch.testing.assert_close(ref.hidden, got.hidden, atol=1e-5, rtol=1e-5)


def test_the_fixed_shape_step_in_a_gridar_run(backend):
    with kv_cache_kind("dynamic"):
        ref = run_search(backend, params=GREEDY)
    with decode_graph("eager"):
        got = run_search(backend, params=GREEDY)
    assert torch.equal(ref.tokens, got.tokens) and ref.tree == got.tree


def test_a_failed_capture_goes_on_uncaptured(backend, monkeypatch):
    """A capture that fails (here: no CUDA at all) leaves a one-line reason and the same step, run uncaptured."""
    monkeypatch.setattr(kv, "LAST_CAPTURE_ERROR", None)
    tokens = torch.tensor([3, 5])
    with kv_cache_kind("dynamic"):
        ref = step(backend, start(backend, PROMPT, 2), tokens)
    st = start(backend, PROMPT, 2)
    kv.reserve(st.cache, 4)
    graph = kv.GraphStep(backend.model.model.language_model, st.cache, st.rows, eager=False)
    got = step(backend, st, tokens, graph=graph)
    assert graph.eager and graph.replays == 1 and kv.LAST_CAPTURE_ERROR
    assert "\n" not in kv.LAST_CAPTURE_ERROR
    torch.testing.assert_close(ref.hidden, got.hidden, atol=1e-5, rtol=1e-5)


def test_no_graph_on_cpu_unless_asked(backend, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a graph step was built on CPU")
    monkeypatch.setattr(kv, "GraphStep", boom)
    with decode_graph("auto"):
        decode(backend, start(backend, PROMPT, 2), 10, GREEDY, new_generator(0))


def test_unknown_switch_values_are_refused():
    with pytest.raises(ValueError, match="static or dynamic"):
        with kv_cache_kind("paged"):
            pass
    with pytest.raises(ValueError, match="auto, off or eager"):
        with decode_graph("always"):
            pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replays_match_the_eager_step():
    b = tiny_backend(seed=3)
    b.model.to("cuda")
    b.device = torch.device("cuda")
    with decode_graph("eager"):
        ref = decode(b, start(b, PROMPT, 4), 64, GREEDY, new_generator(0, "cuda"))
    with decode_graph("auto"):
        got = decode(b, start(b, PROMPT, 4), 64, GREEDY, new_generator(0, "cuda"))
    assert torch.equal(ref.tokens, got.tokens)
    np.testing.assert_allclose(ref.hidden.float().cpu().numpy(), got.hidden.float().cpu().numpy(), atol=1e-4)


def test_a_fork_copies_once_on_its_first_write(backend):
    """A static fork shares its source's buffers until it writes: then it copies into its own, and neither the
    source nor a second fork of it sees the first fork's tokens."""
    st = decode(backend, start(backend, PROMPT, 2), 8, SAMPLED, new_generator(1))
    a, b = fork(st), fork(st)
    assert all(la.kbuf is ls.kbuf for la, ls in zip(a.cache.layers, st.cache.layers))
    keys = [layer.keys.clone() for layer in st.cache.layers]
    ra = decode(backend, a, 20, SAMPLED, new_generator(2))
    assert all(la.kbuf is not ls.kbuf for la, ls in zip(ra.cache.layers, st.cache.layers))
    assert ra.cache.grown == 0                                   # the copy was the reservation, not a growth
    rb = decode(backend, b, 20, SAMPLED, new_generator(2))
    assert torch.equal(ra.tokens, rb.tokens)                     # b read the source, not a's writes
    st2 = decode(backend, st, 20, SAMPLED, new_generator(2))      # and the source goes on as if never forked
    assert torch.equal(st2.tokens, ra.tokens)
    assert all(torch.equal(k, layer.keys[:, :, :k.shape[2]]) for k, layer in zip(keys, st2.cache.layers))
