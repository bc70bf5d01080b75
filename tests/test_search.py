"""The GridAR recipe and Best-of-N on a tiny random model with scripted judging roles."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from gridar_desktop.engine import events as ev
from gridar_desktop.engine.cancel import CancelToken
from gridar_desktop.engine.errors import Cancelled
from gridar_desktop.engine.search import (AutoPolicy, PruneDecision, Search, SearchRequest, Stage, propose_pruning,
                                          settle)
from gridar_desktop.engine.tiny import tiny_backend
from gridar_desktop.io.png import read_metadata, save_png

PROMPT = "two red circles and a blue square"
LAYOUT = PROMPT + ", with the red circles at the top and the blue square at the bottom"


class ScriptedRoles:
    """Verdicts, scores and layouts from a script, recording every call."""

    def __init__(self, verdicts=None, scores=None, layouts=None, layout_script=None):
        self.verdicts = list(verdicts or [])
        self.scores = scores
        self.layouts = layouts
        self.layout_script = list(layout_script or [])            # one list of layouts per reformulation call
        self.calls = []
        self.scored = []                                          # the images of every score call

    def verify(self, prompt, views, cost):
        self.calls.append(("verify", len(views), views[0].rows))
        cost.role("verifier").calls += 1
        return self.verdicts.pop(0) if self.verdicts else [0.9] * len(views)

    def score(self, prompt, images, cost):
        self.calls.append(("score", len(images)))
        self.scored.append(np.stack(images))
        cost.role("scorer").calls += 1
        if isinstance(self.scores, list) and self.scores and isinstance(self.scores[0], list):
            return self.scores.pop(0)                             # one list of scores per call
        return self.scores if self.scores is not None else [float(i) / 10 for i in range(len(images))]

    def reformulate(self, prompt, views, cost):
        self.calls.append(("reformulate", len(views), views[0].rows))
        cost.role("reformulator").calls += 1
        if self.layout_script:
            return self.layout_script.pop(0)
        return self.layouts if self.layouts is not None else [LAYOUT] * len(views)


@pytest.fixture(scope="module")
def backend():
    torch.set_num_threads(1)
    return tiny_backend(seed=3)


def run(backend, roles, policy=None, emit=None, cancel=None, live_previews=False, **kw):
    req = SearchRequest(prompt=PROMPT, **{"n": 4, "seed": 11, **kw})
    return Search(backend, roles, req, policy, emit, cancel, live_previews).run()


def test_pruning_refills_rejected_slots_with_survivors(backend):
    roles = ScriptedRoles(verdicts=[[0.9, 0.1, 0.8, 0.2], [0.9, 0.9, 0.9, 0.9]])
    seen = []
    res = run(backend, roles, emit=seen.append)
    stage0 = res.tree[0]
    assert stage0["keep"] == [True, False, True, False]
    assert stage0["sources"][0] == 0 and stage0["sources"][2] == 2
    assert stage0["sources"][1] in (0, 2) and stage0["sources"][3] in (0, 2)
    # a refilled slot continues its source's anchor: the first 2 token rows (16 tokens) are identical
    for slot in (1, 3):
        assert torch.equal(res.tokens[slot, :16], res.tokens[stage0["sources"][slot], :16])
    # and grows independently afterwards
    assert not torch.equal(res.tokens[1], res.tokens[stage0["sources"][1]])
    assert [c[0] for c in roles.calls] == ["verify", "reformulate", "verify", "reformulate", "score"]
    assert res.ranking[0] == 3 and res.best == 3       # scripted scores rise with the index


def test_all_rejected_keeps_all(backend):
    roles = ScriptedRoles(verdicts=[[0.1, 0.0, 0.2, 0.15]])          # all below the threshold (0.25)
    res = run(backend, roles)
    assert res.tree[0]["keep"] == [True] * 4 and res.tree[0]["sources"] == [0, 1, 2, 3]
    assert res.tree[0]["all_rejected_groups"] == [0]


def test_groups_of_four_prune_within_their_group(backend):
    roles = ScriptedRoles(verdicts=[[0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9]])
    res = run(backend, roles, n=8)
    assert res.tree[0]["sources"] == [0, 0, 0, 0, 7, 7, 7, 7]


def test_random_refill_follows_the_seed():
    import random
    a = [propose_pruning([0.9, 0.1, 0.8, 0.2] * 4, 0.5, random.Random(s)).sources for s in range(20)]
    assert len({tuple(x) for x in a}) > 1                                   # random, not round-robin
    assert a == [propose_pruning([0.9, 0.1, 0.8, 0.2] * 4, 0.5, random.Random(s)).sources for s in range(20)]


class ArtistPolicy(AutoPolicy):
    """Keeps a rejected candidate, rejects an accepted one with a chosen refill, and edits a layout."""

    def __init__(self):
        self.reviews = []

    def review_verdicts(self, review):
        self.reviews.append(review)
        if review.stage == 0:
            keep = list(review.proposed.keep)
            keep[1] = True                   # verifier said impossible; the artist keeps it
            keep[0] = False                  # verifier said possible; the artist rejects it ...
            return PruneDecision(keep, [2, 1, 2, 3])   # ... and refills it from candidate 2
        return review.proposed

    def review_layouts(self, stage, proposals):
        return [PROMPT + ", with the blue square at the top"] + proposals[1:]


def test_policy_overrides(backend):
    roles = ScriptedRoles(verdicts=[[0.9, 0.1, 0.8, 0.7]])
    pol = ArtistPolicy()
    res = run(backend, roles, policy=pol)
    assert pol.reviews[0].proposed.keep == [True, False, True, True]
    assert res.tree[0]["keep"] == [False, True, True, True] and res.tree[0]["sources"] == [2, 1, 2, 3]
    assert res.tree[0]["overridden"] is True
    assert torch.equal(res.tokens[0, :16], res.tokens[2, :16])
    assert res.tree[0]["layouts"][0] == PROMPT + ", with the blue square at the top"
    assert res.tree[0]["proposed_layouts"][0] == LAYOUT


def test_invalid_layouts_fall_back_to_the_prompt(backend):
    roles = ScriptedRoles(layouts=["three green squares", PROMPT + " and more", LAYOUT, PROMPT])
    res = run(backend, roles)
    assert res.tree[0]["layouts"] == [PROMPT, PROMPT, LAYOUT, PROMPT]


def test_events_in_order(backend):
    seen = []
    run(backend, ScriptedRoles(), emit=seen.append)
    kinds = [type(e).__name__ for e in seen if not isinstance(e, ev.TokenProgress)]
    stage = ["BandStarted", "BandCandidates", "Verdicts", "Replacements", "BandAccepted", "LayoutProposals",
             "LayoutsAccepted"]
    assert kinds == stage + stage + ["BandStarted", "FinalRanking", "CostUpdate"]
    progress = [e.tokens_done for e in seen if isinstance(e, ev.TokenProgress)]
    assert progress == list(range(8, 65, 8))           # one per token row


def test_reproducible_under_seed(backend):
    a = run(backend, ScriptedRoles(verdicts=[[0.9, 0.1, 0.8, 0.2]]))
    b = run(backend, ScriptedRoles(verdicts=[[0.9, 0.1, 0.8, 0.2]]))
    c = run(backend, ScriptedRoles(verdicts=[[0.9, 0.1, 0.8, 0.2]]), seed=12)
    assert torch.equal(a.tokens, b.tokens) and a.tree == b.tree
    assert not torch.equal(a.tokens, c.tokens)


def test_only_new_conditioning_is_prefilled(backend):
    """Three-way growth prefills each candidate's layout row (with its anchor) once; a layout that does not change
    at the next stage keeps its row."""
    res = run(backend, ScriptedRoles())
    L = len(backend.prompt_ids(PROMPT))
    Lr = len(backend.prompt_ids(LAYOUT))
    g = res.cost.roles["generator"]
    assert g.prefill_token_rows == 2 * L + 4 * (Lr + 16)
    assert res.tree[1]["prefilled"] == [{"stream": "layout", "rows": 0, "reused": 4}]
    # decode rows: 2 rows per candidate for the first quarter, 3 afterwards; the very last token is not fed
    assert g.decode_token_rows == 4 * (2 * 16 + 3 * 16 + 3 * 31)
    assert res.cost.image_tokens == 4 * 64
    assert res.cost.roles["verifier"].calls == 2 and res.cost.roles["scorer"].calls == 1


def test_prompt_replacement_strategy(backend):
    res = run(backend, ScriptedRoles(), strategy="replace")
    L = len(backend.prompt_ids(PROMPT))
    Lr = len(backend.prompt_ids(LAYOUT))
    g = res.cost.roles["generator"]
    assert g.prefill_token_rows == 2 * L + 4 * (Lr + 16)          # stage 2 proposes the same text: rows kept
    assert g.decode_token_rows == 4 * 2 * (16 + 16 + 31)


def test_unchanged_layouts_skip_the_third_row(backend):
    res = run(backend, ScriptedRoles(layouts=[PROMPT] * 4))
    L = len(backend.prompt_ids(PROMPT))
    assert res.cost.roles["generator"].prefill_token_rows == 2 * L


def test_one_verification_schedule(backend):
    roles = ScriptedRoles()
    res = run(backend, roles, schedule=(Stage(0.5), Stage(1.0, False, False)))
    assert [c for c in roles.calls if c[0] == "verify"] == [("verify", 4, 4)]
    assert len(res.tree) == 1


def test_reformulate_once_schedule_and_its_bench_name(backend):
    from gridar_desktop.bench import parse_methods
    from gridar_desktop.engine.search import REFORMULATE_ONCE
    [(label, req)] = parse_methods("gridar-reformonce:4")
    assert label == "gridar-reformonce:4" and req.schedule == REFORMULATE_ONCE
    roles = ScriptedRoles()
    run(backend, roles, schedule=REFORMULATE_ONCE)
    assert [c for c in roles.calls if c[0] != "score"] == [("verify", 4, 2), ("verify", 4, 4), ("reformulate", 4, 4)]


def test_cancel_mid_band(backend):
    token = CancelToken()

    def emit(e):
        if isinstance(e, ev.TokenProgress) and e.tokens_done == 24:
            token.abort()
    with pytest.raises(Cancelled):
        run(backend, ScriptedRoles(), emit=emit, cancel=token)


def test_stop_after_band(backend):
    token = CancelToken()

    def emit(e):
        if isinstance(e, ev.BandStarted) and e.stage == 0:
            token.stop_after_band()
    res = run(backend, ScriptedRoles(), emit=emit, cancel=token)
    assert res.stopped_early and res.tokens.shape == (4, 16)


def test_n_must_be_a_multiple_of_four(backend):
    with pytest.raises(ValueError, match="multiple of 4"):
        run(backend, ScriptedRoles(), n=6)


def test_best_of_n_and_single(backend):
    roles = ScriptedRoles(scores=[0.2, 0.9, 0.1])
    res = run(backend, roles, method="best-of-n", n=3)
    assert res.best == 1 and res.tokens.shape == (3, 64) and res.tree == []
    assert roles.calls == [("score", 3)]
    one = run(backend, None, method="single", n=1)
    assert one.tokens.shape == (1, 64)


def test_metadata_round_trip_reproduces(backend, tmp_path):
    res = run(backend, ScriptedRoles(verdicts=[[0.9, 0.1, 0.8, 0.2]]))
    meta = res.metadata()
    p = save_png(Image.fromarray(res.images[res.best]), tmp_path / "g.png", PROMPT, meta)
    back = read_metadata(p)
    assert back["prompt"] == PROMPT and back["tree"] == json.loads(json.dumps(meta["tree"]))
    s = back["settings"]
    again = run(backend, ScriptedRoles(verdicts=[[0.9, 0.1, 0.8, 0.2]]), n=s["n"], seed=s["seed"])
    assert again.tokens.tolist() == back["tokens"]
    assert np.array_equal(backend.decode_tokens(torch.tensor(back["tokens"]))[back["chosen"]], res.images[res.best])


def test_settle_fixes_inconsistent_decisions():
    import random
    d = settle(PruneDecision([False, True, False, False], [3, 0, 2, 1]), random.Random(0))
    assert d.keep == [False, True, False, False] and d.sources == [1, 1, 1, 1]


LAYOUT2 = PROMPT + ", with the red circles at the top"


class LayoutEdits(AutoPolicy):
    """An artist who types the layouts (one list per stage)."""

    def __init__(self, script):
        self.script = list(script)

    def review_layouts(self, stage, proposals):
        return self.script.pop(0)


def test_layout_rows_are_reused_copied_or_prefilled_once(backend):
    """Stage 2: slots 1-3 are rejected and refilled from slot 0; slots 0 and 1 get the same new layout (one prefill
    for the shared anchor), slot 2 falls back to the prompt (its cond row is copied), slot 3 keeps the layout its
    row already reads."""
    roles = ScriptedRoles(verdicts=[[0.9] * 4, [0.9, 0.1, 0.1, 0.1]])
    res = run(backend, roles, policy=LayoutEdits([[LAYOUT] * 4, [LAYOUT2, LAYOUT2, PROMPT, LAYOUT]]))
    # the four slots show one anchor at stage 2: the reformulator is asked once
    assert [c for c in roles.calls if c[0] == "reformulate"] == [("reformulate", 4, 2), ("reformulate", 1, 4)]
    assert res.tree[1]["sources"] == [0, 0, 0, 0]
    L, Lr, Lr2 = (len(backend.prompt_ids(p)) for p in (PROMPT, LAYOUT, LAYOUT2))
    assert res.cost.roles["generator"].prefill_token_rows == 2 * L + 4 * (Lr + 16) + (Lr2 + 32)
    assert res.tree[1]["prefilled"] == [{"stream": "layout", "rows": 1, "reused": 2}]
    # same seed, same script: the assembled rows decode exactly as before
    again = run(backend, ScriptedRoles(verdicts=[[0.9] * 4, [0.9, 0.1, 0.1, 0.1]]),
                policy=LayoutEdits([[LAYOUT] * 4, [LAYOUT2, LAYOUT2, PROMPT, LAYOUT]]))
    assert torch.equal(res.tokens, again.tokens)


def test_prompt_replacement_prefills_only_changed_rows(backend):
    roles = ScriptedRoles(layout_script=[[LAYOUT, PROMPT, LAYOUT, PROMPT], [LAYOUT, PROMPT, LAYOUT2, LAYOUT2]])
    res = run(backend, roles, strategy="replace")
    L, Lr, Lr2 = (len(backend.prompt_ids(p)) for p in (PROMPT, LAYOUT, LAYOUT2))
    # stage 1: two rows change (prefilled together, padded to the longer); stage 2: slots 2 and 3 change
    assert res.cost.roles["generator"].prefill_token_rows == 2 * L + 2 * (Lr + 16) + 2 * (Lr2 + 32)


@pytest.mark.parametrize("method,n", [("gridar", 4), ("best-of-n", 4)])
def test_a_batch_of_jobs_draws_what_each_job_draws_alone(backend, method, n):
    """Jobs with different prompts (so left padding) and seeds share the forwards but keep their own draws."""
    other = "a green triangle to the left of a yellow square"
    reqs = [SearchRequest(prompt=PROMPT, method=method, n=n, seed=11), SearchRequest(prompt=other, method=method,
                                                                                     n=n, seed=5)]
    verdicts = [[0.9, 0.1, 0.8, 0.2], [0.2, 0.9, 0.9, 0.1]]
    batch = Search(backend, ScriptedRoles(verdicts=[verdicts[0] + verdicts[1]] * 2), reqs).run_all()
    for req, got, v in zip(reqs, batch, verdicts):
        alone = Search(backend, ScriptedRoles(verdicts=[v, v]), req).run()
        assert torch.equal(got.tokens, alone.tokens)
        # "prefilled" is row bookkeeping: in the batch the other job's layout rows exist (copied from cond)
        def decisions(tree):
            return [{k: v for k, v in node.items() if k != "prefilled"} for node in tree]
        # the result's request is the job's; each verified band records the threshold it pruned at
        assert decisions(got.tree) == decisions(alone.tree) and got.request == alone.request == req
        assert all(node.get("threshold") is not None for node in got.tree if "keep" in node)


def test_batch_jobs_must_share_settings(backend):
    with pytest.raises(ValueError, match="only in prompt, seed and edit"):
        Search(backend, None, [SearchRequest(prompt=PROMPT, n=4), SearchRequest(prompt=PROMPT, n=8)])


def test_the_verifiers_own_threshold_is_used_and_recorded(backend):
    """threshold=None: the roles' calibrated threshold for the band's row (`prune_thresholds_by_rows`), else their
    pooled `prune_threshold`, else the default; each verified band records the value it used."""
    from gridar_desktop.engine.search import DEFAULT_THRESHOLD, pruning_threshold
    roles = ScriptedRoles(verdicts=[[0.5, 0.7, 0.9, 0.9]])
    roles.prune_threshold = 0.6
    assert pruning_threshold(roles) == 0.6 and pruning_threshold(ScriptedRoles()) == DEFAULT_THRESHOLD
    res = run(backend, roles, schedule=(Stage(0.25), Stage(1.0, False, False)), reformulate=False)
    assert res.tree[0]["keep"] == [False, True, True, True]
    assert res.metadata()["settings"]["threshold"] is None and res.metadata()["tree"][0]["threshold"] == 0.6
    roles = ScriptedRoles(verdicts=[[0.5, 0.7, 0.9, 0.9], [0.5, 0.7, 0.9, 0.9]])
    roles.prune_threshold, roles.prune_thresholds_by_rows = 0.6, {2: 0.4, 4: 0.8}
    assert pruning_threshold(roles, rows=3) == 0.6 and pruning_threshold(roles, rows=4) == 0.8
    res = run(backend, roles, reformulate=False)                 # verifies after 2 and after 4 rows
    assert [n["threshold"] for n in res.tree] == [0.4, 0.8]
    assert res.tree[0]["keep"] == [True] * 4 and res.tree[1]["keep"] == [False, False, True, True]
    roles = ScriptedRoles(verdicts=[[0.5, 0.7, 0.9, 0.9]])
    roles.prune_threshold = 0.6
    res = run(backend, roles, schedule=(Stage(0.25), Stage(1.0, False, False)), reformulate=False, threshold=0.3)
    assert res.tree[0]["keep"] == [True, True, True, True]


def test_rollout_verdicts_are_the_scorers_reading_of_one_completion(backend):
    # three score calls: the completions after the first and the second band, then the finished candidates
    scripted = [[0.9, 0.2, 0.7, 0.4], [0.6, 0.6, 0.6, 0.6], [0.1, 0.2, 0.3, 0.4]]
    roles = ScriptedRoles(scores=[list(x) for x in scripted])
    seen = []
    res = run(backend, roles, emit=seen.append, verify_by="rollout")
    assert [c[0] for c in roles.calls] == ["score", "reformulate", "score", "reformulate", "score"]
    # each verdict is announced: the candidates are completed from the band's last row, then judged
    done = [(e.stage, e.rows, e.n) for e in seen if isinstance(e, ev.Completing)]
    assert done == [(0, res.tree[0]["rows"], 4), (1, res.tree[1]["rows"], 4)]
    kinds = [type(e).__name__ for e in seen]
    assert kinds.index("Completing") < kinds.index("Verdicts") and kinds.index("BandCandidates") < kinds.index(
        "Completing")
    assert res.tree[0]["p_possible"] == scripted[0] and res.tree[0]["verify_by"] == "rollout"
    assert res.tree[0]["threshold"] == 0.5 and res.tree[0]["keep"] == [True, False, True, False]
    assert res.tree[0]["sources"][1] in (0, 2) and res.tree[1]["keep"] == [True] * 4
    assert all(im.shape == (4, 64, 64, 3) for im in roles.scored)
    # the completions are thrown away: the result holds the 4 live candidates, ranked by the last call alone
    assert res.scores == scripted[2] and res.best == 3 and res.metadata()["settings"]["verify_by"] == "rollout"
    # the first completions are what Best-of-N draws with the same seed: the same generator carries on from the
    # same band, on a fork of the same cache
    bon = run(backend, ScriptedRoles(), method="best-of-n")
    np.testing.assert_array_equal(roles.scored[0], bon.images)
    # they cost what they decode: more generator rows than verifying views, no verifier call
    view = run(backend, ScriptedRoles(verdicts=[[0.9, 0.2, 0.7, 0.4], [0.6] * 4]))
    g, gv = res.cost.roles["generator"], view.cost.roles["generator"]
    assert g.decode_token_rows > gv.decode_token_rows and res.cost.roles["verifier"].calls == 0
    assert res.cost.roles["scorer"].calls == 3


def test_rollout_verification_is_validated_and_named_in_the_bench():
    from gridar_desktop.bench import parse_methods
    with pytest.raises(ValueError, match="rollout"):
        SearchRequest(prompt=PROMPT, verify_by="lookahead").validate()
    (label, req), = parse_methods("gridar-rollout:4")
    assert req.verify_by == "rollout" and req.method == "gridar" and req.n == 4


def test_settle_with_redrawn_slots():
    import random
    # redrawn slots source themselves and need no survivor; a kept slot is never redrawn
    d = settle(PruneDecision([False, False, False, False], [-1] * 4, redraw=[True, True, False, True]),
               random.Random(0))
    assert d.redraw == [True, True, False, True] and d.sources == [0, 1, 2, 3]
    assert d.keep == [False, False, True, False] and d.all_rejected_groups == []
    d = settle(PruneDecision([True, False, True, False], [-1, -1, -1, 0], redraw=[True, True, False, False]),
               random.Random(0))
    assert d.redraw == [False, True, False, False] and d.sources[:3] == [0, 1, 2] and d.sources[3] == 0
    assert propose_pruning([0.9, 0.1, 0.8, 0.2], 0.5, random.Random(0), refill="redraw").redraw == [
        False, True, False, True]
    assert propose_pruning([0.9, 0.1, 0.8, 0.2], 0.5, random.Random(0)).redraw == []


def test_concat_candidates_of_several_streams_keeps_every_cache_row_exact(backend):
    """Candidates of states with different prompt lengths (left padding) and three streams, joined and reordered,
    predict what a fresh prefill of their rows predicts."""
    from gridar_desktop.engine.decode import (concat_candidates, copy_stream, merge_streams, order_streams,
                                              select, start)
    from gridar_desktop.engine.sampling import SamplingParams
    from gridar_desktop.engine.decode import decode, new_generator, prefill

    def three(prompt, n, seed):
        st = decode(backend, start(backend, prompt, n), 8, SamplingParams(cfg=2.0), new_generator(seed))
        return merge_streams(st, copy_stream(st, "cond", list(range(n)), "layout"))
    a, b = three(PROMPT, 3, 0), three("a green triangle", 2, 1)
    a = order_streams(a, ("uncond", "layout", "cond"))
    b = order_streams(b, ("uncond", "layout", "cond"))
    tok_a, tok_b = a.tokens.clone(), b.tokens.clone()
    joined = select(concat_candidates(a, b), [3, 0, 4, 1, 2])
    tokens = torch.cat([tok_a, tok_b])[[3, 0, 4, 1, 2]]
    assert torch.equal(joined.tokens, tokens) and joined.streams == ("uncond", "layout", "cond")
    prompts = [PROMPT] * 3 + ["a green triangle"] * 2
    for slot, c in enumerate([3, 0, 4, 1, 2]):
        ids = backend.prompt_ids(prompts[c])
        fresh = prefill(backend, {"cond": [ids], "uncond": [backend.uncond_ids(ids)]}, tokens[slot:slot + 1])
        for stream, ref in (("cond", "cond"), ("layout", "cond"), ("uncond", "uncond")):
            got = backend.image_logits(joined.hidden[joined.stream_rows(stream)][slot:slot + 1])
            want = backend.image_logits(fresh.hidden[fresh.stream_rows(ref)])
            torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)
    # and decoding the joined state goes on from each row's own cache
    nxt = decode(backend, joined, 8, SamplingParams(cfg=2.0), new_generator(5))
    assert nxt.tokens.shape == (5, 16)


def test_redraw_refill_draws_fresh_bands_in_the_rejected_slots(backend):
    roles = ScriptedRoles(verdicts=[[0.9, 0.1, 0.8, 0.2], [0.9, 0.9, 0.9, 0.9]])
    seen = []
    res = run(backend, roles, emit=seen.append, refill="redraw")
    told = [e for e in seen if isinstance(e, ev.Replacements)]
    assert told[0].redraw == (False, True, False, True) and told[1].redraw == ()
    plain = run(backend, ScriptedRoles(), prune=False)             # the same first bands, nothing replaced
    node = res.tree[0]
    assert node["keep"] == [True, False, True, False] and node["redraw"] == [False, True, False, True]
    assert node["sources"] == [0, 1, 2, 3]
    for slot in (0, 2):                                # survivors go on from their own first band (2 rows)
        assert torch.equal(res.tokens[slot, :16], plain.tokens[slot, :16])
    for slot in (1, 3):                                # the redrawn slots start over: a new first band
        assert not torch.equal(res.tokens[slot, :16], plain.tokens[slot, :16])
    assert not torch.equal(res.tokens[1, :16], res.tokens[3, :16])
    # a redraw costs one prefill of the job's prompt rows (shared by its redrawn slots) and a decode of the band
    # for each redrawn slot
    L = len(backend.prompt_ids(PROMPT))
    g, gp = res.cost.roles["generator"], plain.cost.roles["generator"]
    assert g.prefill_token_rows == gp.prefill_token_rows + 2 * L
    assert g.decode_token_rows == gp.decode_token_rows + 2 * 2 * 16
    assert res.metadata()["settings"]["refill"] == "redraw"
    # reproducible, and a batch draws what each job draws alone
    again = run(backend, ScriptedRoles(verdicts=[[0.9, 0.1, 0.8, 0.2], [0.9] * 4]), refill="redraw")
    assert torch.equal(again.tokens, res.tokens)
    other = SearchRequest(prompt="a green triangle to the left of a yellow square", n=4, seed=5, refill="redraw")
    mine = SearchRequest(prompt=PROMPT, n=4, seed=11, refill="redraw")
    v = [[0.9, 0.1, 0.8, 0.2], [0.1, 0.9, 0.9, 0.1]]
    batch = Search(backend, ScriptedRoles(verdicts=[v[0] + v[1], [0.9] * 8]), [mine, other]).run_all()
    for req, got, vv in zip([mine, other], batch, v):
        alone = Search(backend, ScriptedRoles(verdicts=[vv, [0.9] * 4]), req).run()
        assert torch.equal(got.tokens, alone.tokens)
    with pytest.raises(ValueError, match="refill"):
        SearchRequest(prompt=PROMPT, refill="clone").validate()
    from gridar_desktop.bench import parse_methods
    assert parse_methods("gridar-redraw:4")[0][1].refill == "redraw"


# -- cancel latency: an abort asked in the middle of a piece of work stops it there, not after it ----------------

class LayerCounter:
    """Counts the language model's layer forwards and the VQ decoder's block forwards (forward hooks run only
    when a block ran), and the ones run after `mark()`."""

    def __init__(self, model):
        self.lm = self.vq = 0
        self.at = None
        lm = model.model.language_model
        self.handles = [layer.register_forward_hook(lambda *a: self._count("lm")) for layer in lm.layers]
        self.handles += [block.register_forward_hook(lambda *a: self._count("vq"))
                         for up in model.model.vqmodel.decoder.up for block in up.block]

    def _count(self, kind):
        setattr(self, kind, getattr(self, kind) + 1)

    def mark(self):
        self.at = (self.lm, self.vq)

    def after(self):
        return (self.lm - self.at[0], self.vq - self.at[1])

    def close(self):
        for h in self.handles:
            h.remove()


@pytest.fixture()
def real_roles():
    from gridar_desktop.engine.janus_roles import JanusRoles
    torch.set_num_threads(1)
    b = tiny_backend(seed=5)
    return b, JanusRoles(b)


def _abort_inside(obj, name, token, counter, when=lambda *a, **k: True):
    """Wrap obj.name so that the abort arrives just as the call starts (when `when` says so)."""
    original = getattr(obj, name)

    def wrapped(*a, **k):
        if when(*a, **k) and not token.aborted:
            counter.mark()
            token.abort()
        return original(*a, **k)
    setattr(obj, name, wrapped)


@pytest.mark.parametrize("role", ["verify", "reformulate"])
def test_an_abort_during_a_role_call_stops_inside_it(real_roles, role):
    b, roles = real_roles
    token, counter = CancelToken(), LayerCounter(b.model)
    _abort_inside(roles, role, token, counter)
    with pytest.raises(Cancelled):
        run(b, roles, cancel=token, live_previews=False)
    counter.close()
    assert counter.at is not None and counter.after() == (0, 0)    # not one more layer of the role's forward


def test_an_abort_during_a_preview_decode_stops_inside_it(real_roles):
    b, roles = real_roles
    token, counter = CancelToken(), LayerCounter(b.model)
    _abort_inside(b, "decode_tokens", token, counter)
    with pytest.raises(Cancelled):
        run(b, roles, cancel=token, live_previews=True)
    counter.close()
    assert counter.at is not None and counter.after() == (0, 0)


def test_an_abort_at_the_end_of_a_rollout_does_not_score_it(real_roles):
    """Verdicts from one completion: an abort as the completions are decoded to images stops before the scorer
    reads them."""
    b, roles = real_roles
    token, counter = CancelToken(), LayerCounter(b.model)
    completing = []
    _abort_inside(b, "decode_tokens", token, counter, when=lambda tokens: bool(completing))
    with pytest.raises(Cancelled):
        run(b, roles, cancel=token, verify_by="rollout",
            emit=lambda e: isinstance(e, ev.Completing) and completing.append(e))
    counter.close()
    assert completing and counter.after() == (0, 0)


def test_checkpoints_check_only_the_running_jobs_token(real_roles):
    """Outside a job the hooked model runs as usual, even when some earlier job's token was aborted."""
    b, roles = real_roles
    token = CancelToken()
    with pytest.raises(Cancelled):
        run(b, roles, cancel=token, emit=lambda e: isinstance(e, ev.BandStarted) and token.abort())
    assert b.decode_tokens(torch.zeros((1, 64), dtype=torch.long)).shape == (1, 64, 64, 3)
    assert run(b, roles).tokens.shape == (4, 64)


