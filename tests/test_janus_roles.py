"""The judging roles on a Janus understanding path (tiny random model): mechanics, not quality."""
import numpy as np
import pytest
import torch

from gridar_desktop.engine.cost import CostRecord
from gridar_desktop.engine.janus_roles import JanusRoles, masked_view
from gridar_desktop.engine.roles import PartialView, validate_reformulation
from gridar_desktop.engine.tiny import tiny_backend

PROMPT = "a red circle above a blue square"


@pytest.fixture(scope="module")
def roles():
    torch.set_num_threads(1)
    return JanusRoles(tiny_backend(seed=4))


def views(n, rows=2):
    rng = np.random.default_rng(0)
    return [PartialView(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), rows, 8) for _ in range(n)]


def test_probabilities_batched_with_cost(roles):
    cost = CostRecord()
    p = roles.verify(PROMPT, views(4), cost)
    assert len(p) == 4 and all(0.0 <= x <= 1.0 for x in p)
    v = cost.roles["verifier"]
    assert v.calls == 1 and v.prefill_token_rows == 4 * len(roles._ids("verify", PROMPT, views(1)[0]))
    # a quarter of the rows drawn: the language model reads a quarter of the image positions
    assert len(roles._ids("verify", PROMPT, None)) - len(roles._ids("verify", PROMPT, views(1)[0])) == 48
    assert v.flops > 2 * v.params * v.token_rows          # the vision tower is counted too
    s = roles.score(PROMPT, [x.image for x in views(3)], cost)
    assert len(s) == 3 and cost.roles["scorer"].calls == 1


def test_mixed_visible_rows_batch_equals_single_calls(roles):
    vs = views(2, rows=2) + views(2, rows=4)
    batch = roles.verify(PROMPT, vs, CostRecord())
    single = [roles.verify(PROMPT, [v], CostRecord())[0] for v in vs]
    assert batch == pytest.approx(single, abs=1e-4)


def test_batch_equals_one_by_one(roles):
    vs = views(3)
    batch = roles.verify(PROMPT, vs, CostRecord())
    single = [roles.verify(PROMPT, [v], CostRecord())[0] for v in vs]
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_unreadable_answer_scores_lowest(roles, monkeypatch):
    """All mass on a token that is no answer: probability 0, not 0.5 and not 1."""
    vocab = roles.model.lm_head.out_features
    junk = roles.tok.convert_tokens_to_ids("triangle")

    def fake_head(h):
        out = torch.full((h.shape[0], vocab), -1e4)
        out[:, junk] = 1e4
        return out
    monkeypatch.setattr(roles.model.lm_head, "forward", fake_head)
    assert roles.score(PROMPT, [views(1)[0].image], CostRecord()) == [0.0]
    assert roles.verify(PROMPT, views(1), CostRecord()) == [0.0]


def test_reformulations_are_validated(roles):
    cost = CostRecord()
    out = roles.reformulate(PROMPT, views(2), cost)
    assert len(out) == 2 and all(o.startswith(PROMPT) for o in out)
    assert cost.roles["reformulator"].calls == 1


def test_validate_reformulation_rules():
    assert validate_reformulation(PROMPT, PROMPT + ", with the red circle at the top") == \
        PROMPT + ", with the red circle at the top"
    assert validate_reformulation(PROMPT, '"' + PROMPT + ', with the red circle at the top."') == \
        PROMPT + ", with the red circle at the top"
    assert validate_reformulation(PROMPT, "two red circles") == PROMPT            # changed the content
    assert validate_reformulation(PROMPT, PROMPT + " and a green square") == PROMPT  # not a clause after a comma
    assert validate_reformulation(PROMPT, "") == PROMPT


def test_hidden_rows_are_grey():
    v = views(1, rows=2)[0]
    m = masked_view(v)
    assert (m[16:] == 128).all() and np.array_equal(m[:16], v.image[:16])


def test_finished_reformulations_leave_the_batch(roles, monkeypatch):
    """Rows that emitted EOS are no longer computed (nor counted); the others continue with their own cache rows."""
    vocab = roles.model.lm_head.out_features
    eos, w = roles.tok.eos_token_id, roles.tok.convert_tokens_to_ids
    script = [[w("with"), eos, w("with")], [w("the"), w("the")], [eos, w("red")], [w("circle")], [eos]]
    seen = []

    def fake_head(h):
        want = script.pop(0)
        seen.append(h.shape[0])
        out = torch.full((h.shape[0], vocab), -1e4)
        out[torch.arange(h.shape[0]), torch.tensor(want)] = 1e4
        return out
    monkeypatch.setattr(roles.model.lm_head, "forward", fake_head)
    cost = CostRecord()
    out = roles.reformulate(PROMPT, views(3), cost)
    assert seen == [3, 2, 2, 1, 1]
    assert cost.roles["reformulator"].decode_token_rows == 2 + 2 + 1 + 1
    # "with the" is not a valid clause: falls back; the empty one is the prompt itself
    assert out == [PROMPT, PROMPT, PROMPT]