def test_a_refill_from_a_rejected_slot_continues_what_that_slot_continues():
    """The card says "3 from 2": the run does that. 2 itself continues 4, so 3 does too (never a silent other)."""
    import random
    for seed in range(10):
        d = settle(PruneDecision([True, False, False, True], [0, 3, 1, 3]), random.Random(seed))
        assert d.sources == [0, 3, 3, 3] and d.keep == [True, False, False, True]
        # 2 has no chosen source (a random survivor is drawn): 3 from 2 follows that draw
        d = settle(PruneDecision([True, False, False, True], [0, -1, 1, 3]), random.Random(seed))
        assert d.sources[1] in (0, 3) and d.sources[2] == d.sources[1]


def test_a_refill_that_cannot_take_effect_as_stated_is_refused():
    import random

    from gridar_desktop.engine.search import DecisionError
    with pytest.raises(DecisionError, match="candidate 3 is to continue candidate 2, which is redrawn"):
        settle(PruneDecision([True, False, False, True], [0, 1, 1, 3], redraw=[False, True, False, False]),
               random.Random(0))
    with pytest.raises(DecisionError, match="go round in a circle"):
        settle(PruneDecision([True, False, False, True], [0, 2, 1, 3]), random.Random(0))
    with pytest.raises(DecisionError, match="not in its group"):
        settle(PruneDecision([True, False, True, True] * 2, [0, 5, 2, 3, 4, 5, 6, 7]), random.Random(0))


def test_the_run_copies_what_the_decision_says_and_reports_it(backend):
    """Through a search: the Replacements event and the tree carry the effective sources, and the copies are
    exact."""
    class Chains(AutoPolicy):
        def review_verdicts(self, review):
            return PruneDecision([True, False, False, True], [0, 3, 1, 3]) if review.stage == 0 else review.proposed
    events = []
    res = run(backend, ScriptedRoles(), policy=Chains(), emit=events.append)
    rep = next(e for e in events if isinstance(e, ev.Replacements))
    assert rep.sources == (0, 3, 3, 3) and res.tree[0]["sources"] == [0, 3, 3, 3]
    assert torch.equal(res.tokens[2, :16], res.tokens[3, :16]) and torch.equal(res.tokens[1, :16], res.tokens[3, :16])


@pytest.mark.parametrize("reformulate", [True, False])
def test_verdicts_keep_no_judging_caches_past_their_band(real_roles, reformulate):
    """The roles keep each verified view's prefix cache for the reformulation that may follow; a band without one,
    and the end of the run, drop them (~0.3 GB per view at Janus-Pro-7B), checked after every band."""
    b, roles = real_roles
    held = []
    run(b, roles, emit=lambda e: held.append(len(roles._prefixes)) if isinstance(e, ev.BandStarted) else None,
        reformulate=reformulate)
    assert held and held == [0] * len(held) and roles._prefixes == {}