def test_shared_prefix_equals_one_forward_over_everything(roles):
    vs = views(2, rows=2) + views(2, rows=4)
    shared = roles.verify(PROMPT, vs, CostRecord())
    whole = roles._answer_prob("verify", PROMPT, vs, [masked_view(v) for v in vs], "possible", CostRecord(),
                               "verifier")
    assert shared == pytest.approx(whole, abs=1e-4)


def test_reformulation_continues_from_the_verifier_prefixes(roles, monkeypatch):
    """After verify, reformulate computes only its question and answer; the text is the same as without reuse."""
    vs = views(3)
    monkeypatch.setattr(roles, "_validate", lambda prompt, text: text)     # compare the raw greedy continuations
    alone_cost = CostRecord()
    roles._prefixes = {}
    alone = roles.reformulate(PROMPT, vs, alone_cost)
    cost = CostRecord()
    roles.verify(PROMPT, vs, cost)
    after = roles.reformulate(PROMPT, vs[:2], cost)        # the survivors of the stage
    assert after == alone[:2] and all(len(a) > len(PROMPT) + 2 for a in after)
    q = len(roles._question("layout", PROMPT))
    assert cost.roles["reformulator"].prefill_token_rows == 2 * q
    assert alone_cost.roles["reformulator"].prefill_token_rows == 3 * len(roles._ids("layout", PROMPT, vs[0]))
    assert roles._prefixes == {}                             # dropped after the stage


def test_calibrated_threshold_travels_with_the_model_folder(tmp_path):
    """training.calibrate measures the folder's verifier on held-out views, stores the threshold in gridar.json,
    and the roles loaded from that folder prune at it."""
    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.search import DEFAULT_THRESHOLD, pruning_threshold
    from gridar_desktop.engine.tiny import save_tiny_janus
    from gridar_desktop.training.calibrate import calibrate, write_threshold
    save_tiny_janus(tmp_path, seed=2)
    before = JanusRoles(JanusBackend.load(tmp_path, device="cpu", dtype="float32"))
    assert before.prune_threshold is None and pruning_threshold(before) == DEFAULT_THRESHOLD
    rec = calibrate(tmp_path, views=24)
    assert 0.0 <= rec["value"] <= 1.0 and set(rec["held_out"]) == {"2", "4"}
    assert rec["by_rows"] == {}                      # too few feasible views per row: the pooled one serves all
    write_threshold(tmp_path, rec)
    after = JanusRoles(JanusBackend.load(tmp_path, device="cpu", dtype="float32"))
    assert pruning_threshold(after) == rec["value"] == pruning_threshold(after, rows=4)


def test_each_verification_row_gets_its_own_threshold(tmp_path, monkeypatch):
    """With enough feasible views at a row, that row's threshold is the calibration rule over its own views."""
    import numpy as np

    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.search import pruning_threshold
    from gridar_desktop.engine.tiny import save_tiny_janus
    from gridar_desktop.training import calibrate as cal
    save_tiny_janus(tmp_path, seed=2)
    monkeypatch.setattr(cal, "MIN_FEASIBLE_PER_ROW", 1)
    seen = {}
    real = cal.engine_p_possible

    def spy(backend, roles, views, batch=64):
        p = real(backend, roles, views, batch)
        seen["p"], seen["views"] = p, views
        return p
    monkeypatch.setattr(cal, "engine_p_possible", spy)
    rec = cal.calibrate(tmp_path, views=40)
    for r in ("2", "4"):
        at = np.array([v.rows == int(r) and v.feasible for v in seen["views"]])
        assert rec["by_rows"][r] == round(cal.threshold_for(seen["p"][at]), 4)
    cal.write_threshold(tmp_path, rec)
    roles = JanusRoles(JanusBackend.load(tmp_path, device="cpu", dtype="float32"))
    assert pruning_threshold(roles, rows=2) == rec["by_rows"]["2"] and pruning_threshold(roles, rows=3) == rec["value"]


def test_calibration_refuses_a_model_outside_the_shapes_world(tmp_path):
    from gridar_desktop.engine.tiny import save_tiny_janus
    from gridar_desktop.training.calibrate import calibrate
    save_tiny_janus(tmp_path, seed=2)
    (tmp_path / "gridar.json").unlink()                  # no app metadata: a Janus-Pro style folder
    with pytest.raises(ValueError, match="not a shapes-world model"):
        calibrate(tmp_path, views=4)
